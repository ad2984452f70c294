"""Model-card templates shipped with hf_spider (``card_templates/`` beside this module)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["card_template"]

_TEMPLATES = Path(__file__).resolve().parent / "card_templates"


def card_template(name: str) -> str:
    """The text of template ``name`` (e.g. ``"spider_ranker.md"``)."""
    if not (_TEMPLATES / name).is_file():
        raise FileNotFoundError(f"the card template {name} is missing from this installation")
    return (_TEMPLATES / name).read_text()
