"""Where a model's files come from: one commit of a Hub repo, or a local folder (:class:`ModelSource`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidArtifactError, ModelLoadError, UnsafeArtifactError
from ..hub.client import download, endpoint, hub_api

__all__ = ["MAX_CONFIG_BYTES", "ModelSource", "check_weight_files", "folder_source", "hub_source"]

SAFE_SUFFIXES = (".safetensors", ".onnx")
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".pth.tar", ".ckpt", ".pkl", ".pickle")
MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few kB; anything near this is not a model config


@dataclass(frozen=True)
class ModelSource:
    """The files of one model: a Hub repo at a resolved commit, or a folder.

    Attributes:
        name: the repo id, or the folder's path.
        revision: the commit sha of a Hub repo; ``None`` for a folder.
        files: every file's path in the repo or folder, with its size in bytes (``None`` when unknown).
    """

    name: str
    revision: str | None
    files: dict[str, int | None]

    @property
    def is_local(self) -> bool:
        return self.revision is None

    @property
    def where(self) -> str:
        """How messages name it: ``org/name@1a2b3c4d`` or the folder."""
        return self.name if self.is_local else f"{self.name}@{self.revision[:8]}"

    @property
    def timm_spec(self) -> str:
        """The name ``timm.create_model`` loads it by: ``hf-hub:org/name@sha`` or ``local-dir:path``."""
        return f"local-dir:{self.name}" if self.is_local else f"hf-hub:{self.name}@{self.revision}"

    def fetch(self, filename: str) -> Path:
        """Local path of ``filename``: the folder's own file, or downloaded from the resolved commit."""
        if self.is_local:
            return Path(self.name) / filename
        return _hub_download(self.name, filename, self.revision)

    def read_config(self) -> dict[str, Any]:
        """``config.json``, refused above :data:`MAX_CONFIG_BYTES` before it is read or downloaded."""
        if "config.json" not in self.files:
            raise ModelLoadError(f"{self.where} has no config.json")
        size = self.files["config.json"]
        if size is not None and size > MAX_CONFIG_BYTES:
            raise InvalidArtifactError(
                f"{self.where}: config.json has {size} bytes, more than the {MAX_CONFIG_BYTES} a config may have")
        path = self.fetch("config.json")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise InvalidArtifactError(f"{self.where}: config.json is larger than {MAX_CONFIG_BYTES} bytes")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{self.where}: config.json is not valid JSON ({exc})") from exc
        if not isinstance(config, dict):
            raise ModelLoadError(f"{self.where}: config.json is not a JSON object")
        return config


def check_weight_files(files: Iterable[str], *, allow_pickle: bool, where: str) -> None:
    """Refuse pickle-only weights unless allowed; raise :class:`ModelLoadError` when there are none.

    Only the top-level files count: the libraries load weights from there, and a file in a folder (an
    ``hf_spider/*.safetensors`` embedding, say) says nothing about the weights that will be loaded.
    """
    names = [f for f in files if "/" not in f]
    safe = [f for f in names if f.endswith(SAFE_SUFFIXES)]
    pickled = [f for f in names if f.endswith(PICKLE_SUFFIXES) and not f.startswith("optimizer")]
    if safe:
        return
    if pickled:
        if allow_pickle:
            return
        raise UnsafeArtifactError(
            f"{where} only has pickle weights ({', '.join(sorted(pickled))}), which can run arbitrary code "
            "when loaded; pass allow_pickle=True if you trust this repo"
        )
    raise ModelLoadError(f"{where} has no weights file (.safetensors, .onnx, .bin, .pth); files: {sorted(names)}")


def folder_source(folder: str | Path) -> ModelSource:
    """A local folder's files, with their sizes."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ModelLoadError(f"{folder} is not a folder")
    return ModelSource(str(root), None, {str(p.relative_to(root)): p.stat().st_size
                                         for p in sorted(root.rglob("*")) if p.is_file()})


def hub_source(repo_id: str, revision: str | None = None) -> ModelSource:
    """The repo at ``revision`` resolved to one commit, with the Hub's file sizes (nothing downloaded)."""
    sha, files = _resolve_model_revision(repo_id, revision)
    return ModelSource(repo_id, sha, files)


def _resolve_model_revision(repo_id: str, revision: str | None) -> tuple[str, dict[str, int | None]]:
    """``(commit sha, {path: size})`` of a Hub model repo at ``revision``."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    from ..hub.retry import with_retries

    api = hub_api()
    try:
        info = with_retries(lambda: api.model_info(repo_id, revision=revision, files_metadata=True),
                            what=f"reading model {repo_id}")
    except RevisionNotFoundError as exc:
        raise ModelLoadError(f"revision {revision!r} not found in model {repo_id!r}") from exc
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(
            f"model {repo_id!r} not found on the Hub at {endpoint()} (or it is gated: `hf auth login`)"
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise ModelLoadError(f"cannot reach the Hub for model {repo_id!r}: {exc}") from exc
    return info.sha, {s.rfilename: s.size for s in info.siblings or []}


def _hub_download(repo_id: str, filename: str, revision: str) -> Path:
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(download(repo_id, filename, revision=revision))
    except EntryNotFoundError as exc:
        raise ModelLoadError(f"{repo_id}@{revision[:8]} has no {filename}") from exc
