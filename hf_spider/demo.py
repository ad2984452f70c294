"""``hf_spider demo``: the whole idea on the bundled micro zoo and a local Hub, in a couple of minutes.

1. The owners' side: the 27 zoo models (``hf_spider/micro_zoo/models``) are uploaded to the Hub and each
   publishes its Standardized Embedder vector in its own repo, as ``hf_spider embed`` would. The
   vectors were computed once by ``benchmarks/zoo/embed_zoo.py`` (minutes of CPU) and are published
   here with the repos' real revisions, after checking that the uploaded baseline and model weights
   are the ones they were computed from.
2. The user's side: a small labelled task (public-domain clipart, ``hf_spider/demo_data``) is
   uploaded as a dataset repo and every method of :data:`hf_spider.ranking.METHODS` ranks the zoo for
   it, re-ranking its top 3 with forward passes. The Model Spider methods run with the ranker trained
   on the zoo (``hf_spider/micro_zoo/ranker``, uploaded as a model repo).
3. The ranking is printed next to the ground truth (each model's linear-probe accuracy on the task,
   precomputed by ``benchmarks/zoo/build_demo_data.py``), and a ranking plot and a spider chart of
   the top models are written.

:func:`run_demo` works against whatever Hub ``HF_ENDPOINT`` names (tests use theirs); the command runs
:func:`run_local_demo`, which serves a Hub from a temporary folder on a free loopback port and runs the demo
against it in a fresh process.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .constants import MICRO_ZOO
from .errors import HfSpiderError, InvalidArtifactError, InvalidInputError

__all__ = ["DemoResult", "local_hub", "publish_zoo", "render", "rich_steps", "run_demo",
           "run_local_demo", "upload_ranker", "upload_task"]

DEMO_DATA = Path(__file__).parent / "demo_data"
ZOO_DIR = MICRO_ZOO
ORG = "hf-spider-demo"
BASELINE = "resnet18-all-mix"  # the zoo's embedder baseline
TASK = "clipart-objects"
RERANK = 3
CHARTED = 3  # models drawn on the spider chart: the top of the first method's ranking
RANKER_DIR = ZOO_DIR / "ranker"  # the Model Spider ranker trained on the zoo (config.json + model.safetensors)

Step = Callable[[str, int | None], Callable[[], None]]  # (description, total) -> advance


@dataclass
class DemoResult:
    """What the demo ranked, how it compares with the ground truth, and the files it wrote."""

    task: str
    ground_truth: dict[str, float]  # repo id -> linear-probe accuracy
    selections: dict[str, Any]  # method -> hf_spider.ranking.Selection
    metrics: dict[str, dict[str, float]]  # method -> weighted τ, regrets
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "ground_truth": self.ground_truth, "metrics": self.metrics,
                "selections": {m: s.to_json() for m, s in self.selections.items()},
                "files": [str(f) for f in self.files], "seconds": round(self.seconds, 1)}


@contextlib.contextmanager
def local_hub(root: Path | None = None) -> Iterator[str]:
    """Serve a Hub from ``root`` (default: a temporary folder) and point this process's Hub clients at it.

    Sets ``HF_ENDPOINT``, ``HF_TOKEN`` (a write token) and caches under ``root`` (``HF_HOME``,
    ``HF_SPIDER_CACHE``) for the duration and yields the Hub's URL. timm, transformers,
    datasets and huggingface_hub read ``HF_ENDPOINT`` and ``HF_HOME`` once, at import: this must run before
    ``huggingface_hub`` is imported (a script's first lines); :func:`run_local_demo` has no such condition.
    """
    if "huggingface_hub" in sys.modules:
        raise HfSpiderError("the local demo Hub must be started before huggingface_hub is imported "
                            "(or use hf_spider.demo.run_local_demo, which runs in a fresh process)")
    with _served_hub(root) as env, _environ(env):
        yield env["HF_ENDPOINT"]


@contextlib.contextmanager
def _served_hub(root: Path | None) -> Iterator[dict[str, str]]:
    """A Hub served from ``root`` (default: a temporary folder); yields :func:`_hub_environment` for it."""
    from .localhub.server import LocalHub

    with contextlib.ExitStack() as stack:
        folder = Path(root) if root is not None else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="hf_spider-demo-")))
        token = secrets.token_hex(16)
        hub = stack.enter_context(LocalHub(folder / "hub", token=token))
        yield _hub_environment(hub.url, token, folder)


def _hub_environment(url: str, token: str, folder: Path) -> dict[str, str]:
    """What points the Hub clients at a local Hub: ``HF_ENDPOINT``, ``HF_TOKEN`` (a write token) and caches
    under ``folder`` (``HF_HOME``, ``HF_SPIDER_CACHE``), so that the demo leaves nothing in the user's."""
    return {"HF_ENDPOINT": url, "HF_TOKEN": token, "HF_HOME": str(folder / "hf_home"),
            "HF_SPIDER_CACHE": str(folder / "hf_spider_cache"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_local_demo(out: Path, *, root: Path | None = None, models: Sequence[str] | None = None,
                   step: Step | None = None) -> DemoResult:
    """:func:`run_demo` against a Hub served from ``root`` (default: a temporary folder), whatever this process has
    imported: the demo runs in a fresh process whose environment points at that Hub from the start (the clients read it
    at import). ``step`` gets its progress here; its errors are raised here, with their traceback as a note. As with
    every spawned process, a script calling it needs the ``if __name__ == "__main__":`` guard."""
    step = step or (lambda _description, _total: lambda: None)
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    with _served_hub(root) as env:
        with _environ(env):  # the child's environment from its first instruction
            child = context.Process(target=_demo_process, args=(send, Path(out), models))
            child.start()
        send.close()
        advance: Callable[[], None] = lambda: None
        try:
            while True:
                try:
                    kind, *event = receive.recv()
                except EOFError:
                    child.join(10)
                    raise HfSpiderError(f"the demo process ended without a result (exit code {child.exitcode})"
                                        ) from None
                if kind == "step":
                    advance = step(*event)
                elif kind == "advance":
                    advance()
                elif kind == "done":
                    return event[0]
                else:
                    error, trace = event
                    error.add_note(f"in the demo process:\n{trace}")
                    raise error
        finally:
            child.join(10)
            if child.is_alive():
                child.kill()


def _demo_process(send: Any, out: Path, models: Sequence[str] | None) -> None:
    """:func:`run_local_demo`'s child: runs the demo, sends each step, then the result or the error."""
    import torch

    # the platform's default start method again (a spawned process inherits "spawn"): DataLoader workers fork
    multiprocessing.set_start_method(multiprocessing.get_all_start_methods()[0], force=True)
    torch.set_num_threads(1)  # tiny tensors: as fast on one thread, and no OpenMP spin-waits on a shared CPU (10x)

    def step(description: str, total: int | None) -> Callable[[], None]:
        send.send(("step", description, total))
        return lambda: send.send(("advance",))

    try:
        send.send(("done", run_demo(out, models=models, step=step)))
    except Exception as exc:  # every error goes back to the parent, which raises it
        trace = traceback.format_exc()
        try:
            send.send(("error", exc, trace))
        except Exception:  # an error that cannot be pickled: its message
            send.send(("error", HfSpiderError(f"{type(exc).__name__}: {exc}"), trace))
    finally:
        send.close()


def _zoo_names() -> list[str]:
    names = sorted(p.parent.name for p in (ZOO_DIR / "models").glob("*/config.json"))
    if not names:
        raise HfSpiderError(f"the micro zoo is missing ({ZOO_DIR / 'models'}): reinstall hf_spider")
    return names


@contextlib.contextmanager
def rich_steps(console: Any) -> Iterator[Step]:
    """Progress of the demo's steps on ``console``: one line per step, a bar where the size is known."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        def finish_all() -> None:
            for task in progress.tasks:
                progress.update(task.id, total=task.total or 1, completed=task.total or 1)

        def step(description: str, total: int | None) -> Callable[[], None]:
            finish_all()  # a new step means the previous ones are done
            task_id = progress.add_task(description, total=total)
            return lambda: progress.advance(task_id)

        yield step
        finish_all()


def _precomputed(name: str) -> tuple[np.ndarray, dict[str, str]]:
    """The committed embedding of a zoo model (validated like any downloaded one)."""
    from .formats.embedding import parse_embedding

    return parse_embedding((ZOO_DIR / "embeddings" / f"{name}.safetensors").read_bytes())


def _upload_model(name: str, repo_id: str, digest: str) -> Any:
    """Upload a zoo model folder unless the repo already holds exactly its files; returns the repo's info.

    ``digest`` is the weights digest recorded with the model's embedding: the upload must reproduce it.
    """
    from huggingface_hub import HfApi

    from .embedder.pipeline import weights_digest

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    info = api.model_info(repo_id, files_metadata=True)
    if weights_digest(info.siblings or []) != digest:
        api.upload_folder(folder_path=ZOO_DIR / "models" / name, repo_id=repo_id,
                          commit_message=f"Upload the micro-zoo model {name}")
        info = api.model_info(repo_id, files_metadata=True)
        if weights_digest(info.siblings or []) != digest:
            raise InvalidArtifactError(f"{ZOO_DIR / 'models' / name} changed since its embedding was computed: "
                                       "rerun benchmarks/zoo/embed_zoo.py")
    return info


def _publish_model(name: str, repo_id: str, baseline_id: str, baseline_revision: str, baseline_weights: str) -> None:
    """Upload one zoo model (unless there) and publish its precomputed embedding (unless there).

    The published metadata names the repos' real ids and revisions; the vector and the rest are the
    precomputed ones.
    """
    from .formats.embedding import embedding_path
    from .hub.embeddings import publish_embedding

    vector, meta = _precomputed(name)
    if meta.get("baseline_weights") != baseline_weights:
        raise InvalidArtifactError(f"the embedding of {name} was computed over other baseline weights than "
                                   f"{baseline_id}'s: rerun benchmarks/zoo/embed_zoo.py")
    info = _upload_model(name, repo_id, meta["model_weights"])
    if embedding_path(baseline_id) not in {s.rfilename for s in info.siblings or []}:
        publish_embedding(repo_id, vector, {**meta, "baseline": baseline_id, "baseline_revision": baseline_revision,
                                            "model": repo_id, "model_revision": info.sha})


def publish_zoo(names: Sequence[str] | None = None, *, org: str = ORG, advance: Callable[[], None] = lambda: None,
                ) -> tuple[str, list[str]]:
    """Upload the micro zoo to the current Hub and publish each model's precomputed embedding.

    The baseline is uploaded first and loaded back from the Hub, to check that its weights hash is
    the one the embeddings were computed over and to record its commit as ``baseline_revision``.
    Models and embeddings already on the Hub are reused. Returns the baseline's id and the models' ids.
    """
    from .backbones import load_backbone

    names = list(names or _zoo_names())
    baseline_id = f"{org}/{BASELINE}"
    _upload_model(BASELINE, baseline_id, _precomputed(BASELINE)[1]["model_weights"])
    base = load_backbone(baseline_id, device="cpu")
    weights = f"sha256:{base.weights_hash()}"
    repos = [f"{org}/{n}" for n in names]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(_publish_model, n, r, baseline_id, base.revision, weights)
                   for n, r in zip(names, repos, strict=True)]
        for future in futures:
            future.result()
            advance()
    return baseline_id, repos


def upload_task(name: str = TASK, *, org: str = ORG) -> str:
    """Upload a bundled task folder as a dataset repo (unless it is there); returns its id."""
    from huggingface_hub import HfApi

    api, repo_id = HfApi(), f"{org}/{name}"
    if not api.repo_exists(repo_id, repo_type="dataset"):
        api.create_repo(repo_id, repo_type="dataset")
        api.upload_folder(folder_path=DEMO_DATA / name, repo_id=repo_id, repo_type="dataset",
                          commit_message=f"Upload the demo task {name}")
    return repo_id


def upload_ranker(*, org: str = ORG) -> str | None:
    """Upload the zoo's Model Spider ranker as a model repo (unless it is there); None without one."""
    from huggingface_hub import HfApi

    if not (RANKER_DIR / "model.safetensors").exists():
        return None
    api, repo_id = HfApi(), f"{org}/spider-ranker"
    if not api.repo_exists(repo_id):
        api.create_repo(repo_id)
        api.upload_folder(folder_path=RANKER_DIR, repo_id=repo_id, commit_message="Upload the zoo's spider ranker")
    return repo_id


def _metrics(selection: Any, ground_truth: dict[str, float]) -> dict[str, float]:
    """Weighted τ (both conventions) of the final order, and top-1 / top-3 regret in accuracy points."""
    from . import evaluation

    order = [c.repo_id for c in selection.candidates if c.repo_id in ground_truth]
    gt = np.array([ground_truth[r] for r in order])
    pred = -np.arange(len(order), dtype=np.float64)  # the ranking's order: first = highest
    return {"tau_sfda": evaluation.weighted_tau(gt, pred), "tau_spider": evaluation.weighted_tau(gt, pred, "spider"),
            "regret_top1": 100 * evaluation.top_k_regret(gt, pred, k=1),
            "regret_top3": 100 * evaluation.top_k_regret(gt, pred, k=min(3, len(order)))}


def run_demo(
    out: Path,
    *,
    models: Sequence[str] | None = None,
    org: str = ORG,
    step: Step | None = None,
) -> DemoResult:
    """Publish the zoo, rank it for the demo task with every method, compare, and write the figures.

    Args:
        out: folder for ``ranking.png``, ``spider.png`` and ``demo.json``.
        models: zoo model names to publish (default: all 27; the baseline is always uploaded).
        org: namespace of the repos on the Hub.
        step: progress reporting, ``step(description, total)`` returning an ``advance()`` callable.
    """
    from .charts import chart_published
    from .ranking import METHODS, select_models
    from .tasks import load_task

    start = time.perf_counter()
    step = step or (lambda _description, _total: lambda: None)
    names = list(models or _zoo_names())
    if unknown := sorted(set(names) - set(_zoo_names())):
        raise InvalidInputError(f"not models of the micro zoo: {', '.join(unknown)} (it has {', '.join(_zoo_names())})")
    baseline_id, repos = publish_zoo(names, org=org, advance=step("Publishing the zoo and its embeddings",
                                                                  len(names)))
    step("Uploading the demo task", None)
    task = load_task(upload_task(org=org), split="train")
    ranker = upload_ranker(org=org)
    truth = json.loads((DEMO_DATA / "ground_truth.json").read_text())["models"]
    ground_truth = {r: truth[n] for n, r in zip(names, repos, strict=True) if n in truth}
    selections, metrics = {}, {}
    for method in [m for m in METHODS if m == "embedder" or ranker]:
        step(f"Ranking: {method}, re-ranking the top {RERANK}", None)
        selections[method] = select_models(task, method=method, ranker=ranker, baseline=baseline_id, rerank=RERANK,
                                           author=org, progress=False)
        metrics[method] = _metrics(selections[method], ground_truth)
    out.mkdir(parents=True, exist_ok=True)
    files = [_plot_ranking(selections, ground_truth, out / "ranking.png")]
    step(f"Spider chart of the top {CHARTED}", None)
    top = [c.repo_id for c in next(iter(selections.values())).candidates[:CHARTED]]
    chart_published(top, baseline_id, out / "spider.png", author=org, progress=False,
                    title=f"Top {len(top)} models for {TASK}: ability by task group")
    files.append(out / "spider.png")
    result = DemoResult(task.name, ground_truth, selections, metrics, files, time.perf_counter() - start)
    (out / "demo.json").write_text(json.dumps(result.to_json(), indent=1))
    result.files.append(out / "demo.json")
    return result


def _plot_ranking(selections: dict[str, Any], ground_truth: dict[str, float], path: Path) -> Path:
    """One panel per method: the ground-truth accuracy of each model, in the method's order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = max(ground_truth, key=ground_truth.__getitem__)
    fig, axes = plt.subplots(1, len(selections), figsize=(6.4 * len(selections), 7.5), squeeze=False)
    for ax, selection in zip(axes[0], selections.values(), strict=True):
        order = [c.repo_id for c in selection.candidates if c.repo_id in ground_truth]
        values = [100 * ground_truth[r] for r in order]
        colours = ["tab:orange" if i < selection.forward_passes else "tab:blue" for i in range(len(order))]
        ax.barh(range(len(order)), values, color=colours)
        ax.set_yticks(range(len(order)), [r.split("/")[-1] + (" ★" if r == best else "") for r in order])
        ax.invert_yaxis()
        ax.set_xlabel("ground truth: linear-probe accuracy (%)")
        ax.set_title(f"{selection.method}\n(orange: re-ranked with {selection.forward_passes} forward passes; "
                     "★ true best)", fontsize=9)
    fig.suptitle("The zoo in each method's order (best first)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def render(result: DemoResult, console: Any, *, rows: int = 10) -> None:
    """Print each method's ranking next to the ground truth, the figures and the real-Hub commands."""
    from rich.table import Table
    from rich.text import Text

    true_order = sorted(result.ground_truth, key=lambda r: -result.ground_truth[r])
    for method, selection in result.selections.items():
        table = Table(title=Text(f"{selection.method} on {result.task}: {selection.forward_passes} candidate "
                                 f"forward passes, {selection.seconds:.1f} s"))
        for col in ("rank", "model", "score", "re-rank", "true accuracy", "true rank"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for i, c in enumerate(selection.candidates[:rows]):
            acc = result.ground_truth.get(c.repo_id)
            table.add_row(str(i + 1), c.repo_id.split("/")[-1], f"{c.score:.2f}",
                          "" if c.rerank_score is None else f"{c.rerank_score:.3f}",
                          "" if acc is None else f"{100 * acc:.1f}%",
                          str(true_order.index(c.repo_id) + 1) if c.repo_id in true_order else "")
        console.print(table)
        m = result.metrics[method]
        console.print(f"weighted τ {m['tau_sfda']:.2f}; regret: top-1 {m['regret_top1']:.1f}, top-3 "
                      f"{m['regret_top3']:.1f} accuracy points (true best: {true_order[0]}, "
                      f"{100 * result.ground_truth[true_order[0]]:.1f}%)", highlight=False)
    console.print(f"Wrote {', '.join(str(f) for f in result.files)} in {result.seconds:.0f} s.")
    console.print(
        "\nThe same on huggingface.co (after `hf auth login`):\n"
        "  hf_spider embed your-org/your-model                 # model owners, once\n"
        "  hf_spider select --dataset your/data --rerank 3     # you, for your task\n"
        "  hf_spider chart your-org/model-a your-org/model-b   # spider charts", highlight=False)
