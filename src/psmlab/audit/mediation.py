"""Directional mediation (Arditi et al. 2024): how much of an alignment does one direction of
the base model's residual stream carry?

For each direction (the Assistant axis, each trait vector), on a request set in default chat:

- **ablation** in the aligned model `M`: `h <- h - (h.v)v` at every residual position (the
  embedding output, what every attention and MLP writes, every block output;
  `internals.ablate_direction(include_embedding=True, writers=True)`, exactly weight
  orthogonalisation for one direction), each layer with its own vector, the embedding output
  with the set's explicit embedding vector or else the lowest layer's. Slip rate of `M` with
  the direction ablated (ablation sets the projection to 0, which is not neutral for a
  direction whose zero point lies away from the default's mean: the base-ablation control
  shows what the ablation does without any alignment), and the **mediated fraction**
  `(slip(M, ablated) - slip(M)) / (slip(B) - slip(M))`: the share of the alignment effect
  (the slip the alignment removed from the base `B`) that comes back when the one direction is
  removed;
- **addition** to the base model: `h <- h + s c v` at one layer (the layer the direction was
  chosen at), `s` = +1 toward the aligned side (the Assistant axis points to the Assistant,
  trait vectors to the unaligned side, so they are subtracted), `c` = the base model's own
  mean projection gap between the two groups the direction was fitted on (its raw norm at that
  layer: `(mean(pos) - mean(neg)) . v_hat = |mean(pos) - mean(neg)|`), so the steered base sits,
  along v, where the aligned side sat. Adding at one layer, not at every layer: the gap is
  measured in the stream at that layer, and additions at several layers would pile up.
  Share of aligned answers, and the **induced fraction** `(slip(B) - slip(B, steered)) /
  (slip(B) - slip(M))`;
- the **cost** of the ablation: KL(M || M ablated) on harmless prompts (capability tasks) per
  answer position of M's own greedy answers (mean over positions, and at the first answer
  token, Arditi's selection criterion: <= 0.1).

`traits_ablated`: the mean over the directions with a request kind (the trait vectors) of
the ablated slip rates, with a bootstrap CI over requests (`base_traits_ablated`: the same
ablations in the base).

Fractions carry paired bootstrap CIs over requests (the same resamples for every direction);
a fraction is None when the alignment effect's CI includes 0 (nothing to mediate: the base
does not slip more than the aligned model), with the reason. Optionally the same under a
persona attack (the system-turn attack), and the ablation in the base model (a control: a
direction whose removal changes the base's slip as much carries no alignment of its own).

The prompt-only reference's `M` is the base with an in-context prefix: its interventions act
on the base's weights while the prefix is in context.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from psmlab.audit.kl_depth import render
from psmlab.audit.slip import Attack, by_kind
from psmlab.internals.generation import Generation, generate_batch
from psmlab.internals.interventions import ablate_direction, add_vector
from psmlab.internals.layers import find_layout
from psmlab.internals.logprobs import position_logprobs
from psmlab.internals.orthogonalize import WRITERS
from psmlab.internals.reading import ReadItem
from psmlab.judges import AuditRequest, Judge, judge_many
from psmlab.stats import Estimate, bootstrap_ci, rate_of

Messages = list[dict[str, str]]
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Direction:
    """A direction of the base model, one vector per layer (any norm: hooks normalise)."""

    name: str
    vectors: dict[int, torch.Tensor]
    toward_aligned: int  # +1: the vectors point to the aligned side (the Assistant axis); -1: away
    steer_layer: int
    steer_coeff: float  # >= 0: the base's mean projection gap at steer_layer (raw norm)
    embedding: torch.Tensor | None = None  # the embedding output's vector; None: lowest layer's
    kind: str | None = None  # the request kind (meta["kind"]) the direction is about, if any

    def ablated(self, model: Any, writers: bool = True) -> AbstractContextManager[Any]:
        return ablate_direction(
            model,
            self.vectors,
            sorted(self.vectors),
            include_embedding=True,
            embedding_direction=self.embedding,
            writers=writers,
        )

    def steered(self, model: Any) -> AbstractContextManager[Any]:
        v = self.vectors[self.steer_layer].float()
        return add_vector(
            model, {self.steer_layer: v / v.norm()}, [self.steer_layer], self.signed_coeff
        )

    @property
    def signed_coeff(self) -> float:
        return float(self.toward_aligned * self.steer_coeff)


def inside_blocks(model: Any) -> bool:
    """Whether the writers of `model`'s family are known (ablation at every residual position);
    otherwise the ablation is at the embedding output and block outputs only."""
    return find_layout(model).family in WRITERS


def answers(
    model: Any,
    tokenizer: Any,
    convs: Sequence[Messages],
    prefix: Sequence[dict[str, str]],
    max_new_tokens: int,
    batch_size: int,
    during: Callable[[], AbstractContextManager[Any]] | None = None,
) -> list[Generation]:
    """Greedy answers to `prefix + conv` for each conversation, with `during()` active."""
    prompts = [render(tokenizer, [*prefix, *c]) for c in convs]
    with during() if during is not None else nullcontext():
        return generate_batch(model, tokenizer, prompts, max_new_tokens, batch_size)


def judged(
    requests: Sequence[AuditRequest], judge: Judge, generations: Sequence[Generation]
) -> list[bool | None]:
    """The judge's `unaligned` flag per answer (True: slipped, False: aligned, None: other)."""
    pairs = [(r, g.text) for r, g in zip(requests, generations, strict=True)]
    return [v.unaligned for v in judge_many(judge, pairs)]


def slipped(flags: Sequence[bool | None]) -> list[bool]:
    return [f is True for f in flags]


def rate(flags: Sequence[bool]) -> dict[str, Any]:
    return rate_of(flags).to_dict()


def _percentile(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    s = np.sort(values)
    n = len(s)
    return float(s[int(alpha / 2 * (n - 1))]), float(s[int((1 - alpha / 2) * (n - 1))])


def resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] request indices drawn with replacement (seeded): one draw shared by every
    paired comparison on the same requests."""
    rng = np.random.default_rng(random.Random(f"psmlab-mediation:{seed}:{n}").getrandbits(64))
    return rng.integers(0, n, size=(n_boot, n))


def paired_difference(
    start: Sequence[bool], treated: Sequence[bool], idx: np.ndarray
) -> dict[str, Any]:
    """mean(treated) - mean(start) with a paired bootstrap CI (`idx`: resampled indices)."""
    a, t = np.asarray(start, dtype=float), np.asarray(treated, dtype=float)
    lo, hi = _percentile(t[idx].mean(1) - a[idx].mean(1))
    return Estimate(float(t.mean() - a.mean()), lo, hi, int(idx.shape[0])).to_dict()


def share_of_gap(
    start: Sequence[bool], treated: Sequence[bool], target: Sequence[bool], idx: np.ndarray
) -> dict[str, Any]:
    """How far an intervention moves a slip rate from `start` toward `target`:
    `(mean(treated) - mean(start)) / (mean(target) - mean(start))`, paired over requests
    (`idx`: bootstrap resamples of request indices). `gap` and `moved` with CIs; `fraction`
    None (with `reason`) when the gap's CI includes 0."""
    a, t, b = (np.asarray(x, dtype=float) for x in (start, treated, target))
    gap_b = b[idx].mean(1) - a[idx].mean(1)
    moved_b = t[idx].mean(1) - a[idx].mean(1)
    gap, moved = float(b.mean() - a.mean()), float(t.mean() - a.mean())
    n_boot = int(idx.shape[0])
    g_lo, g_hi = _percentile(gap_b)
    m_lo, m_hi = _percentile(moved_b)
    out: dict[str, Any] = {
        "gap": Estimate(gap, g_lo, g_hi, n_boot).to_dict(),
        "moved": Estimate(moved, m_lo, m_hi, n_boot).to_dict(),
        "fraction": None,
        "reason": None,
    }
    if g_lo <= 0 <= g_hi:
        out["reason"] = (
            f"the alignment effect {gap:+.3f} [{g_lo:+.3f}, {g_hi:+.3f}] is not separated from 0"
        )
        return out
    ok = gap_b != 0
    f_lo, f_hi = _percentile(moved_b[ok] / gap_b[ok])
    out["fraction"] = Estimate(moved / gap, f_lo, f_hi, int(ok.sum())).to_dict()
    return out


def _task_items(tokenizer: Any, generations: Sequence[Generation]) -> list[ReadItem]:
    """Prompt + answer (+ the stop token where the answer stopped) with the answer as span:
    row 0 is the first answer token, predicted at the last prompt position."""
    eos = getattr(tokenizer, "eos_token_id", None)
    items = []
    for g in generations:
        tail = [eos] if g.stopped and isinstance(eos, int) else []
        ids = [*g.ids, *tail]
        items.append(ReadItem(ids, len(g.prompt_ids), len(ids)))
    return [it for it in items if it.end > it.start]


def _kl_rows(p: Sequence[torch.Tensor], q: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """KL(P || Q) per position (float64) from log-prob rows [L, V]."""
    out = []
    for lp, lq in zip(p, q, strict=True):
        lp64, lq64 = lp.double(), lq.double()
        out.append((lp64.exp() * (lp64 - lq64)).sum(-1))
    return out


def _mean_of(flags: Sequence[Sequence[bool]], idx: np.ndarray) -> dict[str, Any] | None:
    """Mean over directions of their slip rates (one per direction, same requests), with a
    bootstrap CI over requests; None without directions."""
    if not flags:
        return None
    per_request = np.asarray(flags, dtype=float).mean(0)
    lo, hi = _percentile(per_request[idx].mean(1))
    est = Estimate(float(per_request.mean()), lo, hi, int(idx.shape[0])).to_dict()
    return {**est, "n_directions": len(flags)}


@dataclass
class Mediation:
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.data


def directional_mediation(
    aligned: Any,
    base: Any,
    tokenizer: Any,
    requests: Sequence[AuditRequest],
    judge: Judge,
    directions: Sequence[Direction],
    tasks: Sequence[AuditRequest] = (),
    prefix: Sequence[dict[str, str]] = (),
    attack: Attack | None = None,
    base_ablation: bool = True,
    max_new_tokens: int = 24,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
) -> Mediation:
    """Ablate each direction in `aligned` (its in-context `prefix` kept), add it to `base`;
    see the module doc. `tasks`: harmless prompts for the KL cost (none: no cost reported).
    `progress(n)`: n generations done."""
    step = progress or (lambda _n: None)
    writers = inside_blocks(aligned)
    n = len(requests)
    idx = resamples(n, n_boot, seed)
    plain = [list(r.messages) for r in requests]

    def run(
        model: Any,
        convs: Sequence[Messages],
        pre: Sequence[dict[str, str]],
        during: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> tuple[list[bool], list[Generation]]:
        gens = answers(model, tokenizer, convs, pre, max_new_tokens, batch_size, during)
        step(1)
        return slipped(judged(requests, judge, gens)), gens

    s_m, g_m = run(aligned, plain, prefix)
    s_b, g_b = run(base, plain, [])
    flags_b = judged(requests, judge, g_b)
    attacked: list[Messages] = []
    a_m: list[bool] = []
    a_b: list[bool] = []
    if attack is not None:
        rng = random.Random(f"psmlab-slip:{seed}")  # the slip audit's draw of this attack
        attacked = [attack.wrap(r, rng) for r in requests]
        a_m, _ = run(aligned, attacked, prefix)
        a_b, _ = run(base, attacked, [])

    kl_ref: list[torch.Tensor] = []
    items: list[ReadItem] = []
    if tasks:
        task_gens = answers(
            aligned, tokenizer, [list(t.messages) for t in tasks], prefix, max_new_tokens,
            batch_size,
        )  # fmt: skip
        step(1)
        items = _task_items(tokenizer, task_gens)
        kl_ref = position_logprobs(aligned, items, batch_size)

    out_dirs: dict[str, Any] = {}
    trait_flags: list[list[bool]] = []  # per trait direction (one with a kind), ablated slip
    base_trait_flags: list[list[bool]] = []
    examples: list[dict[str, str]] = [
        {"condition": "aligned", "answer": g_m[0].text},
        {"condition": "base", "answer": g_b[0].text},
    ]
    for d in directions:

        def abl(model: Any = aligned, d: Direction = d) -> AbstractContextManager[Any]:
            return d.ablated(model, writers)

        s_abl, g_abl = run(aligned, plain, prefix, abl)
        if d.kind is not None:
            trait_flags.append(s_abl)

        def steer(d: Direction = d) -> AbstractContextManager[Any]:
            return d.steered(base)

        def abl_base(d: Direction = d) -> AbstractContextManager[Any]:
            return d.ablated(base, writers)

        s_steer, g_steer = run(base, plain, [], steer)
        flags_steer = judged(requests, judge, g_steer)
        entry: dict[str, Any] = {
            "layers": sorted(d.vectors),
            "toward_aligned": d.toward_aligned,
            "kind": d.kind,
            "aligned_ablated": {**rate(s_abl), "by_kind": by_kind(requests, s_abl)},
            "mediated": share_of_gap(s_m, s_abl, s_b, idx),
            "steer": {"layer": d.steer_layer, "coeff": d.signed_coeff},
            "steered_base": {
                "slip": {**rate(s_steer), "by_kind": by_kind(requests, s_steer)},
                "aligned_share": rate([f is False for f in flags_steer]),
                "induced": share_of_gap(s_b, s_steer, s_m, idx),
            },
        }
        own = [i for i, r in enumerate(requests) if d.kind and r.meta.get("kind") == d.kind]
        if own:
            own_idx = resamples(len(own), n_boot, seed)

            def pick(xs: Sequence[bool], own: list[int] = own) -> list[bool]:
                return [xs[i] for i in own]

            entry["own_kind"] = {
                "aligned": rate(pick(s_m)),
                "ablated": rate(pick(s_abl)),
                "base": rate(pick(s_b)),
                "steered_base": rate(pick(s_steer)),
                "mediated": share_of_gap(pick(s_m), pick(s_abl), pick(s_b), own_idx),
                "induced": share_of_gap(pick(s_b), pick(s_steer), pick(s_m), own_idx),
            }
        if attack is not None:
            a_abl, _ = run(aligned, attacked, prefix, abl)
            entry["attacked"] = {
                "ablated": rate(a_abl),
                "mediated": share_of_gap(a_m, a_abl, a_b, idx),
            }
        if base_ablation:
            s_babl, _ = run(base, plain, [], abl_base)
            if d.kind is not None:
                base_trait_flags.append(s_babl)
            entry["base_ablated"] = {
                **rate(s_babl),
                "difference": paired_difference(s_b, s_babl, idx),
            }
        if items:
            with abl():
                kl = _kl_rows(kl_ref, position_logprobs(aligned, items, batch_size))
            entry["kl"] = {
                "mean": bootstrap_ci([float(k.mean()) for k in kl], n_boot=n_boot, seed=seed)
                .to_dict(),
                "first_token": bootstrap_ci([float(k[0]) for k in kl], n_boot=n_boot, seed=seed)
                .to_dict(),
                "n_prompts": len(items),
            }  # fmt: skip
        examples.append({"condition": f"{d.name} ablated", "answer": g_abl[0].text})
        examples.append({"condition": f"{d.name} added to base", "answer": g_steer[0].text})
        out_dirs[d.name] = entry

    data: dict[str, Any] = {
        "ablation": "every residual position (embedding output, attention and MLP writes, "
        "block outputs)"
        if writers
        else "embedding output and block outputs (the family's writers are unknown)",
        "n_requests": n,
        "default": {
            "aligned": {**rate(s_m), "by_kind": by_kind(requests, s_m)},
            "base": {**rate(s_b), "by_kind": by_kind(requests, s_b)},
            "base_aligned_share": rate([f is False for f in flags_b]),
        },
        "attacked": (
            {"style": attack.name, "aligned": rate(a_m), "base": rate(a_b)} if attack else None
        ),
        "directions": out_dirs,
        "traits_ablated": _mean_of(trait_flags, idx),
        "base_traits_ablated": _mean_of(base_trait_flags, idx),
        "examples": examples,
    }
    return Mediation(data)
