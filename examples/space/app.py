"""hf_spider as a Gradio Space: which model on the Hub should I fine-tune for my images?

The visitor names a Hub dataset or uploads a zip of labelled images (one folder per class), picks
the ranking methods and a budget of forward passes for re-ranking, and gets the ranked models, a
spider chart of the top three per method, and what the ranking cost. Everything goes through the
Hub clients, so the app works against whatever Hub ``HF_ENDPOINT`` names:

    HF_ENDPOINT=http://127.0.0.1:8080 uv run python examples/space/app.py

Settings (environment): ``HF_SPIDER_BASELINE`` (the embeddings' baseline, default
``timm/resnet18.a1_in1k``), ``HF_SPIDER_RANKER`` (a Model Spider ranker repo: offers the spider
methods), ``HF_SPIDER_AUTHOR`` (rank only that user's or organisation's models),
``GRADIO_SERVER_PORT`` / ``GRADIO_SERVER_NAME`` (where to serve).
"""

from __future__ import annotations

import functools
import os
import tempfile
import zipfile
from pathlib import Path

import gradio as gr
import pandas as pd

from hf_spider.charts import TaskGroups, bundled_tasks, chart_published, embed_task_groups
from hf_spider.errors import HfSpiderError
from hf_spider.ranking import METHODS, Selection, select_models
from hf_spider.spider.hub import load_ranker
from hf_spider.spider.model import SpiderRanker
from hf_spider.tasks import Task, load_task

BASELINE = os.environ.get("HF_SPIDER_BASELINE", "timm/resnet18.a1_in1k")
AUTHOR = os.environ.get("HF_SPIDER_AUTHOR") or None
RANKER = os.environ.get("HF_SPIDER_RANKER") or None
OFFERED = [m for m in METHODS if m == "embedder" or RANKER]  # the spider methods need a ranker
MAX_UNZIPPED_BYTES = 500 * 2**20
MAX_FILES = 50_000
CHARTED = 3
COLUMNS = ["method", "rank", "model", "score", "re-rank score"]


def task_from_zip(path: str) -> Task:
    """The labelled images of an uploaded zip: one folder per class, possibly inside one top folder.

    Sizes are bounded before anything is extracted; ``zipfile`` drops absolute paths and ``..``.
    """
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > MAX_FILES or sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
            raise gr.Error(f"the zip holds more than {MAX_FILES} files or {MAX_UNZIPPED_BYTES >> 20} MiB")
        root = Path(tempfile.mkdtemp(prefix="hf_spider-upload-"))
        archive.extractall(root)
    entries = [p for p in root.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    while len(entries) == 1 and entries[0].is_dir():  # a zipped folder: descend into it
        root = entries[0]
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    return load_task(root, name=Path(path).stem)


@functools.lru_cache(maxsize=1)
def ranker() -> SpiderRanker | None:
    """The Model Spider ranker, loaded once (None without ``HF_SPIDER_RANKER``)."""
    return load_ranker(RANKER) if RANKER else None


@functools.lru_cache(maxsize=2)
def task_groups(baseline: str) -> TaskGroups:
    """The spider charts' axes: the bundled task groups over the baseline, computed once per baseline."""
    return embed_task_groups(bundled_tasks(), baseline, progress=False)


def _rows(method: str, selection: Selection) -> list[list]:
    return [[method, i + 1, c.repo_id, round(c.score, 3), None if c.rerank_score is None else round(c.rerank_score, 4)]
            for i, c in enumerate(selection.candidates)]


def rank(dataset: str, upload: str | None, split: str, methods: list[str], budget: float):
    """Rank the published models for the task with each method: the table, the costs, one chart per method."""
    if not methods:
        raise gr.Error("Choose at least one method.")
    if not upload and not dataset.strip():
        raise gr.Error("Name a Hub dataset or upload a zip of labelled images.")
    try:
        task = task_from_zip(upload) if upload else load_task(dataset.strip(), split=split.strip() or None)
        rows, charts, costs = [], dict.fromkeys(OFFERED), []
        for method in methods:
            selection = select_models(task, method=method, ranker=ranker(), baseline=BASELINE, rerank=int(budget),
                                      author=AUTHOR, progress=False)
            rows += _rows(method, selection)
            top = [c.repo_id for c in selection.candidates[:CHARTED]]
            chart = Path(tempfile.mkdtemp(prefix="hf_spider-chart-")) / f"spider-{method}.png"
            chart_published(top, BASELINE, chart, groups=task_groups(BASELINE), author=AUTHOR, progress=False,
                            title=f"{method}: top {len(top)} by task group")
            charts[method] = str(chart)
            costs.append(f"**{selection.method}**: {selection.forward_passes} forward passes of candidate models, "
                         f"{selection.seconds:.1f} s, {len(selection.candidates)} models ranked")
    except HfSpiderError as e:
        raise gr.Error(str(e)) from e
    summary = f"{len(task)} images, {task.num_classes} classes ({task.name}).\n\n" + "\n\n".join(costs)
    return pd.DataFrame(rows, columns=COLUMNS), summary, *charts.values()


def build() -> gr.Blocks:
    """The page: task and options on the left, results on the right."""
    with gr.Blocks(title="hf_spider: model selection", analytics_enabled=False) as app:
        gr.Markdown("# Which model should I fine-tune?\nRanks every model that published an hf_spider embedding "
                    f"over `{BASELINE}` for your images, without running them (re-ranking spends a few forward "
                    "passes on the top candidates).")
        with gr.Row():
            with gr.Column(scale=1):
                dataset = gr.Textbox(label="Hub dataset", placeholder="org/name")
                split = gr.Textbox(label="Split", value="train")
                upload = gr.File(label="…or a zip of labelled images (one folder per class)", file_types=[".zip"],
                                 type="filepath", elem_id="upload")
                methods = gr.CheckboxGroup(OFFERED, value=OFFERED, label="Methods")
                budget = gr.Slider(0, 10, value=3, step=1, label="Re-ranking budget (forward passes)")
                run = gr.Button("Rank models", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                summary = gr.Markdown(elem_id="summary")
                table = gr.Dataframe(headers=COLUMNS, label="Ranking (best first)", elem_id="ranking")
                charts = [gr.Image(label=f"Spider chart, {m}: ability by task group", type="filepath",
                                   elem_id=f"chart-{m.replace('+', '-')}") for m in OFFERED]
        run.click(rank, [dataset, upload, split, methods, budget], [table, summary, *charts])
    return app


if __name__ == "__main__":
    build().launch()
