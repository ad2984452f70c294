"""Embed or verify many repos on a Ray cluster: one task per repo, a journal to resume from, and no repo that can
fail the batch.

``run_bulk("embed", repos, options)`` runs :func:`~hf_spider.embedder.pipeline.embed_repo` (``"verify"``:
:func:`~hf_spider.verify.verify_repo`) for each repo as a Ray task with ``num_cpus`` / ``num_gpus`` of a node, on
the cluster at ``ray_address`` (``"auto"``, ``"ray://host:10001"``) or on a local one started for the run. A task
that raises is run again ``retries`` times, then recorded as failed with its reason. Each outcome is appended
to a JSON-lines journal as it arrives; a rerun skips every repo the journal holds (failed ones too, unless
``retry_failed``), so an interrupted run resumes where it stopped.

Ray and accelerate divide the work: Ray distributes the models, one task per repo, and sets each task's visible
GPU; inside a task the model's forward pass over the reference set runs as on one machine, placed by accelerate
on that device, and the optimisation follows it there. To spread one model over several GPUs, run a single
``hf_spider embed`` under ``accelerate launch`` instead.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .constants import cache_root
from .errors import InvalidInputError
from .hub.client import endpoint

__all__ = ["JOBS", "BulkReport", "default_journal", "read_repo_list", "run_bulk"]

#: What a run does to each repo.
JOBS = ("embed", "verify")
#: Passed to the tasks, so that workers on other machines reach the same Hub, with the same token and caches.
_WORKER_ENV = ("HF_ENDPOINT", "HF_TOKEN", "HF_HOME", "HF_HUB_CACHE", "HF_SPIDER_CACHE", "HF_HUB_DISABLE_PROGRESS_BARS",
               "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT")


@dataclass
class BulkReport:
    """A run's outcome: each repo done in this run (its result) or failed (its reason), the repos the journal
    already held, and the journal."""

    journal: Path
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"journal": str(self.journal), "done": self.done, "failed": self.failed, "skipped": self.skipped,
                "seconds": round(self.seconds, 3)}


def read_repo_list(path: str | os.PathLike[str]) -> list[str]:
    """Repo ids from a file, one per line (blank lines and ``#`` comments skipped, repeats dropped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"cannot read the repo list {path}: {e}") from None
    repos = list(dict.fromkeys(r for r in (line.split("#", 1)[0].strip() for line in lines) if r))
    if not repos:
        raise InvalidInputError(f"the repo list {path} names no repo (one repo id per line)")
    return repos


def default_journal(job: str, options: dict[str, Any]) -> Path:
    """The journal of a run of ``job`` with ``options``: the same job and options resume the same journal."""
    key = json.dumps([job, endpoint(), options], sort_keys=True, default=str)
    return cache_root() / "bulk" / f"{job}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsonl"


def _read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """Each repo's last outcome in the journal; a line cut short by an interruption is ignored."""
    outcomes: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                outcomes[record["repo"]] = record
            except (ValueError, KeyError, TypeError):
                continue
    return outcomes


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def embed_one(repo: str, options: dict[str, Any]) -> dict[str, Any]:
    """(task) Embed and publish one repo; its commit, or that it was up to date."""
    from .embedder.pipeline import embed_repo

    result = embed_repo(repo, progress=False, **options)
    return {"up_to_date": result.up_to_date, "commit_url": result.commit_url, "pr_url": result.pr_url,
            "fidelity_to": result.metadata.get("fidelity_to"), "fidelity_from": result.metadata.get("fidelity_from")}


def verify_one(repo: str, options: dict[str, Any]) -> dict[str, Any]:
    """(task) Verify one repo's published embedding; the report (``passed`` False is a result, not a failure)."""
    from .verify import verify_repo

    return verify_repo(repo, progress=False, **options).to_json()


def run_bulk(
    job: str,
    repos: Sequence[str],
    options: dict[str, Any],
    *,
    journal: str | os.PathLike[str] | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    retries: int = 1,
    retry_failed: bool = False,
    progress: bool = True,
) -> BulkReport:
    """Run ``job`` (one of :data:`JOBS`) on every repo not yet in the journal, one Ray task each.

    Args:
        options: keyword arguments of ``embed_repo`` / ``verify_repo`` (the baseline, the reference...).
        journal: the JSON-lines journal (default :func:`default_journal`).
        ray_address: the cluster to connect to; ``None`` starts a local one with ``workers`` x ``num_cpus`` CPUs
            (``workers`` default: every core) and stops it at the end.
        num_cpus, num_gpus: each task's share of a node.
        retries: how many times a task that raised is run again before the repo is recorded as failed.
        retry_failed: run again the repos the journal records as failed.
    """
    if job not in JOBS:
        raise InvalidInputError(f"unknown job {job!r}; available: {', '.join(JOBS)}")
    path = Path(journal) if journal is not None else default_journal(job, options)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = _read_journal(path)
    report = BulkReport(path)
    todo = []
    for repo in repos:
        if repo in previous and (previous[repo]["status"] == "ok" or not retry_failed):
            report.skipped.append(repo)
        else:
            todo.append(repo)
    if not todo:
        return report
    if ray_address is None:  # a local cluster's workers run this interpreter: Ray's `uv run` packaging is not needed
        os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # read when ray is first imported
    try:
        import ray
    except ImportError:
        raise InvalidInputError("--repos runs on Ray, which is not installed: pip install 'hf_spider[ray]'") from None

    start = time.perf_counter()
    env = {name: os.environ[name] for name in _WORKER_ENV if os.environ.get(name)}
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=ray_address,
                 num_cpus=None if ray_address else math.ceil((workers or os.cpu_count() or 1) * num_cpus),
                 include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                 runtime_env={"env_vars": env})
    try:
        task = ray.remote(embed_one if job == "embed" else verify_one).options(
            num_cpus=num_cpus, num_gpus=num_gpus, max_retries=retries)  # Ray reruns a task whose worker died
        pending = {task.remote(repo, options): (repo, 1) for repo in todo}
        with _Progress(job, len(todo), enabled=progress) as view:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                repo, attempt = pending.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except Exception as e:  # Ray's RayTaskError wraps the task's own exception
                    if attempt <= retries:
                        pending[task.remote(repo, options)] = (repo, attempt + 1)
                        continue
                    report.failed[repo] = _reason(e)
                    record = {"repo": repo, "status": "failed", "reason": report.failed[repo], "attempts": attempt}
                else:
                    report.done[repo] = result
                    record = {"repo": repo, "status": "ok", "result": result, "attempts": attempt}
                _append(path, {**record, "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
                view.update(done=len(report.done), failed=len(report.failed))
    finally:
        if started_here:
            ray.shutdown()
    report.seconds = time.perf_counter() - start
    return report


def _reason(error: Exception) -> str:
    """One line naming what failed in a task: the task's own exception, not Ray's wrapper."""
    cause = getattr(error, "cause", None) or error
    lines = str(cause).strip().splitlines() or [""]
    return f"{type(cause).__name__}: {lines[-1][:300]}"


class _Progress:
    """A rich progress view of a run: done, failed and remaining repos, and repos per minute."""

    def __init__(self, job: str, total: int, *, enabled: bool) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.total, self.start = total, time.perf_counter()
        self.progress = Progress(TextColumn(f"{job}"), BarColumn(), TextColumn("{task.fields[line]}"),
                                 TimeElapsedColumn(), disable=not enabled)
        self.task = self.progress.add_task(job, total=total, line=self._line(0, 0))

    def _line(self, done: int, failed: int) -> str:
        minutes = (time.perf_counter() - self.start) / 60
        rate = (done + failed) / minutes if minutes > 0 else 0.0
        return f"{done} done, {failed} failed, {self.total - done - failed} remaining, {rate:.1f} repos/min"

    def update(self, *, done: int, failed: int) -> None:
        self.progress.update(self.task, completed=done + failed, line=self._line(done, failed))

    def __enter__(self) -> _Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
