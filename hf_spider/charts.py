"""Spider charts (Model Spider §5.4): which kinds of task a model is good at, from embeddings alone.

The paper clusters its tasks into groups and draws each model's ability on a group as the mean
similarity between the model and the group's tasks. Here the similarity is the Standardized
Embedder's: tasks are embedded over the baseline (:func:`embed_task_groups`: every given task plus
sub-tasks on random subsets of its classes, clustered into groups by k-means on their embeddings),
and a model's ability on a task is the share of the task's sifted features its model embedding keeps,
``I(u, v) / |u|`` (fuzzy intersection over the task's size). :func:`abilities` averages that over
each group and rescales every axis across the compared models (0 = the weakest model on that group,
1 = the strongest), since the raw shares differ little between models; :func:`spider_chart` draws
them with matplotlib.

    groups = embed_task_groups({"animals": animals, "digits": digits}, "org/baseline")
    table = abilities(groups, {"org/a": v_a, "org/b": v_b, "org/c": v_c})
    spider_chart(table, ["org/a", "org/b"], "spider.png")
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backbones import Backbone
from .errors import InvalidInputError
from .tasks import Task

__all__ = [
    "BUNDLED_TASKS",
    "Abilities",
    "TaskGroups",
    "abilities",
    "bundled_tasks",
    "chart_published",
    "embed_task_groups",
    "spider_chart",
]

DEMO_DATA = Path(__file__).parent / "demo_data"
#: The small, freely licensed tasks shipped in ``hf_spider/demo_data`` whose groups are the default chart axes.
BUNDLED_TASKS = ("clipart-objects", "clipart-symbols", "animals", "digits", "emoji")


@dataclass(frozen=True)
class TaskGroups:
    """Task embeddings [T, N] over one baseline, the group of each task, and the groups' names."""

    task_names: list[str]
    embeddings: np.ndarray
    group_of: np.ndarray  # [T] index into ``names``
    names: list[str]


@dataclass(frozen=True)
class Abilities:
    """Per model and task group: the raw share of the group's task features the model keeps, and the
    same rescaled to [0, 1] across the compared models (what the chart draws)."""

    models: list[str]
    groups: list[str]
    coverage: np.ndarray  # [M, G]
    scaled: np.ndarray  # [M, G]

    def of(self, model: str) -> dict[str, float]:
        """``{group: scaled ability}`` of one model."""
        row = self.scaled[self.models.index(model)]
        return dict(zip(self.groups, row.tolist(), strict=True))


def bundled_tasks() -> dict[str, Task]:
    """The training splits of :data:`BUNDLED_TASKS` (see ``hf_spider/demo_data/README.md``)."""
    from .tasks import load_task

    return {name: load_task(DEMO_DATA / name, split="train") for name in BUNDLED_TASKS}


def embed_task_groups(
    tasks: Mapping[str, Task],
    baseline: Backbone | str,
    *,
    subtasks: int = 6,
    n_groups: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> TaskGroups:
    """Embed ``tasks`` and ``subtasks`` random class subsets of each, then cluster them into groups.

    Each sub-task keeps a random half of its task's classes (at least two), so a group gathers tasks
    of one kind rather than one data set. A task embedding that keeps less than one feature (the γ
    rule sifted everything away, as it may on a few dozen images) says nothing and is left out.
    Clusters are k-means on the L2-normalised embeddings, i.e. on which features a task needs rather
    than how many. ``n_groups`` defaults to the number of tasks; a group is named after the tasks its
    members come from (those contributing at least a third of it).
    """
    from sklearn.cluster import KMeans

    from .backbones import load_backbone
    from .embedder import embed_task
    from .features import extract_features

    if len(tasks) < 2:
        raise InvalidInputError("spider charts need at least two tasks to group")
    n_groups = n_groups or len(tasks)
    base = load_backbone(baseline) if isinstance(baseline, str) else baseline
    rng = np.random.default_rng(seed)
    names, sources, vectors = [], [], []
    for name, task in tasks.items():
        if task.regression:
            raise InvalidInputError(f"task {name!r} is a regression task; spider charts group classification tasks")
        features = extract_features(base, task, progress=progress).features
        classes = np.unique(task.labels)
        for i in range(subtasks + 1):
            keep = classes if i == 0 else np.sort(rng.choice(classes, max(2, len(classes) // 2), replace=False))
            rows = np.flatnonzero(np.isin(task.labels, keep))
            vectors.append(embed_task(features[rows], task.labels[rows], seed=seed, progress=False).vector)
            names.append(name if i == 0 else f"{name}#{i}")
            sources.append(name)
    keep = [i for i, v in enumerate(vectors) if v.sum() >= 1.0]
    if n_groups > len(keep):
        raise InvalidInputError(f"{n_groups} groups asked for {len(keep)} informative task embeddings")
    embeddings = np.stack([vectors[i] for i in keep])
    directions = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = KMeans(n_groups, n_init=10, random_state=seed).fit_predict(directions)
    sources = [sources[i] for i in keep]
    return TaskGroups([names[i] for i in keep], embeddings, labels, _group_names(labels, sources, n_groups))


def _group_names(labels: np.ndarray, sources: Sequence[str], n_groups: int) -> list[str]:
    """Each cluster named by its main source tasks; a name taken twice gets a number."""
    names: list[str] = []
    for g in range(n_groups):
        counts = Counter(s for s, label in zip(sources, labels, strict=True) if label == g)
        total = sum(counts.values())
        name = " + ".join(s for s, c in counts.most_common() if 3 * c >= total)
        names.append(name if name not in names else f"{name} ({names.count(name) + 1})")
    return names


def abilities(groups: TaskGroups, models: Mapping[str, np.ndarray]) -> Abilities:
    """Each model's ability on each task group (see the module docstring), over all ``models``.

    Raises:
        InvalidInputError: fewer than two models (nothing to rescale against), or an embedding whose
            size differs from the tasks'.
    """
    if len(models) < 2:
        raise InvalidInputError("abilities are relative: compare at least two models")
    names = list(models)
    v = np.stack([np.asarray(models[m], dtype=np.float64) for m in names])  # [M, N]
    u = groups.embeddings.astype(np.float64)  # [T, N]
    if v.shape[1] != u.shape[1]:
        raise InvalidInputError(f"model embeddings have {v.shape[1]} values, the task embeddings {u.shape[1]}")
    share = np.minimum(u[None, :, :], v[:, None, :]).sum(-1) / np.maximum(u.sum(-1), 1e-12)  # [M, T]
    coverage = np.stack([share[:, groups.group_of == g].mean(1) for g in range(len(groups.names))], axis=1)
    low, high = coverage.min(0), coverage.max(0)
    scaled = (coverage - low) / np.where(high > low, high - low, 1.0)
    return Abilities(names, list(groups.names), coverage, scaled)


def spider_chart(
    table: Abilities, models: Sequence[str], path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Draw the chosen ``models``' abilities on one radar chart (one polygon each) and save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    missing = [m for m in models if m not in table.models]
    if missing:
        raise InvalidInputError(f"no abilities for {', '.join(missing)}")
    n = len(table.groups)
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    closed = np.append(angles, angles[0])
    fig, ax = plt.subplots(figsize=(6, 6), subplot_kw={"projection": "polar"})
    for model in models:
        values = table.scaled[table.models.index(model)]
        ax.plot(closed, np.append(values, values[0]), linewidth=2, label=model.split("/")[-1])
        ax.fill(closed, np.append(values, values[0]), alpha=0.12)
    ax.set_xticks(angles, [g.replace(" + ", "\n+ ") for g in table.groups])
    ax.tick_params(axis="x", pad=12)
    ax.set_ylim(0, 1.05)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0], ["", "", "", ""])
    ax.set_title(title or f"Ability by task group (relative to {len(table.models)} models)", pad=24)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def chart_published(
    repos: Sequence[str],
    baseline: Backbone | str,
    path: str | os.PathLike[str],
    *,
    tasks: Mapping[str, Task] | None = None,
    n_groups: int | None = None,
    groups: TaskGroups | None = None,
    author: str | None = None,
    search: str | None = None,
    title: str | None = None,
    progress: bool = True,
) -> Abilities:
    """Spider chart of models that published an embedding over ``baseline`` (a Hub model) on the Hub.

    Abilities are relative to every published embedding over the same baseline weights that
    ``scan`` finds (narrowed by ``author`` / ``search``), plus ``repos``. The axes are ``groups`` when
    given (a long-lived app computes them once), else ``n_groups`` groups of ``tasks`` (default:
    :func:`bundled_tasks`), embedded after the repos' embeddings are found. Returns all the abilities.

    Raises:
        InvalidInputError: a repo in ``repos`` has no embedding over these baseline weights.
    """
    from huggingface_hub.errors import EntryNotFoundError

    from .backbones import load_backbone
    from .hub.embeddings import fetch_embedding
    from .hub.scan import scan

    base = load_backbone(baseline) if isinstance(baseline, str) else baseline
    weights = f"sha256:{base.weights_hash()}"
    found = scan(base.model_id, author=author, search=search, progress=progress)
    vectors = {e.repo_id: e.vector for e in found.entries if e.metadata.get("baseline_weights") == weights}
    for repo in repos:
        if repo not in vectors:
            try:
                published = fetch_embedding(repo, base.model_id)
            except EntryNotFoundError:
                raise InvalidInputError(f"{repo} has published no embedding over {base.model_id} "
                                        f"(its owner runs `hf_spider embed {repo} --baseline {base.model_id}`)"
                                        ) from None
            if published.metadata.get("baseline_weights") != weights:
                raise InvalidInputError(f"{repo}'s embedding was computed over other weights of {base.model_id}")
            vectors[repo] = published.vector
    groups = groups or embed_task_groups(tasks or bundled_tasks(), base, n_groups=n_groups, progress=progress)
    table = abilities(groups, vectors)
    spider_chart(table, repos, path, title=title)
    return table
