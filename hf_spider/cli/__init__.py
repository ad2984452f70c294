"""The ``hf_spider`` command line: thin typer commands that parse, call the library, and print.

Errors a user can act on print their whole message and exit 1 (``--verbose`` adds the traceback); unexpected
exceptions keep their traceback.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..constants import MICRO_ZOO_ORG
from ..errors import InvalidInputError
from ._cli_utils import (
    DEFAULT_BASELINE,
    Baseline,
    CpusPerTask,
    DataRoot,
    DatasetConfig,
    GpusPerTask,
    ImageColumn,
    IndexRepo,
    JsonOutput,
    LabelColumn,
    RayAddress,
    ReposFile,
    RetryFailed,
    Token,
    Workers,
)

app = typer.Typer(
    name="hf_spider",
    help="Which pre-trained model on the Hugging Face Hub should I fine-tune for my task?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
hub_app = typer.Typer(help="Run a local, Hub-compatible server (offline tests, demos, air-gapped sites).",
                      no_args_is_help=True)
app.add_typer(hub_app, name="hub")
index_app = typer.Typer(help="An index of published embeddings on the Hub: one download for a whole scan.",
                        no_args_is_help=True)
app.add_typer(index_app, name="index")

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)
_state: dict = {"verbose": False, "timeout_option": None}


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"hf_spider {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show full tracebacks on errors.")] = False,
    timeout: Annotated[float | None, typer.Option(
        envvar="HF_SPIDER_TIMEOUT", help="Seconds without an answer before a call to the Hub fails (default 30).",
        show_default=False)] = None,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    _state.update(verbose=verbose, timeout_option=timeout)
    _configure_hub_client()


def _configure_hub_client() -> None:
    """The ``--timeout`` on every Hub call; huggingface_hub's retry warnings only with ``--verbose`` (they would
    bury the one line an error gets)."""
    from huggingface_hub.utils import logging as hub_logging

    from ..hub.retry import configure_timeout

    if not _state["verbose"]:
        hub_logging.set_verbosity_error()
    _state["timeout"] = configure_timeout(_state["timeout_option"])


HubRoot = Annotated[Path, typer.Option(
    help="Folder holding the repositories (created if missing; kept across restarts).")]


@hub_app.command("serve")
def hub_serve(
    root: HubRoot = Path("./hubdata"),
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8080,
    token: Annotated[str | None, typer.Option(
        envvar="HF_SPIDER_HUB_TOKEN", help="One token that writes every namespace (default: open).")] = None,
    tokens: Annotated[Path | None, typer.Option(
        envvar="HF_SPIDER_HUB_TOKENS", help="YAML/JSON file {token: {user: NAME, orgs: [ORG, ...]}}: each token "
        "writes, and reads private repos, in its user's and orgs' namespaces only.")] = None,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body (a commit carries its files "
                                                    "base64-encoded: 4/3 of their size).")] = 2048,
    socket_timeout: Annotated[float, typer.Option(help="Seconds a client may stay silent mid-request.")] = 60,
) -> None:
    """Serve the Hub HTTP API on 127.0.0.1 so the official clients work through HF_ENDPOINT."""
    from ..localhub.server import HubServer, load_tokens

    server = HubServer(root, port=port, token=token, tokens=load_tokens(tokens) if tokens else None,
                       max_body=int(max_body_mb * 2**20), socket_timeout=socket_timeout)
    for where, why in server.storage.damaged.items():
        err_console.print(f"Skipped damaged repository {where}: {escape(why)}")
    console.print(f"Local Hub serving [bold]{root.resolve()}[/] at [bold]{server.url}[/]")
    console.print(f"Point the clients at it:  export HF_ENDPOINT={server.url}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("Stopped.")
    finally:
        server.server_close()


@hub_app.command("gc")
def hub_gc(root: HubRoot = Path("./hubdata")) -> None:
    """Remove what interrupted commits and deleted repos left under a stopped server's root."""
    from ..localhub.storage import HubStorage

    if not (root / "repos").is_dir():
        raise InvalidInputError(f"{root} holds no local Hub (no repos/ folder): give the --root of `hub serve`")
    storage = HubStorage(root)
    for where, why in storage.damaged.items():
        err_console.print(f"Kept the files of damaged repository {where}: {escape(why)}")
    try:
        report = storage.gc()
    finally:
        storage.close()
    console.print(f"Removed {report.commits_removed} unreachable commits and {report.blobs_removed} orphan blobs "
                  f"({report.bytes_freed / 2**20:.1f} MiB) under {root.resolve()}")




@app.command()
def bench(
    zoo: Annotated[list[str] | None, typer.Option(
        help="Models to rank: Hub ids or folders (a folder of model folders expands). "
             "Default: the bundled micro zoo.")] = None,
    targets: Annotated[list[str] | None, typer.Option(
        help="Target tasks with train/test splits: Hub dataset ids, folders, or names under --data-root. "
             "Default: every tgt-*/reg-* under --data-root.")] = None,
    method: Annotated[list[str] | None, typer.Option(help="Scores to run (default: all that fit).")] = None,
    data_root: DataRoot = None,
    ground_truth: Annotated[Path | None, typer.Option(
        help="Ground-truth JSON read and extended (default: ground_truth.json in --out).")] = None,
    ground_truth_protocol: Annotated[str, typer.Option(
        help="Ground truth to rank against, computed where the JSON lacks it: linear-probe (frozen features) "
             "or fine-tune (trains every model: slow).")] = "linear-probe",
    shots: Annotated[int | None, typer.Option(help="Few-shot: examples per class for scoring.")] = None,
    trials: Annotated[int, typer.Option(help="Few-shot draws (mean ± 95% CI).")] = 10,
    max_per_class: Annotated[int | None, typer.Option(help="Cap examples per class (quick runs).")] = None,
    baseline: Annotated[str | None, typer.Option(
        help="Embedder baseline model (default with the bundled zoo: its resnet18-all-mix).")] = None,
    reference: Annotated[str | None, typer.Option(
        help="Embedder reference set DATASET[:split] (default: reference-mix under --data-root).")] = None,
    embed_steps: Annotated[int, typer.Option(help="Model-embedding optimisation steps.")] = 1000,
    ranker: Annotated[str | None, typer.Option(
        help="Model Spider ranker (folder or Hub repo) for the spider rows (default with the bundled zoo: "
             "hf_spider/micro_zoo/ranker).")] = None,
    rerank: Annotated[int | None, typer.Option(help="Spider re-ranking budget (default: the ranker's).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for bench.json and bench.png.")] = Path("hf_spider_bench"),
    token: Token = None,
    json_output: JsonOutput = False,
) -> None:
    """Compare every ranking method with the ground truth on a zoo x targets."""
    _use_token(token)
    from ..bench import GroundTruthStore, bench_inputs, plot, render_summary, render_table, run_bench

    inputs = bench_inputs(zoo=zoo, targets=targets, data_root=data_root, baseline=baseline, reference=reference,
                          embed_steps=embed_steps, ranker=ranker)
    store = GroundTruthStore(ground_truth or out / "ground_truth.json")  # never the checkout's, unless named
    report = run_bench(inputs.models, inputs.targets, methods=method, ground_truth=store,
                       ground_truth_protocol=ground_truth_protocol, shots=shots, trials=trials,
                       max_per_class=max_per_class, embedder=inputs.embedder, ranker=inputs.ranker, rerank=rerank,
                       progress=not json_output)
    out.mkdir(parents=True, exist_ok=True)
    report.save_json(out / "bench.json")
    plot(report, out / "bench.png")
    if json_output:
        console.print_json(data=report.to_json())
    else:
        console.print(render_table(report))
        console.print(render_summary(report))
        console.print(f"Wrote {out / 'bench.json'} and {out / 'bench.png'}")


@app.command("train-ranker")
def train_ranker_command(
    zoo: Annotated[list[str] | None, typer.Option(
        help="Models the ranker learns (Hub ids or folders; a folder of model folders expands). "
             "Default: the bundled micro zoo.")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Leave these zoo models out (by name).")] = None,
    pool: Annotated[list[str] | None, typer.Option(
        help="Labelled datasets DATASET[:split] to sample training and validation tasks from "
             "(names under --data-root or Hub ids). Default: the offline src-* test splits and aux-*.")] = None,
    data_root: DataRoot = None,
    encoder: Annotated[str | None, typer.Option(
        help="General encoder for task tokens (default with the bundled zoo: its resnet18-all-mix).")] = None,
    reference: Annotated[str | None, typer.Option(
        help="Embedder reference set DATASET[:split] for embedding tokens (default: reference-mix).")] = None,
    token_source: Annotated[str, typer.Option(help="Model tokens: embedding (new models need no retraining) or "
                                                   "table (the paper).")] = "embedding",
    train_tasks: Annotated[int, typer.Option(help="Training tasks to sample.")] = 300,
    validation_tasks: Annotated[int, typer.Option(help="Validation tasks (linear-probe ground truth).")] = 30,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 30,
    names_org: Annotated[str, typer.Option(help="Organisation the ranker records for models given as folders.")] = (
        MICRO_ZOO_ORG),
    out: Annotated[Path | None, typer.Option(
        help="Save the ranker (config.json, model.safetensors, README.md) here.")] = None,
    push: Annotated[str | None, typer.Option(help="Push the ranker to this Hub repo.")] = None,
    token: Token = None,
    json_output: JsonOutput = False,
) -> None:
    """Train a Model Spider ranker on a zoo (features cached), choose its re-ranking budget, save/push it."""
    _use_token(token)
    from ..spider import RankerRecipe, train_ranker, training_inputs
    from ..spider.training import TrainConfig

    inputs = training_inputs(zoo=zoo, exclude=exclude or (), pool=pool, data_root=data_root, encoder=encoder,
                             reference=reference, names_org=names_org)
    recipe = RankerRecipe(encoder=inputs.encoder, embedder=inputs.embedder, token_source=token_source,
                          train_tasks=train_tasks, validation_tasks=validation_tasks,
                          training=TrainConfig(epochs=epochs))
    ranker, report = train_ranker(inputs.models, inputs.datasets, recipe, names=inputs.names,
                                  progress=not json_output)
    if out is not None:
        ranker.save_pretrained(out)
    if push is not None:
        ranker.push_to_hub(push, model_card_kwargs={"repo_id": push})
    if json_output:
        console.print_json(data=report.to_json())
        return
    console.print(f"Supervision: Copeland of {' + '.join(report.label_scores)}; seconds per phase: {report.seconds}")
    console.print("Validation weighted τ by re-ranking budget k: "
                  + ", ".join(f"k={k}: {v:.3f}" for k, v in report.validation_tau.items())
                  + f"  -> default k = {report.default_rerank}")
    for where in (out, push):
        if where is not None:
            console.print(f"Saved the ranker to {where}")


@app.command()
def embed(
    repo_id: Annotated[str | None, typer.Argument(
        help="Model repo to embed (timm, transformers or ONNX image model); or --repos FILE.")] = None,
    baseline: Annotated[str, typer.Option(help="Public baseline model.")] = DEFAULT_BASELINE,
    reference: Annotated[str, typer.Option(help="Reference set DATASET[:split] (Hub id, alias or folder).")] = (
        "imagenet-val"),
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 4000,
    seed: Annotated[int, typer.Option(help="Seed (recorded; replayed by verification).")] = 0,
    max_per_class: Annotated[int | None, typer.Option(help="Cap reference images per class.")] = None,
    push: Annotated[bool, typer.Option("--push/--no-push", help="Publish to the model repo.")] = True,
    create_pr: Annotated[bool, typer.Option(help="Open a pull request instead of committing to main.")] = False,
    revision: Annotated[str | None, typer.Option(help="Model revision to embed.")] = None,
    force: Annotated[bool, typer.Option(help="Recompute even if the published embedding is up to date.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also save the embedding file here.")] = None,
    repos: ReposFile = None,
    ray_address: RayAddress = None,
    workers: Workers = None,
    cpus_per_task: CpusPerTask = 1.0,
    gpus_per_task: GpusPerTask = 0.0,
    retry_failed: RetryFailed = False,
    token: Token = None,
    json_output: JsonOutput = False,
) -> None:
    """Embed a model against a baseline (Standardized Embedder) and publish it in its own repo; with --repos, every
    repo of a list, one Ray task each."""
    _use_token(token)
    from ..tasks import parse_dataset_spec

    dataset, split = parse_dataset_spec(reference)
    options = {"baseline": baseline, "reference": dataset, "reference_split": split, "max_per_class": max_per_class,
               "steps": steps, "seed": seed, "push": push, "create_pr": create_pr, "force": force}
    if _one_or_many(repo_id, repos, single_only={"--out": out, "--revision": revision}):
        return _bulk("embed", repos, options, ray_address, workers, cpus_per_task, gpus_per_task, retry_failed,
                     json_output)
    from ..embedder.pipeline import embed_repo
    from ..formats.embedding import serialize_embedding

    result = embed_repo(repo_id, revision=revision, progress=not json_output, **options)
    if out is not None:
        out.write_bytes(serialize_embedding(result.vector, result.metadata))
    summary = {"repo_id": repo_id, "up_to_date": result.up_to_date, "commit_url": result.commit_url,
               "pr_url": result.pr_url, "metadata": result.metadata}
    if json_output:
        console.print_json(data=summary)
    elif result.up_to_date:
        console.print(f"{repo_id}: the published embedding over {baseline} is up to date; nothing to do.")
    else:
        meta = result.metadata
        console.print(f"{repo_id}: embedded over {baseline} on {meta['reference']}:{meta['reference_split']} "
                      f"(fidelity L_to={float(meta['fidelity_to']):.3f}, L_from={float(meta['fidelity_from']):.3f})")
        if result.pr_url or result.commit_url:
            console.print(f"Published: {result.pr_url or result.commit_url}")


def _one_or_many(repo_id: str | None, repos: Path | None, *, single_only: dict[str, object]) -> bool:
    """Whether the command runs over a repo list (``--repos``) rather than one repo; refuses both or neither, and
    the options that only apply to one repo."""
    if (repo_id is None) == (repos is None):
        raise typer.BadParameter("pass one REPO_ID or --repos FILE", param_hint="REPO_ID")
    for name, value in single_only.items():
        if repos is not None and value is not None:
            raise typer.BadParameter(f"{name} applies to one repo, not to --repos", param_hint=name)
    return repos is not None


def _bulk(job: str, repos: Path, options: dict, ray_address: str | None, workers: int | None, cpus: float,
          gpus: float, retry_failed: bool, json_output: bool) -> None:
    """``--repos``: the job on every repo of the list, on Ray; exit 1 if any failed."""
    from ..bulk import read_repo_list, run_bulk

    report = run_bulk(job, read_repo_list(repos), options, ray_address=ray_address, workers=workers, num_cpus=cpus,
                      num_gpus=gpus, retry_failed=retry_failed, progress=not json_output)
    if json_output:
        console.print_json(data=report.to_json())
    else:
        console.print(f"{job}: {len(report.done)} done, {len(report.failed)} failed, {len(report.skipped)} already "
                      f"in the journal {report.journal} ({report.seconds:.0f} s)", highlight=False, soft_wrap=True)
        for repo, reason in report.failed.items():
            console.print(f"[red]failed[/] {escape(repo)}: {escape(reason)}", highlight=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def scan(
    baseline: Baseline = DEFAULT_BASELINE,
    filter: Annotated[str, typer.Option(help="Hub tag to list.")] = "hf-spider",
    author: Annotated[str | None, typer.Option(help="Only this user or organisation.")] = None,
    search: Annotated[str | None, typer.Option(help="Substring of the repo id.")] = None,
    index: IndexRepo = None,
    since: Annotated[bool, typer.Option(
        help="With --index: also scan, repo by repo, the repos modified since the index was built.")] = False,
    token: Token = None,
    json_output: JsonOutput = False,
) -> None:
    """Discover published embeddings on the Hub, validate them and update the local index."""
    _use_token(token)
    if since and index is None:
        raise typer.BadParameter("--since merges the repos changed since an index: pass --index too",
                                 param_hint="--since")
    if index is None:
        from ..hub.scan import scan as scan_hub

        result = scan_hub(baseline, filter=filter, author=author, search=search, progress=not json_output)
    else:
        from ..hub.index import scan_index

        result = scan_index(index, baseline, since=since, filter=filter, author=author, search=search,
                            progress=not json_output)
    if json_output:
        console.print_json(data={"embeddings": [{"repo_id": e.repo_id, "sha": e.repo_sha, **e.metadata}
                                                for e in result.entries],
                                 "skipped": result.skipped, "downloaded": result.downloaded,
                                 "baselines": result.baselines})
        return
    from rich.table import Table

    table = Table(title=f"Embeddings over {baseline}: {len(result.entries)} valid, {len(result.skipped)} skipped, "
                        f"{result.downloaded} downloaded" + (f" (and the index {index})" if index else ""))
    for col in ("repo", "sha", "fidelity to/from", "reference"):
        table.add_column(col)
    for e in result.entries:
        table.add_row(e.repo_id, e.repo_sha[:8], f"{e.fidelity[0]:.3f} / {e.fidelity[1]:.3f}",
                      f"{e.metadata['reference']}:{e.metadata['reference_split']}")
    console.print(table)
    for repo, reason in result.skipped.items():
        console.print(f"[yellow]skipped[/] {repo}: {reason}", highlight=False)
    console.print(f"Published embeddings by baseline (repos): {escape(result.baselines_line())}", highlight=False,
                  soft_wrap=True)


@index_app.command("build")
def index_build(
    push: Annotated[str, typer.Option(help="Dataset repo to push the index to (ORG/NAME).")],
    baseline: Baseline = DEFAULT_BASELINE,
    filter: Annotated[str, typer.Option(help="Hub tag to list.")] = "hf-spider",
    author: Annotated[str | None, typer.Option(help="Only this user or organisation.")] = None,
    search: Annotated[str | None, typer.Option(help="Substring of the repo id.")] = None,
    private: Annotated[bool, typer.Option(help="Create the dataset repo private.")] = False,
    token: Token = None,
    json_output: JsonOutput = False,
) -> None:
    """Scan the Hub and push every valid embedding over the baseline into one dataset repo, in one commit."""
    _use_token(token)
    from ..hub.index import build_index

    build = build_index(push, baseline, filter=filter, author=author, search=search, private=private,
                        progress=not json_output)
    if json_output:
        console.print_json(data=vars(build))
        return
    console.print(f"{push}: {build.rows} embeddings over {baseline} from {build.listed} listed repos "
                  f"({build.fetched} files downloaded, {len(build.skipped)} repos skipped)", highlight=False)
    console.print(f"Pushed: {build.commit_url}")


@app.command()
def select(
    dataset: Annotated[str, typer.Option(help="Your task: Hub dataset id, alias (cifar100...) or folder.")],
    split: Annotated[str | None, typer.Option(help="Split to use (default: the alias's, else train).")] = None,
    image_column: ImageColumn = None,
    label_column: LabelColumn = None,
    config: DatasetConfig = None,
    models: Annotated[list[str] | None, typer.Option(
        help="Rank these models (Hub ids or folders; repeat or comma-separate) with a forward pass each, "
             "whether or not they published an embedding.")] = None,
    filter: Annotated[str | None, typer.Option(
        help="Rank the Hub models with this tag (forward-based, like --models).")] = None,
    limit: Annotated[int | None, typer.Option(help="With --filter: at most N models, most downloaded first.")] = None,
    baseline: Annotated[str | None, typer.Option(
        help=f"Baseline the embeddings are over (default: the ranker's, else {DEFAULT_BASELINE}).")] = None,
    max_per_class: Annotated[int | None, typer.Option(help="Cap images per class.")] = None,
    shots: Annotated[int | None, typer.Option(help="Few-shot: use exactly K images per class.")] = None,
    method: Annotated[str | None, typer.Option(
        help="embedder, spider or spider+embedder (published embeddings); forward (any models, the default "
             "with --models or --filter).")] = None,
    ranker: Annotated[str | None, typer.Option(
        help="Model Spider ranker (Hub repo or folder) for the spider methods.")] = None,
    rerank: Annotated[str | None, typer.Option(
        help="Forward passes allowed: score the top K, or `all` (forward default: all; spider: the ranker's "
             "validated K; embedder: 0).")] = None,
    rerank_score: Annotated[str | None, typer.Option(
        "--score", "--rerank-score", help="Forward-based score (re-)ranking the top K (default: logme).",
        show_default=False)] = None,
    author: Annotated[str | None, typer.Option(help="Only models of this user or organisation.")] = None,
    search: Annotated[str | None, typer.Option(help="Substring of the repo id.")] = None,
    top: Annotated[int, typer.Option(help="Rows to print.")] = 20,
    verified_only: Annotated[bool, typer.Option(
        help="Only models whose current commit passed `hf_spider verify` on this machine.")] = False,
    index: IndexRepo = None,
    verify_top: Annotated[int, typer.Option(
        help="With --index: check the top K against the files in their own repos.")] = 10,
    token: Token = None,
    json_output: JsonOutput = False,
) -> None:
    """Rank models for your task: every model that published an embedding (no forward pass of candidates unless
    --rerank), or any models you name (--models, --filter) by a prior and a forward-based score."""
    from ..ranking import FORWARD, check_selection, rank_candidates, select_models
    from ..tasks import load_task

    _use_token(token)
    candidates = [m.strip() for entry in models or [] for m in entry.split(",") if m.strip()] or None
    method = method or (FORWARD if candidates or filter else "embedder")
    budget = _rerank_budget(rerank)
    check_selection(method=method, rerank=budget or 0, rerank_score=rerank_score)  # before any work
    if method != FORWARD and (candidates or filter):
        raise typer.BadParameter(f"--models and --filter rank by a forward pass; --method {method} ranks the "
                                 "models that published an embedding", param_hint="--method")
    if method not in (FORWARD, "embedder") and ranker is None:
        raise typer.BadParameter(f"--method {method} needs --ranker REPO_OR_FOLDER", param_hint="--ranker")
    spider = None
    if ranker is not None and method not in (FORWARD, "embedder"):
        from ..spider.hub import load_ranker

        spider = load_ranker(ranker)
    loading = time.perf_counter()
    task = load_task(dataset, split=split, config=config, image_column=image_column, label_column=label_column,
                     max_per_class=max_per_class, shots=shots)
    loading = time.perf_counter() - loading
    if method == FORWARD:
        result = rank_candidates(task, candidates, filter=filter, author=author, search=search, limit=limit,
                                 score=rerank_score or "logme", rerank=budget, baseline=baseline or DEFAULT_BASELINE,
                                 progress=not json_output)
    else:
        baseline = baseline or (spider.baseline if spider is not None and spider.baseline else DEFAULT_BASELINE)
        if rerank is None:
            budget = spider.default_rerank if spider is not None else 0
        elif budget is None:  # `all`: every candidate that can be run
            budget = sys.maxsize
        result = select_models(task, method=method, ranker=spider, baseline=baseline, rerank=budget,
                               rerank_score=rerank_score, author=author, search=search, verified_only=verified_only,
                               index=index, verify_top=verify_top, progress=not json_output)
    result.timings = {"task load": loading, **result.timings}
    if json_output:
        console.print_json(data=result.to_json())
        return
    title = (f"Models for {task.name} ({len(task)} images) by {result.method}: "
             f"{result.forward_passes} candidate forward passes, {result.seconds:.1f} s")
    console.print(_forward_table(result, rerank_score or "logme", title, top) if method == FORWARD
                  else _published_table(result, baseline, title, top, reranked=bool(budget)))
    for c in result.candidates[:top]:
        for flag in c.flags:
            console.print(f"[yellow]flagged[/] {c.repo_id}: {flag}", highlight=False)
    if method == FORWARD:
        for repo, reason in result.skipped.items():
            console.print(f"[yellow]skipped[/] {escape(repo)}: {escape(reason)}", highlight=False, soft_wrap=True)
    else:
        for repo, found in result.checked.items():
            if found != "verified":
                console.print(f"[yellow]checked[/] {escape(repo)}: {escape(found)}", highlight=False, soft_wrap=True)
        if result.skipped:
            console.print(f"{len(result.skipped)} repos skipped (see `hf_spider scan`).")


def _use_token(token: str | None) -> None:
    """``--token``: for this command, as ``HF_TOKEN``, which huggingface_hub, timm, transformers and datasets read
    at each call (timm's ``hf-hub:`` downloads take no token argument)."""
    if token:
        os.environ["HF_TOKEN"] = token


def _rerank_budget(text: str | None) -> int | None:
    """``--rerank``: a number of candidates, or ``all`` (``None``)."""
    if text is None or text == "all":
        return None
    if not text.isdigit():
        raise InvalidInputError(f"--rerank expects a number of candidates or `all`, got {text!r}")
    return int(text)


def _forward_table(result, score: str, title: str, top: int):
    from rich.table import Table

    table = Table(title=title)
    published = any(c.embedder_score is not None for c in result.candidates)
    for col in ("rank", "repo", score, *(("embedder",) if published else ()), "prior rank", "parameters", "downloads"):
        table.add_column(col, justify="left" if col == "repo" else "right")
    for i, c in enumerate(result.candidates[:top]):
        embedder = ("" if c.embedder_score is None else f"{c.embedder_score:.2f}",) if published else ()
        table.add_row(str(i + 1), escape(c.repo_id), "" if c.score is None else f"{c.score:.4f}", *embedder,
                      str(c.prior_rank), "?" if c.parameters is None else f"{c.parameters / 1e6:.1f}M",
                      str(c.downloads or 0))
    return table


def _published_table(result, baseline: str, title: str, top: int, *, reranked: bool):
    from rich.table import Table

    table = Table(title=title)
    for col in ("rank", "repo", "score", "prior rank", "fidelity", "baseline", "published",
                *(("re-rank",) if reranked else ()), "flags"):
        table.add_column(col, justify="left" if col in ("repo", "baseline") else "right")
    for i, c in enumerate(result.candidates[:top]):
        table.add_row(str(i + 1), c.repo_id, f"{c.score:.2f}", str(c.prior_rank), f"{min(c.fidelity):.3f}",
                      baseline, c.published[:10],
                      *((f"{c.rerank_score:.4f}" if c.rerank_score is not None else "",) if reranked else ()),
                      ", ".join(f.split(":", 1)[0] for f in c.flags))
    return table


@app.command()
def verify(
    repo_id: Annotated[str | None, typer.Argument(
        help="Model repo whose published embedding to recompute; or --repos FILE.")] = None,
    baseline: Baseline = DEFAULT_BASELINE,
    repos: ReposFile = None,
    ray_address: RayAddress = None,
    workers: Workers = None,
    cpus_per_task: CpusPerTask = 1.0,
    gpus_per_task: GpusPerTask = 0.0,
    retry_failed: RetryFailed = False,
    token: Token = None,
    json_output: JsonOutput = False,
) -> None:
    """Recompute a published embedding with its recorded settings and compare; exit 1 if it does not match. With
    --repos, every repo of a list, one Ray task each (the journal holds each report)."""
    _use_token(token)
    if _one_or_many(repo_id, repos, single_only={}):
        return _bulk("verify", repos, {"baseline": baseline}, ray_address, workers, cpus_per_task, gpus_per_task,
                     retry_failed, json_output)
    from ..verify import verify_repo

    report = verify_repo(repo_id, baseline=baseline, progress=not json_output)
    if json_output:
        console.print_json(data=report.to_json())
    else:
        if report.mean_abs is not None:
            console.print(f"{repo_id}@{report.repo_sha[:8]}: mass excess {report.mass_excess:+.4f} per value; "
                          f"|published - recomputed| mean {report.mean_abs:.4f}, max {report.max_abs:.4f}, "
                          f"L1 {report.l1:.2f}" + (" (exact replay)" if report.max_abs == 0 else ""), highlight=False)
        for flag in report.flags:
            console.print(f"[yellow]flagged[/] {flag}", highlight=False)
        for reason in report.reasons:
            console.print(f"[red]failed[/] {reason}", highlight=False)
        console.print("[green]verified[/]" if report.passed else "[red]NOT verified[/]")
    if not report.passed:
        raise typer.Exit(1)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for ranking.png, spider.png and demo.json.")] = Path(
        "hf_spider_demo"),
    root: Annotated[Path | None, typer.Option(
        help="Keep the local Hub and its caches in this folder (default: a temporary one); "
             "a second run reuses what is there.")] = None,
    model: Annotated[list[str] | None, typer.Option(hidden=True, help="Zoo models to publish (quick runs).")] = None,
    json_output: JsonOutput = False,
) -> None:
    """The whole idea in a few minutes: publish the micro zoo to a local Hub and rank it for a small task."""
    from ..demo import render, rich_steps, run_local_demo

    if json_output:
        console.print_json(data=run_local_demo(out, root=root, models=model).to_json())
        return
    console.print("A local Hub serves the demo; hf_spider talks to it as it would to huggingface.co.")
    with rich_steps(console) as step:
        result = run_local_demo(out, root=root, models=model, step=step)
    render(result, console)


@app.command()
def chart(
    repos: Annotated[list[str], typer.Argument(help="Models to draw (each published an embedding over --baseline).")],
    baseline: Baseline = DEFAULT_BASELINE,
    tasks: Annotated[list[str] | None, typer.Option(
        help="Tasks whose groups are the axes: Hub dataset ids or folders (default: the bundled ones).")] = None,
    split: Annotated[str, typer.Option(help="Split of --tasks to use.")] = "train",
    groups: Annotated[int | None, typer.Option(help="Number of task groups (default: one per task).")] = None,
    author: Annotated[str | None, typer.Option(help="Compare only with models of this user or organisation.")] = None,
    search: Annotated[str | None, typer.Option(help="Compare only with repos whose id contains this.")] = None,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("spider.png"),
    token: Token = None,
    json_output: JsonOutput = False,
) -> None:
    """Spider chart (Model Spider §5.4): each model's ability by task group, from published embeddings."""
    _use_token(token)
    from ..charts import chart_published
    from ..tasks import load_task

    named = {Path(t).name if Path(t).is_dir() else t.split("/")[-1]: load_task(t, split=split) for t in tasks or []}
    table = chart_published(repos, baseline, out, tasks=named or None, n_groups=groups, author=author, search=search,
                            progress=not json_output)
    if json_output:
        console.print_json(data={"groups": table.groups, "out": str(out),
                                 "abilities": {m: table.of(m) for m in repos}})
        return
    from rich.table import Table

    view = Table(title=f"Ability by task group, relative to {len(table.models)} models (1 = the best of them)")
    for col in ("model", *table.groups):
        view.add_column(col, justify="left" if col == "model" else "right")
    for m in repos:
        view.add_row(m, *(f"{v:.2f}" for v in table.of(m).values()))
    console.print(view)
    console.print(f"Wrote {out}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Errors a user can act on print their whole message (``--verbose``, before
    or after the subcommand, adds the traceback); anything else is a bug and keeps its traceback, as ``hf``."""
    args = list(sys.argv[1:] if argv is None else argv)
    flags = [a for a in args if a in ("--verbose", "-v")]  # accepted anywhere, as a global option
    try:
        app(args=flags + [a for a in args if a not in flags])
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        sys.exit(130)
    except Exception as e:
        message = known_error_message(e)
        if message is None:
            raise
        if _state["verbose"]:
            err_console.print_exception()
        err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(1)


def known_error_message(error: Exception) -> str | None:
    """What to print for an error the user can act on: a Hub error as ``hf`` words it, hf_spider's own errors,
    bad values and file-system or network errors with their whole message; ``None`` for anything else."""
    try:
        from huggingface_hub.cli._errors import format_known_exception
    except ImportError:  # a private helper of huggingface_hub's CLI: fall back to the message itself
        format_known_exception = None
    from huggingface_hub.errors import HfHubHTTPError

    from ..errors import HfSpiderError, HubUnavailableError
    from ..hub.client import endpoint
    from ..hub.retry import transport_errors

    if format_known_exception is not None and isinstance(error, HfHubHTTPError):
        return format_known_exception(error)
    where = f"{endpoint()}, timeout {_state['timeout']:g} s" if "timeout" in _state else endpoint()
    if isinstance(error, transport_errors()):
        return f"cannot reach the Hub at {where}: {error} (offline? set HF_ENDPOINT to a local Hub)"
    if isinstance(error, HubUnavailableError):
        return f"the Hub at {where} did not answer: {error}"
    if isinstance(error, HfSpiderError | HfHubHTTPError | ValueError | OSError):
        return str(error).strip() or type(error).__name__
    return None


if __name__ == "__main__":
    main()
