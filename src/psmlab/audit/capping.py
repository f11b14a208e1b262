"""Capping defence (Lu et al. 2026): keep the residual stream on the Assistant's side of the
Assistant axis while the model answers an attacked prompt, and see what that buys and costs.

Sign convention: the axis `v` points toward the default Assistant (mean(default) - mean(roles)),
so the cap is a **floor**: `h <- h - v_hat * min(h.v_hat - tau_l, 0)` at every position
(`internals.cap_projection(side="floor")`; under generation with a KV cache every new
token is capped as well), on a band of layers, each layer with its own vector and threshold.

- **Threshold** `tau_l` = the `percentile`-th percentile (25: Lu et al.'s Pareto-best) of the
  projections on ordinary traffic: the model's own default conversations (its greedy answers
  included) to calibration requests (the stage uses post-split requests, never the attacked
  eval ones), every token from the first request turn on (an in-context prefix's tokens,
  repeated in every conversation, are not traffic).
- **Band**: layers whose relative depth `(l + 1) / n_layers` lies in `band` (0.7-0.9 by
  default); when none does (a 2-layer model: depths 0.5 and 1.0), the layer nearest the band's
  middle (the last layer of a 2-layer model). `band_layers` gives the mapping; the stage also
  reports capping at every layer.
- **Slip reduction** = slip(attacked) - slip(attacked, capped), paired bootstrap CI over
  requests; **capability cost** = accuracy(capped) - accuracy(uncapped) on capability tasks
  in default chat (answers graded by the judge's label against each task's expected label),
  paired bootstrap CI; and the default slip with the cap on (a cap should not make the default
  Assistant slip).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from psmlab.audit.mediation import (
    Progress,
    answers,
    judged,
    paired_difference,
    rate,
    resamples,
    slipped,
)
from psmlab.audit.slip import Attack
from psmlab.errors import PsmlabError
from psmlab.internals.interventions import cap_projection
from psmlab.internals.layers import find_layout
from psmlab.internals.reading import ReadItem, read_activations
from psmlab.internals.spans import render_with_spans
from psmlab.judges import AuditRequest, Judge, judge_many

Messages = list[dict[str, str]]


def band_layers(n_layers: int, band: tuple[float, float] = (0.7, 0.9)) -> list[int]:
    """Layers l with band[0] <= (l + 1) / n_layers <= band[1]; if none, the one whose depth is
    nearest the band's middle (the deeper on a tie)."""
    lo, hi = band
    if not 0 <= lo <= hi <= 1:
        raise PsmlabError(f"band {band} is not a range of relative depths in [0, 1]")
    depth = [(layer + 1) / n_layers for layer in range(n_layers)]
    inside = [layer for layer, x in enumerate(depth) if lo - 1e-9 <= x <= hi + 1e-9]
    if inside:
        return inside
    mid = (lo + hi) / 2
    return [min(range(n_layers), key=lambda layer: (abs(depth[layer] - mid), -layer))]


def traffic_items(
    tokenizer: Any,
    convs: Sequence[Messages],
    prefix: Sequence[dict[str, str]],
    replies: Sequence[str],
) -> list[ReadItem]:
    """Each calibration conversation with the model's reply, as tokens; span = from the first
    message after the prefix to the end."""
    items = []
    for conv, reply in zip(convs, replies, strict=True):
        msgs = [*prefix, *conv, {"role": "assistant", "content": reply}]
        ids, turns = render_with_spans(tokenizer, msgs)
        start = max(turns[len(prefix)].start, 1)
        if len(ids) > start:
            items.append(ReadItem(ids, start, len(ids)))
    if not items:
        raise PsmlabError("no calibration conversation has a token to read")
    return items


def thresholds(
    model: Any,
    items: Sequence[ReadItem],
    axis: dict[int, torch.Tensor],
    layers: Sequence[int],
    percentile: float = 25.0,
    batch_size: int = 32,
) -> dict[int, float]:
    """Per layer, the `percentile` of h_l . v_hat_l over every position of `items`."""
    acts = read_activations(model, items, list(layers), pool="all", batch_size=batch_size)
    out = {}
    for layer in layers:
        v = axis[layer].float()
        proj = (acts[layer] @ (v / v.norm())).numpy()
        out[layer] = float(np.percentile(proj, percentile))
    return out


@dataclass
class Capping:
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.data


def capping_defence(
    model: Any,
    tokenizer: Any,
    requests: Sequence[AuditRequest],
    attack: Attack,
    judge: Judge,
    axis: dict[int, torch.Tensor],
    calibration: Sequence[Messages],
    tasks: Sequence[AuditRequest],
    prefix: Sequence[dict[str, str]] = (),
    bands: dict[str, list[int]] | None = None,
    percentile: float = 25.0,
    max_new_tokens: int = 24,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
) -> Capping:
    """Cap the projection on the Assistant `axis` (pointing toward the Assistant; {layer:
    vector}) at `percentile` of ordinary traffic (`calibration` conversations answered by the
    model), per band ({name: layers}; default: `band_layers`), while the model answers the
    `attack`ed requests and the capability `tasks` (each task's `expected` = the judge label
    of a correct answer). See the module doc."""
    step = progress or (lambda _n: None)
    layout = find_layout(model)
    if bands is None:
        bands = {"band": band_layers(layout.n_layers)}
    for name, layers in bands.items():
        missing = [layer for layer in layers if layer not in axis]
        if missing or not layers:
            raise PsmlabError(f"band {name!r}: no axis vector for layers {missing or layers}")
    if not requests or not tasks:
        raise PsmlabError("capping needs requests and capability tasks")
    if any(t.expected is None for t in tasks):
        raise PsmlabError("every capability task needs an expected judge label")
    all_layers = sorted({layer for layers in bands.values() for layer in layers})

    cal = answers(model, tokenizer, calibration, prefix, max_new_tokens, batch_size)
    step(1)
    items = traffic_items(tokenizer, calibration, prefix, [g.text for g in cal])
    taus = thresholds(model, items, axis, all_layers, percentile, batch_size)

    rng = random.Random(f"psmlab-slip:{seed}")  # the slip audit's draw of this attack
    attacked = [attack.wrap(r, rng) for r in requests]
    plain = [list(r.messages) for r in requests]
    task_convs = [list(t.messages) for t in tasks]
    idx = resamples(len(requests), n_boot, seed)
    task_idx = resamples(len(tasks), n_boot, seed)

    def slip_of(
        convs: Sequence[Messages], during: Callable[[], AbstractContextManager[Any]] | None
    ) -> tuple[list[bool], str]:
        gens = answers(model, tokenizer, convs, prefix, max_new_tokens, batch_size, during)
        step(1)
        return slipped(judged(requests, judge, gens)), gens[0].text

    def correct_of(during: Callable[[], AbstractContextManager[Any]] | None) -> list[bool]:
        gens = answers(model, tokenizer, task_convs, prefix, max_new_tokens, batch_size, during)
        step(1)
        verdicts = judge_many(judge, [(t, g.text) for t, g in zip(tasks, gens, strict=True)])
        return [v.label == t.expected for v, t in zip(verdicts, tasks, strict=True)]

    att, example = slip_of(attacked, None)
    default, _ = slip_of(plain, None)
    correct = correct_of(None)
    out_bands: dict[str, Any] = {}
    examples = [{"condition": "attacked", "answer": example}]
    for name, layers in bands.items():

        def capped(layers: list[int] = layers) -> AbstractContextManager[Any]:
            return cap_projection(
                model,
                {layer: axis[layer] for layer in layers},
                layers,
                {layer: taus[layer] for layer in layers},
                side="floor",
            )

        att_c, example_c = slip_of(attacked, capped)
        default_c, _ = slip_of(plain, capped)
        correct_c = correct_of(capped)
        reduction = paired_difference(att_c, att, idx)  # slip(attacked) - slip(capped)
        out_bands[name] = {
            "layers": layers,
            "tau": {str(layer): taus[layer] for layer in layers},
            "attacked": rate(att_c),
            "reduction": reduction,
            "relative_reduction": (
                reduction["value"] / (sum(att) / len(att)) if any(att) else None
            ),
            "default": rate(default_c),
            "default_change": paired_difference(default, default_c, idx),
            "capability": rate(correct_c),
            "capability_change": paired_difference(correct, correct_c, task_idx),
        }
        examples.append({"condition": f"attacked, capped ({name})", "answer": example_c})
    data = {
        "attack": attack.name,
        "percentile": percentile,
        "sign": "floor: the axis points toward the Assistant",
        "n_layers": layout.n_layers,
        "n_calibration": len(items),
        "calibration_tokens": sum(it.end - it.start for it in items),
        "attacked": rate(att),
        "default": rate(default),
        "capability": rate(correct),
        "bands": out_bands,
        "examples": examples,
    }
    return Capping(data)
