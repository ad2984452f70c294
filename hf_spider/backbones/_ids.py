"""Model ids, parsed in one place: ``hf-hub:org/name[@rev]``, ``local-dir:PATH``, a folder, a timm name.

Nothing here loads a model or imports torch: selections that only need names and commits stay cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ._source import hub_source

__all__ = ["expand_model_folders", "model_key", "parse_model_id", "resolve_revision"]


def resolve_revision(model_id: str) -> str | None:
    """The commit sha a Hub model id (``@revision`` included) resolves to now; ``None`` for a folder or a timm
    name. One Hub call, nothing downloaded."""
    kind, name, revision = parse_model_id(model_id)
    return hub_source(name, revision).revision if kind == "hub" else None


def model_key(model_id: str) -> str:
    """The zoo-wide name of a model: a Hub id's or folder's last component (revision dropped)."""
    return Path(model_id.removeprefix("hf-hub:").split("@", 1)[0].rstrip("/")).name


def expand_model_folders(entries: Sequence[str]) -> list[str]:
    """Model ids, where a folder of model folders (each with a ``config.json``) stands for all of them."""
    out: list[str] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir() and not (path / "config.json").exists():
            out += sorted(str(p.parent) for p in path.glob("*/config.json"))
        else:
            out.append(entry)
    return out


def parse_model_id(model_id: str) -> tuple[Literal["hub", "local", "builtin"], str, str | None]:
    """``(source, name, revision)`` of a model id; the one place ids with prefixes and ``@rev`` are parsed."""
    text = str(model_id).strip()
    if text.startswith("local-dir:"):
        return "local", text[len("local-dir:"):], None
    if text.startswith(("hf-hub:", "hf_hub:")):
        name, _, revision = text.split(":", 1)[1].partition("@")
        return "hub", name, revision or None
    if text.startswith("timm:"):
        return "builtin", text[len("timm:"):], None
    if os.path.isdir(os.path.expanduser(text)):
        return "local", text, None
    if "/" not in text:
        return "builtin", text, None
    name, _, revision = text.partition("@")
    return "hub", name, revision or None
