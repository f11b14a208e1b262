"""Contrastive persona/trait directions: difference of means over response tokens, per layer.

Convention (DESIGN.md): vectors are unit-norm, the raw norm of `mean(pos) - mean(neg)` is kept
alongside, and a trait vector points *toward* the trait-positive (unaligned) side, so `pos` must be
the trait-positive samples (lying, dangerous, flattering, claims-human). Layer `l` = output of
decoder block `l` = `output_hidden_states[l + 1]`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from psmlab.errors import PsmlabError
from psmlab.internals.reading import (
    Pool,
    Position,
    ReadItem,
    items_from_conversations,
    read_activations,
)

TRAIT_SIGN = "points toward the trait-positive (unaligned) side: vector = mean(pos) - mean(neg)"
AXIS_SIGN = "points toward the default Assistant: vector = mean(default) - mean(roles)"

# A sample is a ReadItem (already tokenised, with its response span) or a conversation that
# `items_from_conversations` can render; the judge sees whatever the caller passed.
Sample = Any
Judge = Callable[[Sample], float | bool]


@dataclass
class DirectionSet:
    """One direction per layer: unit vectors, the raw norm before normalising, and provenance."""

    name: str
    vectors: dict[int, torch.Tensor]  # layer -> float32 [d_model], unit norm
    raw_norms: dict[int, float]
    n_pos: int
    n_neg: int
    sign: str = TRAIT_SIGN
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)

    @property
    def d_model(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])

    def at(self, layer: int) -> torch.Tensor:
        if layer not in self.vectors:
            raise PsmlabError(
                f"direction {self.name!r} has no vector for layer {layer}",
                hint=f"it was computed at layers {self.layers}",
            )
        return self.vectors[layer]

    def project(self, acts: torch.Tensor, layer: int) -> torch.Tensor:
        """Scalar projection `h . v_hat` of activations [N, d] (or [d]) at `layer`."""
        return acts.float() @ self.at(layer).to(acts.device)


def unit_directions(
    raw: Mapping[int, torch.Tensor],
) -> tuple[dict[int, torch.Tensor], dict[int, float]]:
    """Split raw per-layer vectors into unit vectors and norms; a zero vector is an error."""
    vectors: dict[int, torch.Tensor] = {}
    norms: dict[int, float] = {}
    for layer, vec in raw.items():
        vec = vec.detach().float().cpu()
        norm = float(vec.norm())
        if not norm > 0.0 or norm != norm:
            raise PsmlabError(
                f"the direction at layer {layer} has norm {norm}: both sides have the same mean",
                hint="check that the positive and negative samples actually differ",
            )
        vectors[int(layer)] = vec / norm
        norms[int(layer)] = norm
    return vectors, norms


def diff_of_means(
    pos: Mapping[int, torch.Tensor],
    neg: Mapping[int, torch.Tensor],
    name: str = "direction",
    sign: str = TRAIT_SIGN,
    meta: dict[str, Any] | None = None,
) -> DirectionSet:
    """`mean(pos) - mean(neg)` per layer, from pooled activations {layer: [N, d]} of each side."""
    if set(pos) != set(neg):
        raise PsmlabError(
            f"positive and negative activations cover different layers: {sorted(pos)} vs {sorted(neg)}"
        )
    raw: dict[int, torch.Tensor] = {}
    n_pos = n_neg = 0
    for layer in sorted(pos):
        p, n = pos[layer], neg[layer]
        if p.ndim != 2 or n.ndim != 2 or p.shape[0] == 0 or n.shape[0] == 0:
            raise PsmlabError(
                f"layer {layer}: need non-empty [N, d] activations on both sides, "
                f"got {tuple(p.shape)} and {tuple(n.shape)}"
            )
        # float64 means: thousands of samples of large activations lose digits in float32.
        raw[layer] = p.double().mean(0) - n.double().mean(0)
        n_pos, n_neg = int(p.shape[0]), int(n.shape[0])
    vectors, norms = unit_directions(raw)
    return DirectionSet(name, vectors, norms, n_pos, n_neg, sign, dict(meta or {}))


def judge_filter(
    samples: Sequence[Sample], judge: Judge | None, keep_positive: bool, threshold: float = 0.5
) -> list[Sample]:
    """Samples the judge confirms: score >= threshold on the positive side, < threshold on the
    negative side (Chen et al.: trait score >= 50 vs < 50). A bool judge counts as 1/0."""
    if judge is None:
        return list(samples)
    kept = []
    for sample in samples:
        score = float(judge(sample))
        if (score >= threshold) == keep_positive:
            kept.append(sample)
    return kept


def read_samples(
    model: torch.nn.Module,
    tokenizer: Any,
    samples: Sequence[Sample],
    layers: Sequence[int],
    position: Position,
    batch_size: int,
) -> dict[int, torch.Tensor]:
    if all(isinstance(s, ReadItem) for s in samples):
        items = list(samples)
    elif tokenizer is None:
        raise PsmlabError(
            "conversations were given without a tokenizer",
            hint="pass tokenizer=..., or pass ReadItems with their response spans",
        )
    else:
        items = items_from_conversations(tokenizer, list(samples), position=position)
    pool: Pool = "last" if position == "last_prompt" else "mean"
    pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    return read_activations(
        model, items, list(layers), pool=pool, batch_size=batch_size, pad_token_id=pad
    )


def contrastive_direction(
    model: torch.nn.Module,
    pos: Sequence[Sample],
    neg: Sequence[Sample],
    layers: Sequence[int],
    *,
    tokenizer: Any = None,
    name: str = "trait",
    position: Position = "response",
    judge: Judge | None = None,
    judge_threshold: float = 0.5,
    batch_size: int = 8,
    meta: dict[str, Any] | None = None,
) -> DirectionSet:
    """Persona/trait vector per layer: mean response activation of `pos` minus that of `neg`.

    `pos` are trait-positive samples (the vector points toward them). With `judge`, only samples
    it confirms are averaged; kept/total counts land in `meta["judge"]`.
    `position="response"` averages over response tokens (the paper's choice); "last_prompt" reads
    the last prompt token instead.
    """
    kept_pos = judge_filter(pos, judge, True, judge_threshold)
    kept_neg = judge_filter(neg, judge, False, judge_threshold)
    counts = {"pos_total": len(pos), "pos_kept": len(kept_pos)}
    counts |= {"neg_total": len(neg), "neg_kept": len(kept_neg)}
    if not kept_pos or not kept_neg:
        raise PsmlabError(
            f"no samples left on one side after judging ({counts})",
            hint="generate more samples, or loosen the judge threshold",
        )
    pos_acts = read_samples(model, tokenizer, kept_pos, layers, position, batch_size)
    neg_acts = read_samples(model, tokenizer, kept_neg, layers, position, batch_size)
    info = {"method": "diff_of_means", "position": position, **(meta or {})}
    if judge is not None:
        info["judge"] = counts | {"threshold": judge_threshold}
    return diff_of_means(pos_acts, neg_acts, name=name, meta=info)


def auroc(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + 0.5 P(tie), via average ranks."""
    pos_scores, neg_scores = pos_scores.double().flatten(), neg_scores.double().flatten()
    n_pos, n_neg = pos_scores.numel(), neg_scores.numel()
    if n_pos == 0 or n_neg == 0:
        raise PsmlabError("AUROC needs at least one sample on each side")
    scores = torch.cat([pos_scores, neg_scores])
    order = torch.argsort(scores, stable=True)
    sorted_scores = scores[order]
    # Ties share their average rank (Mann-Whitney U with the usual tie correction).
    _, inverse, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    ends = torch.cumsum(counts, 0).double()
    avg = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = avg[inverse]
    u = float(ranks[:n_pos].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def separation(
    directions: DirectionSet,
    pos: Mapping[int, torch.Tensor],
    neg: Mapping[int, torch.Tensor],
) -> dict[int, float]:
    """AUROC per layer of projections of held-out pooled activations (pos should score higher)."""
    return {
        layer: auroc(directions.project(pos[layer], layer), directions.project(neg[layer], layer))
        for layer in directions.layers
        if layer in pos and layer in neg
    }


def evaluate_direction(
    model: torch.nn.Module,
    directions: DirectionSet,
    pos: Sequence[Sample],
    neg: Sequence[Sample],
    *,
    tokenizer: Any = None,
    position: Position = "response",
    batch_size: int = 8,
) -> dict[int, float]:
    """Read held-out samples and return the AUROC of their projections, per layer."""
    pos_acts = read_samples(model, tokenizer, pos, directions.layers, position, batch_size)
    neg_acts = read_samples(model, tokenizer, neg, directions.layers, position, batch_size)
    return separation(directions, pos_acts, neg_acts)
