"""The Model Spider ranker (SPEC §4.2–4.3): model token + task tokens -> one transformer layer -> score.

For one task, every candidate model m is scored from the sequence ``[θ_m, μ_1 … μ_C]``: θ_m is the
model token, μ_c the task's class prototypes, projected to the ranker's width and marked general or
specific by a learned type embedding. Only θ_m's output is read, so the layer runs with θ_m as the
single query over ``[θ_m, μ…]`` — the same result as the full layer at that position, for all M
models in one batched call.

Model tokens come from one of two sources (``token_source``):

- ``"table"`` — a free learned vector per training-zoo model (the paper): a model outside the
  training zoo cannot be ranked without retraining;
- ``"embedding"`` — a learned MLP of the model's Standardized Embedder vector (this project's
  extension): any model that published an embedding over the ranker's baseline gets a token, so a
  model published after training is ranked with no retraining.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from ..errors import InvalidInputError
from ..hub.cards import card_template

__all__ = ["SpiderRanker", "listmle_loss"]

TOKEN_SOURCES = ("table", "embedding")


def listmle_loss(scores: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """ListMLE / Plackett–Luce loss of SPEC §4.3 for one task.

    ℓ = Σ_m −log( exp(t̂_{↓t(m)}) / Σ_{l≥m} exp(t̂_{↓t(l)}) ), where ``order`` lists model indices
    best first by the (aggregated) ground truth and ``scores`` are the predicted t̂.
    """
    s = scores[order]
    tail_lse = torch.logcumsumexp(s.flip(0), dim=0).flip(0)  # log Σ_{l≥m} exp(s_l)
    return (tail_lse - s).sum()


class SpiderRanker(nn.Module, PyTorchModelHubMixin, library_name="hf_spider",
                   tags=["model-selection", "hf-spider-ranker"], repo_url="https://github.com/hf-spider/hf_spider",
                   model_card_template=card_template("spider_ranker.md")):
    """Scores candidate models for a task; higher is better. Weights and config live on the Hub.

    Args:
        encoder: id of the frozen general encoder whose class means are the general task tokens.
        encoder_dim: its feature width.
        dim: the ranker's token width d.
        token_source: ``"table"`` or ``"embedding"`` (see the module docstring).
        models: the training zoo, in table order (table tokens belong to these ids).
        baseline: the Standardized Embedder baseline the embedding tokens are computed over.
        embedding_dim: N, the width of those embeddings.
        specific_widths: feature widths that have a PTM-specific projection (one per width).
        dropout: attention dropout.
        default_rerank: the re-ranking budget k chosen on validation tasks.
        label_scores: the forward-based scores whose Copeland aggregate supervised training.
    """

    def __init__(
        self,
        *,
        encoder: str,
        encoder_dim: int,
        dim: int = 128,
        token_source: str = "embedding",
        models: Sequence[str] = (),
        baseline: str | None = None,
        embedding_dim: int | None = None,
        specific_widths: Sequence[int] = (),
        dropout: float = 0.1,
        default_rerank: int = 0,
        label_scores: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if token_source not in TOKEN_SOURCES:
            raise InvalidInputError(f"token_source must be one of {TOKEN_SOURCES}, got {token_source!r}")
        if token_source == "embedding" and not embedding_dim:
            raise InvalidInputError("embedding model tokens need embedding_dim (the baseline's width N)")
        if token_source == "table" and not models:
            raise InvalidInputError("table model tokens need the list of training-zoo models")
        self.encoder, self.baseline, self.token_source = encoder, baseline, token_source
        self.training_report: dict | None = None  # rendered into the model card when pushed
        self.models = list(models)
        self.default_rerank, self.label_scores = default_rerank, list(label_scores)
        self.task_proj = nn.Linear(encoder_dim, dim)
        self.specific_proj = nn.ModuleDict({str(w): nn.Linear(w, dim) for w in specific_widths})
        self.type_embedding = nn.Parameter(torch.zeros(2, dim))  # 0: general, 1: PTM-specific
        self.regression_embedding = nn.Parameter(torch.zeros(dim))  # marks every token of a regression task
        if token_source == "table":
            self.table = nn.Embedding(len(self.models), dim)
        else:
            self.embedding_mlp = nn.Sequential(nn.Linear(embedding_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.attention = nn.MultiheadAttention(dim, num_heads=1, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, revision: str | None = None,
                        **kwargs: Any) -> SpiderRanker:
        """Load a ranker as untrusted input, from a Hub repo id or a folder: :meth:`_from_pretrained`. Unlike the
        mixin's own ``from_pretrained``, nothing is read before it: the mixin would download and parse
        ``config.json`` whatever its size."""
        if kwargs:
            raise InvalidInputError(f"SpiderRanker.from_pretrained takes a repo id or folder and revision, not "
                                    f"{sorted(kwargs)}: token and cache come from huggingface_hub's settings")
        return cls._from_pretrained(model_id=str(pretrained_model_name_or_path), revision=revision)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None = None, **ignored: Any) -> SpiderRanker:
        """The mixin's loading hook, and the only one: safetensors only, the config bounded and validated, the
        model sized before it is built (:func:`hf_spider.spider.hub.load_ranker`). The mixin's default would
        build the model from any config and fall back to a pickled ``pytorch_model.bin``; the settings it
        passes (``config`` values, cache and download options) are not used."""
        from .hub import load_ranker

        return load_ranker(model_id, revision=revision)

    def generate_model_card(self, *args, **kwargs):
        """The card of the card template ``spider_ranker.md``, with the training report when there is one."""
        return super().generate_model_card(*args, encoder=self.encoder, baseline=self.baseline,
                                           token_source=self.token_source, default_rerank=self.default_rerank,
                                           report=self.training_report, **kwargs)

    @property
    def config(self) -> dict[str, Any]:
        """The ``__init__`` arguments that rebuild this ranker, from its current settings (``default_rerank`` is set
        after training, by validation)."""
        return {"encoder": self.encoder, "encoder_dim": self.task_proj.in_features, "dim": self.task_proj.out_features,
                "token_source": self.token_source, "models": self.models, "baseline": self.baseline,
                "embedding_dim": self.embedding_mlp[0].in_features if self.token_source == "embedding" else None,
                "specific_widths": self.specific_widths, "dropout": self.attention.dropout,
                "default_rerank": self.default_rerank, "label_scores": self.label_scores}

    def _save_pretrained(self, save_directory: Path) -> None:
        """The mixin's safetensors weights, and ``config.json`` from :attr:`config`."""
        super()._save_pretrained(save_directory)
        (Path(save_directory) / "config.json").write_text(json.dumps(self.config, sort_keys=True, indent=2))

    @property
    def specific_widths(self) -> list[int]:
        return sorted(int(w) for w in self.specific_proj)

    def model_tokens(self, *, models: Sequence[str] | None = None,
                     embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """θ for each candidate ``[M, d]``: table rows of ``models``, or the MLP of their ``embeddings``."""
        if self.token_source == "table":
            if models is None:
                raise InvalidInputError("this ranker has table model tokens: pass the model ids")
            unknown = [m for m in models if m not in self.models]
            if unknown:
                raise InvalidInputError(f"no model token for {unknown[:3]}: this ranker's table covers "
                                        f"{len(self.models)} training-zoo models (use an embedding-token ranker)")
            return self.table(torch.tensor([self.models.index(m) for m in models], device=self.head[1].weight.device))
        if embeddings is None:
            raise InvalidInputError("this ranker has embedding model tokens: pass each model's embedding vector")
        width = self.embedding_mlp[0].in_features
        if embeddings.ndim != 2 or embeddings.shape[1] != width:
            raise InvalidInputError(f"this ranker's model tokens need embeddings over {self.baseline} of width "
                                    f"{width}, got {embeddings.shape[-1]}")
        return self.embedding_mlp(embeddings.to(self.head[1].weight))

    def forward(self, task_tokens: torch.Tensor, model_tokens: torch.Tensor,
                specific: Mapping[int, torch.Tensor] | None = None, *, regression: bool = False) -> torch.Tensor:
        """Scores ``[M]`` for M candidates on one task.

        Args:
            task_tokens: general class prototypes ``[C, encoder_dim]``.
            model_tokens: ``[M, d]`` from :meth:`model_tokens`.
            specific: candidate index -> its own class prototypes ``[C, d_m]`` (same class order),
                used instead of the general tokens for that candidate.
            regression: the task has real targets (its prototypes are quantile-bin means): a learned
                embedding marks every token, since bins of a data set look like its classes.
        """
        kind = self.regression_embedding if regression else torch.zeros_like(self.regression_embedding)
        model_tokens = model_tokens + kind
        general = self.task_proj(task_tokens.to(model_tokens)) + self.type_embedding[0] + kind
        tokens = general.unsqueeze(0).repeat(len(model_tokens), 1, 1)  # [M, C, d]
        for m, prototypes in (specific or {}).items():
            width = str(prototypes.shape[-1])
            if width not in self.specific_proj:
                raise InvalidInputError(f"no PTM-specific projection for feature width {width} "
                                        f"(trained widths: {self.specific_widths})")
            if len(prototypes) != len(general):
                raise InvalidInputError(f"specific tokens have {len(prototypes)} classes, the task {len(general)}")
            tokens[m] = self.specific_proj[width](prototypes.to(model_tokens)) + self.type_embedding[1] + kind
        query = model_tokens.unsqueeze(1)  # [M, 1, d]
        sequence = torch.cat([query, tokens], dim=1)  # [θ_m, μ_1 … μ_C]
        attended, _ = self.attention(query, sequence, sequence, need_weights=False)
        return self.head(self.norm(query + attended)).reshape(-1)
