"""Model-card templates shipped with hf_spider (``hub_cards/`` in a checkout, ``_hub_cards`` in the wheel)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["card_template"]

_TEMPLATE_DIRS = (Path(__file__).resolve().parents[2] / "hub_cards", Path(__file__).resolve().parents[1] / "_hub_cards")


def card_template(name: str) -> str:
    """The text of template ``name`` (e.g. ``"spider_ranker.md"``)."""
    for folder in _TEMPLATE_DIRS:
        if (folder / name).exists():
            return (folder / name).read_text()
    raise FileNotFoundError(f"hub_cards/{name} is missing from this installation")
