"""The ``hf_spider`` command line: thin typer commands that parse, call the library, and print.

Errors print one line and exit non-zero; ``--verbose`` shows the traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from . import __version__

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

console = Console()
err_console = Console(stderr=True)
_state = {"verbose": False}


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"hf_spider {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    _state["verbose"] = verbose


@hub_app.command("serve")
def hub_serve(
    root: Annotated[Path, typer.Option(help="Folder holding the repositories (created if missing; kept across restarts).")] = Path("./hubdata"),
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8080,
    token: Annotated[
        str | None, typer.Option(envvar="HF_SPIDER_HUB_TOKEN", help="Token required for writes (default: open).")
    ] = None,
) -> None:
    """Serve the Hub HTTP API on 127.0.0.1 so the official clients work through HF_ENDPOINT."""
    from .hub.server import HubServer

    server = HubServer(root, port=port, token=token)
    console.print(f"Local Hub serving [bold]{root.resolve()}[/] at [bold]{server.url}[/]")
    console.print(f"Point the clients at it:  export HF_ENDPOINT={server.url}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("Stopped.")
    finally:
        server.server_close()


REPO_ROOT = Path(__file__).resolve().parents[1]


def _expand_zoo(entries: list[str]) -> list[str]:
    """A folder of model folders (each with a config.json) stands for all of them."""
    out: list[str] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir() and not (path / "config.json").exists():
            out += sorted(str(p.parent) for p in path.glob("*/config.json"))
        else:
            out.append(entry)
    return out


@app.command()
def bench(
    zoo: Annotated[list[str] | None, typer.Option(
        help="Models to rank: Hub ids or folders (a folder of model folders expands). "
             "Default: the bundled micro zoo.")] = None,
    targets: Annotated[list[str] | None, typer.Option(
        help="Target tasks with train/test splits: Hub dataset ids, folders, or names under --data-root. "
             "Default: every tgt-*/reg-* under --data-root.")] = None,
    method: Annotated[list[str] | None, typer.Option(help="Scores to run (default: all that fit).")] = None,
    data_root: Annotated[Path, typer.Option(envvar="HF_SPIDER_OFFLINE_DATA",
                                            help="Folder of offline datasets.")] = REPO_ROOT.parent / "shared" / "offline_data",
    ground_truth: Annotated[Path, typer.Option(help="Ground-truth JSON read and extended.")] = (
        REPO_ROOT / "benchmarks" / "zoo" / "ground_truth.json"),
    shots: Annotated[int | None, typer.Option(help="Few-shot: examples per class for scoring.")] = None,
    trials: Annotated[int, typer.Option(help="Few-shot draws (mean ± 95% CI).")] = 10,
    max_per_class: Annotated[int | None, typer.Option(help="Cap examples per class (quick runs).")] = None,
    baseline: Annotated[str | None, typer.Option(
        help="Embedder baseline model (default with the bundled zoo: its resnet18-all-mix).")] = None,
    reference: Annotated[str | None, typer.Option(
        help="Embedder reference set DATASET[:split] (default: reference-mix under --data-root).")] = None,
    embed_steps: Annotated[int, typer.Option(help="Model-embedding optimisation steps.")] = 1000,
    out: Annotated[Path, typer.Option(help="Folder for bench.json and bench.png.")] = Path("hf_spider_bench"),
    json_output: Annotated[bool, typer.Option("--json", help="Print the JSON report instead of the table.")] = False,
) -> None:
    """Compare every ranking method with the ground truth on a zoo x targets."""
    from .bench import EmbedderSetup, GroundTruthStore, plot, render_table, run_bench

    bundled = REPO_ROOT / "benchmarks" / "zoo" / "models"
    models = _expand_zoo(zoo or [str(bundled)])
    if baseline is None and not zoo and (bundled / "resnet18-all-mix").is_dir():
        baseline = str(bundled / "resnet18-all-mix")
    if reference is None and (data_root / "reference-mix").is_dir():
        reference = str(data_root / "reference-mix")
    embedder = None
    if baseline and reference:
        ref_name, ref_split = _dataset_and_split(reference)
        embedder = EmbedderSetup(baseline, ref_name, ref_split, steps=embed_steps)
    if targets:
        tasks = [str(data_root / t) if (data_root / t).is_dir() else t for t in targets]
    else:
        tasks = sorted(str(p) for p in data_root.glob("*") if p.name.startswith(("tgt-", "reg-")))
    if not tasks:
        raise typer.BadParameter(f"no target tasks given and none found under {data_root}", param_hint="--targets")
    report = run_bench(models, tasks, methods=method, ground_truth=GroundTruthStore(ground_truth), shots=shots,
                       trials=trials, max_per_class=max_per_class, embedder=embedder, progress=not json_output)
    out.mkdir(parents=True, exist_ok=True)
    report.save_json(out / "bench.json")
    plot(report, out / "bench.png")
    if json_output:
        console.print_json(data=report.to_json())
    else:
        console.print(render_table(report))
        console.print(f"Wrote {out / 'bench.json'} and {out / 'bench.png'}")


def _dataset_and_split(text: str) -> tuple[str, str | None]:
    """``org/name:split`` -> (``org/name``, ``split``); no suffix -> (text, None)."""
    name, sep, split = text.rpartition(":")
    return (name, split) if sep and name and "/" not in split else (text, None)


@app.command()
def embed(
    repo_id: Annotated[str, typer.Argument(help="Model repo to embed (timm or transformers image model).")],
    baseline: Annotated[str, typer.Option(help="Public baseline model.")] = "timm/resnet18.a1_in1k",
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
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Embed a model against a baseline (Standardized Embedder) and publish it in its own repo."""
    from .embedder.pipeline import embed_repo
    from .hub.embeddings import serialize_embedding

    dataset, split = _dataset_and_split(reference)
    result = embed_repo(repo_id, baseline=baseline, reference=dataset, reference_split=split,
                        max_per_class=max_per_class, steps=steps, seed=seed, revision=revision, push=push,
                        create_pr=create_pr, force=force, progress=not json_output)
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


@app.command()
def scan(
    baseline: Annotated[str, typer.Option(help="Baseline the embeddings are over.")] = "timm/resnet18.a1_in1k",
    filter: Annotated[str, typer.Option(help="Hub tag to list.")] = "hf-spider",
    author: Annotated[str | None, typer.Option(help="Only this user or organisation.")] = None,
    search: Annotated[str | None, typer.Option(help="Substring of the repo id.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Discover published embeddings on the Hub, validate them and update the local index."""
    from .hub.scan import scan as scan_hub

    result = scan_hub(baseline, filter=filter, author=author, search=search, progress=not json_output)
    if json_output:
        console.print_json(data={"embeddings": [{"repo_id": e.repo_id, "sha": e.repo_sha, **e.metadata}
                                                for e in result.entries],
                                 "skipped": result.skipped, "downloaded": result.downloaded})
        return
    from rich.table import Table

    table = Table(title=f"Embeddings over {baseline}: {len(result.entries)} valid, {len(result.skipped)} skipped, "
                        f"{result.downloaded} downloaded")
    for col in ("repo", "sha", "fidelity to/from", "reference"):
        table.add_column(col)
    for e in result.entries:
        table.add_row(e.repo_id, e.repo_sha[:8], f"{e.fidelity[0]:.3f} / {e.fidelity[1]:.3f}",
                      f"{e.metadata['reference']}:{e.metadata['reference_split']}")
    console.print(table)
    for repo, reason in result.skipped.items():
        console.print(f"[yellow]skipped[/] {repo}: {reason}", highlight=False)


@app.command()
def select(
    dataset: Annotated[str, typer.Option(help="Your task: Hub dataset id, alias (cifar100...) or folder.")],
    split: Annotated[str | None, typer.Option(help="Split to use (default: the alias's, else train).")] = None,
    baseline: Annotated[str, typer.Option(help="Baseline the embeddings are over.")] = "timm/resnet18.a1_in1k",
    max_per_class: Annotated[int | None, typer.Option(help="Cap images per class.")] = None,
    shots: Annotated[int | None, typer.Option(help="Few-shot: use exactly K images per class.")] = None,
    method: Annotated[str, typer.Option(help="Ranking method (embedder).")] = "embedder",
    rerank: Annotated[int, typer.Option(help="Forward passes allowed: re-rank the top K.")] = 0,
    rerank_score: Annotated[str, typer.Option(help="Forward-based score for re-ranking.")] = "logme",
    author: Annotated[str | None, typer.Option(help="Only models of this user or organisation.")] = None,
    search: Annotated[str | None, typer.Option(help="Substring of the repo id.")] = None,
    top: Annotated[int, typer.Option(help="Rows to print.")] = 20,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Rank every model that published an embedding for your task (no forward pass of candidates)."""
    from .ranking import select_models
    from .tasks import load_task

    if method != "embedder":
        raise typer.BadParameter(f"unknown method {method!r}; available: embedder", param_hint="--method")
    task = load_task(dataset, split=split, max_per_class=max_per_class, shots=shots)
    result = select_models(task, baseline=baseline, rerank=rerank, rerank_score=rerank_score, author=author,
                           search=search, progress=not json_output)
    if json_output:
        console.print_json(data=result.to_json())
        return
    from rich.table import Table

    table = Table(title=f"Models for {task.name} ({len(task)} images) by {result.method}: "
                        f"{result.forward_passes} candidate forward passes, {result.seconds:.1f} s")
    for col in ("rank", "repo", "score", "fidelity", "baseline", "published", *(("re-rank",) if rerank else ())):
        table.add_column(col, justify="left" if col in ("repo", "baseline") else "right")
    for i, c in enumerate(result.candidates[:top]):
        table.add_row(str(i + 1), c.repo_id, f"{c.score:.2f}", f"{min(c.fidelity):.3f}",
                      baseline, c.published[:10],
                      *((f"{c.rerank_score:.4f}" if c.rerank_score is not None else "",) if rerank else ()))
    console.print(table)
    if result.skipped:
        console.print(f"{len(result.skipped)} repos skipped (see `hf_spider scan`).")


def main() -> None:
    """Console-script entry point: run the app, turning exceptions into one clear line."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        sys.exit(130)
    except Exception as e:
        if _state["verbose"]:
            err_console.print_exception()
        else:
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            err_console.print(f"[bold red]Error:[/] {message}  [dim](--verbose for the traceback)[/]",
                              highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
