"""Option types shared by the commands, declared once (as huggingface_hub's ``cli/_cli_utils.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..constants import DEFAULT_BASELINE

# option types shared by the commands that read a dataset
ImageColumn = Annotated[str | None, typer.Option(help="Image column of the dataset (default: detected).")]
LabelColumn = Annotated[str | None, typer.Option(help="Label column of the dataset (default: detected).")]
DatasetConfig = Annotated[str | None, typer.Option("--config", help="Dataset configuration (subset) name.")]
DataRoot = Annotated[Path | None, typer.Option(
    envvar="HF_SPIDER_OFFLINE_DATA", help="Folder of offline datasets (tgt-*, reg-*, src-*, aux-*, reference-mix).")]
# and by the commands that talk to the Hub
Token = Annotated[str | None, typer.Option(
    help="Hub token for private and gated repos (default: HF_TOKEN or `hf auth login`).", show_default=False)]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Baseline = Annotated[str, typer.Option(help="Baseline the embeddings are over.")]  # default: DEFAULT_BASELINE
IndexRepo = Annotated[str | None, typer.Option(
    "--index", help="Read the embeddings from this index dataset (`hf_spider index build`) in one download.")]
# and by the commands that run over a list of repos on Ray (embed, verify)
ReposFile = Annotated[Path | None, typer.Option(
    "--repos", help="File of repo ids, one per line: run each as a Ray task (resumes from its journal).")]
RayAddress = Annotated[str | None, typer.Option(
    help="With --repos: the Ray cluster (`auto`, `ray://HOST:10001`; default: a local one for this run).")]
Workers = Annotated[int | None, typer.Option(
    help="With --repos and no --ray-address: tasks at once on the local cluster (default: one per core).")]
CpusPerTask = Annotated[float, typer.Option(help="With --repos: CPUs each task reserves.")]
GpusPerTask = Annotated[float, typer.Option(help="With --repos: GPUs (or a fraction) each task reserves.")]
RetryFailed = Annotated[bool, typer.Option(help="With --repos: run again the repos the journal records as failed.")]

__all__ = [
    "DEFAULT_BASELINE",
    "Baseline",
    "CpusPerTask",
    "DataRoot",
    "DatasetConfig",
    "GpusPerTask",
    "ImageColumn",
    "IndexRepo",
    "JsonOutput",
    "LabelColumn",
    "RayAddress",
    "ReposFile",
    "RetryFailed",
    "Token",
    "Workers",
]
