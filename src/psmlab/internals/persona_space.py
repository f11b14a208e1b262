"""Role vectors, the persona space (mean-centred PCA over roles) and the Assistant axis.

Following Lu et al. (2026): a role vector is the mean response activation of answers given in
that role; the persona space is PCA over the *mean-centred* role vectors (raw role vectors are
nearly parallel, cosine ~0.99, so centring is not optional); the Assistant axis is
`mean(default-assistant activations) - mean(role vectors)` and points toward the Assistant.
PC1's sign is chosen to agree with the axis, so "high PC1" means "Assistant-like" everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from psmlab.errors import PsmlabError
from psmlab.internals.directions import (
    AXIS_SIGN,
    DirectionSet,
    Sample,
    read_samples,
    unit_directions,
)


@dataclass
class RoleVectors:
    """Mean response activation per role, stacked per layer in `names` order."""

    names: list[str]
    vectors: dict[int, torch.Tensor]  # layer -> float32 [R, d]
    counts: list[int]  # samples averaged per role (after judging)

    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)


def role_vectors_from_acts(acts: Mapping[str, Mapping[int, torch.Tensor]]) -> RoleVectors:
    """Role vectors from pooled activations {role: {layer: [N, d]}}."""
    if len(acts) < 2:
        raise PsmlabError(
            f"a persona space needs at least 2 roles, got {len(acts)}",
            hint="pass many roles (the reference work uses hundreds)",
        )
    names = list(acts)
    layer_sets = {tuple(sorted(acts[n])) for n in names}
    if len(layer_sets) != 1:
        raise PsmlabError("role activations were read at different layers for different roles")
    layers = list(next(iter(layer_sets)))
    counts = [int(next(iter(acts[n].values())).shape[0]) for n in names]
    if min(counts) == 0:
        empty = [n for n, c in zip(names, counts, strict=True) if c == 0]
        raise PsmlabError(f"roles without samples: {empty}", hint="drop them or sample more")
    vectors = {
        layer: torch.stack([acts[n][layer].double().mean(0) for n in names]).float()
        for layer in layers
    }
    return RoleVectors(names, vectors, counts)


def role_vectors(
    model: torch.nn.Module,
    roles: Mapping[str, Sequence[Sample]],
    layers: Sequence[int],
    *,
    tokenizer: Any = None,
    judge: Callable[[str, Sample], float | bool] | None = None,
    judge_threshold: float = 0.5,
    min_samples: int = 1,
    batch_size: int = 8,
) -> RoleVectors:
    """Read each role's samples (ReadItems or conversations) and average their response tokens.

    With `judge(role, sample)`, only answers rated in role (score >= threshold) are kept; roles
    with fewer than `min_samples` kept answers are dropped (Lu et al. require >= 50).
    """
    acts: dict[str, dict[int, torch.Tensor]] = {}
    for name, samples in roles.items():
        kept = [s for s in samples if judge is None or float(judge(name, s)) >= judge_threshold]
        if len(kept) < max(min_samples, 1):
            continue
        acts[name] = read_samples(model, tokenizer, kept, layers, "response", batch_size)
    return role_vectors_from_acts(acts)


def _default_mean(default: Mapping[int, torch.Tensor], layer: int) -> torch.Tensor:
    if layer not in default:
        raise PsmlabError(f"default-assistant activations are missing layer {layer}")
    acts = default[layer].double()
    return acts.mean(0) if acts.ndim == 2 else acts


def assistant_axis(
    roles: RoleVectors, default: Mapping[int, torch.Tensor], name: str = "assistant_axis"
) -> DirectionSet:
    """`mean(default) - mean(role vectors)` per layer, unit-norm, pointing toward the Assistant.

    `default` maps layer -> default-assistant activations [N, d] (or their mean [d]).
    """
    raw = {
        layer: _default_mean(default, layer) - roles.vectors[layer].double().mean(0)
        for layer in roles.layers
    }
    vectors, norms = unit_directions(raw)
    first = default[roles.layers[0]]
    n_default = int(first.shape[0]) if first.ndim == 2 else 1
    meta = {"method": "assistant_axis", "roles": roles.names, "role_counts": roles.counts}
    return DirectionSet(name, vectors, norms, n_default, len(roles.names), AXIS_SIGN, meta)


@dataclass
class PersonaSpace:
    """Mean-centred PCA of role vectors, per layer, with the Assistant axis alongside."""

    roles: RoleVectors
    mean: dict[int, torch.Tensor]  # [d] mean role vector (the centre)
    components: dict[int, torch.Tensor]  # [k, d] unit rows; PC1 sign agrees with the axis
    explained_variance_ratio: dict[int, torch.Tensor]  # [k]
    coords: dict[int, torch.Tensor]  # [R, k] role coordinates in the space
    axis: DirectionSet
    cos_pc1_axis: dict[int, float]

    @property
    def layers(self) -> list[int]:
        return sorted(self.components)

    def project(self, acts: torch.Tensor, layer: int) -> torch.Tensor:
        """Coordinates [N, k] of activations [N, d] in the persona space at `layer`."""
        return (acts.float() - self.mean[layer]) @ self.components[layer].T

    def pc1(self, name: str = "persona_pc1") -> DirectionSet:
        """PC1 per layer as a DirectionSet (sign: toward the Assistant, like the axis)."""
        vecs = {layer: comps[0].clone() for layer, comps in self.components.items()}
        norms = {layer: float(self.coords[layer][:, 0].std()) for layer in self.layers}
        meta = {"method": "persona_space_pc1", "cos_pc1_axis": self.cos_pc1_axis}
        n = len(self.roles.names)
        return DirectionSet(name, vecs, norms, n, n, AXIS_SIGN, meta)


def persona_space(
    roles: RoleVectors, default: Mapping[int, torch.Tensor], n_components: int | None = None
) -> PersonaSpace:
    """PCA (torch.linalg.svd) over the mean-centred role vectors at every layer, plus the axis."""
    axis = assistant_axis(roles, default)
    n_roles = len(roles.names)
    k = min(n_components or n_roles - 1, n_roles - 1)
    mean, comps, ratio, coords, cos = {}, {}, {}, {}, {}
    for layer in roles.layers:
        x = roles.vectors[layer].double()
        centre = x.mean(0)
        _, s, vh = torch.linalg.svd(x - centre, full_matrices=False)
        vh = vh[:k].clone()
        # Deterministic signs: PC1 toward the Assistant; later PCs by their largest loading.
        if float(vh[0] @ axis.vectors[layer].double()) < 0:
            vh[0] = -vh[0]
        for i in range(1, k):
            if vh[i][vh[i].abs().argmax()] < 0:
                vh[i] = -vh[i]
        var = s.pow(2)
        mean[layer] = centre.float()
        comps[layer] = vh.float()
        ratio[layer] = (var[:k] / var.sum().clamp_min(1e-30)).float()
        coords[layer] = ((x - centre) @ vh.T).float()
        cos[layer] = float(vh[0] @ axis.vectors[layer].double())
    return PersonaSpace(roles, mean, comps, ratio, coords, axis, cos)


def build_persona_space(
    model: torch.nn.Module,
    roles: Mapping[str, Sequence[Sample]],
    default: Sequence[Sample],
    layers: Sequence[int],
    *,
    tokenizer: Any = None,
    judge: Callable[[str, Sample], float | bool] | None = None,
    min_samples: int = 1,
    n_components: int | None = None,
    batch_size: int = 8,
) -> PersonaSpace:
    """Read role and default-assistant samples, then build the persona space and axis."""
    rv = role_vectors(
        model,
        roles,
        layers,
        tokenizer=tokenizer,
        judge=judge,
        min_samples=min_samples,
        batch_size=batch_size,
    )
    default_acts = read_samples(model, tokenizer, default, layers, "response", batch_size)
    return persona_space(rv, default_acts, n_components)
