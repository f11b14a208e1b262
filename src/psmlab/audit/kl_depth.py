"""How deep does post-training reach into an answer? (Qi et al. 2024; Lin et al. 2023, URIAL)

On the aligned model's own greedy answers `y` to a request set, one batched teacher-forced pass
per model (`internals.compare_positions`) gives, at every answer position `k` (0 = the first
answer token):

- the **KL depth profile** `KL_k = mean over answers of KL(aligned(.|x, y_<k) || base(.|x,
  y_<k))`, full vocabulary, float64; **front-loading** `F_m = sum_{k<m} KL_k / sum_{k<K} KL_k`
  (the share of the KL mass in the first m tokens) and **depth** `d50 = min{m : F_m >= 0.5}`;
  a shallow alignment (a mask) puts most of its mass in the first few tokens;
- the **token-shift ratios**: the rank of the aligned model's token under the base model,
  unshifted (rank 0: the base model would have said it too), marginal (1-2), shifted (>= 3).

Only positions that enough answers reach (`min_count`) enter the profile, so the tail is not a
handful of long answers. CIs: percentile bootstrap over answers (tokens of one answer are not
independent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from psmlab.internals.generation import generate_batch
from psmlab.internals.logprobs import PositionComparison, compare_positions
from psmlab.internals.reading import ReadItem
from psmlab.internals.spans import render_chat
from psmlab.stats import Estimate, bootstrap_ci

SHIFT_BANDS = (("unshifted", 0, 0), ("marginal", 1, 2), ("shifted", 3, None))


@dataclass
class KLDepth:
    profile: list[float]  # KL_k, k = 0 .. K-1
    counts: list[int]  # answers reaching position k
    front_loading: list[float]  # F_m, m = 1 .. K
    d50: Estimate  # tokens
    front_3: Estimate  # F_3: the share of the KL mass in the first 3 answer tokens
    total_kl: Estimate  # mean over answers of the summed KL over the profile's positions
    token_shift: dict[str, Estimate]  # share of answer tokens per band
    shifted_by_position: list[float]
    n_answers: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "counts": self.counts,
            "front_loading": self.front_loading,
            "d50": self.d50.to_dict(),
            "front_3": self.front_3.to_dict(),
            "total_kl": self.total_kl.to_dict(),
            "token_shift": {k: v.to_dict() for k, v in self.token_shift.items()},
            "shifted_by_position": self.shifted_by_position,
            "n_answers": self.n_answers,
        }


def _profile(comps: Sequence[PositionComparison], idx: Sequence[int], K: int) -> list[float]:
    sums, counts = [0.0] * K, [0] * K
    for i in idx:
        kl = comps[i].kl[:K].tolist()
        for k, v in enumerate(kl):
            sums[k] += v
            counts[k] += 1
    return [s / c if c else 0.0 for s, c in zip(sums, counts, strict=True)]


def front_loading(profile: Sequence[float]) -> list[float]:
    total = sum(profile)
    if total <= 0:
        return [float("nan")] * len(profile)
    out, run = [], 0.0
    for v in profile:
        run += v
        out.append(run / total)
    return out


def d50(profile: Sequence[float]) -> float:
    """The fewest answer tokens that hold half of the KL mass (NaN without any mass)."""
    f = front_loading(profile)
    return float(next((m for m, x in enumerate(f, start=1) if x >= 0.5), float("nan")))


def _band_share(
    comps: Sequence[PositionComparison], idx: Sequence[int], lo: int, hi: int | None
) -> float:
    """The share of answer tokens whose rank under the base model lies in [lo, hi]."""
    hit = total = 0
    for i in idx:
        ranks = comps[i].rank_under_q
        inside = (ranks >= lo) if hi is None else (ranks >= lo) & (ranks <= hi)
        hit += int(inside.sum())
        total += len(ranks)
    return hit / total if total else float("nan")


def summarise(
    comps: Sequence[PositionComparison], min_count: int = 8, n_boot: int = 1000, seed: int = 0
) -> KLDepth:
    """The profile and its statistics from per-answer comparisons (aligned = P, base = Q)."""
    comps = [c for c in comps if len(c.kl)]
    longest = max((len(c.kl) for c in comps), default=0)
    counts_all = [sum(len(c.kl) > k for c in comps) for k in range(longest)]
    K = sum(n >= min(min_count, len(comps)) for n in counts_all) if comps else 0
    every = list(range(len(comps)))
    profile = _profile(comps, every, K)

    def boot(stat: Callable[[Sequence[int]], float]) -> Estimate:
        return bootstrap_ci(every, lambda idx: stat([int(i) for i in idx]), n_boot, seed)

    def f3(idx: Sequence[int]) -> float:
        f = front_loading(_profile(comps, idx, K))
        return f[min(3, K) - 1] if K else float("nan")

    def band(lo: int, hi: int | None) -> Callable[[Sequence[int]], float]:
        return lambda idx: _band_share(comps, idx, lo, hi)

    shift = {name: boot(band(lo, hi)) for name, lo, hi in SHIFT_BANDS}
    shifted_by_position = []
    for k in range(K):
        ranks = [int(c.rank_under_q[k]) for c in comps if len(c.kl) > k]
        shifted_by_position.append(sum(r >= 3 for r in ranks) / len(ranks))
    return KLDepth(
        profile=profile,
        counts=counts_all[:K],
        front_loading=front_loading(profile),
        d50=boot(lambda idx: d50(_profile(comps, idx, K))),
        front_3=boot(f3),
        total_kl=boot(lambda idx: sum(float(comps[i].kl[:K].sum()) for i in idx) / len(idx)),
        token_shift=shift,
        shifted_by_position=shifted_by_position,
        n_answers=len(comps),
    )


def render(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """A conversation ending with a user turn, as the model's chat template renders it (bos
    included), ready for the assistant's answer."""
    return render_chat(tokenizer, list(messages), add_generation_prompt=True)


def kl_depth(
    base: Any,
    aligned: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[dict[str, str]]],
    aligned_prefix: Sequence[dict[str, str]] = (),
    max_new_tokens: int = 32,
    batch_size: int = 32,
    min_count: int = 8,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[KLDepth, list[str]]:
    """The aligned model answers every conversation greedily (after `aligned_prefix`, the
    in-context prefix of a prompt-only "aligned" model); both models then read those answers
    teacher-forced, each in its own context. Returns the statistics and the answers."""
    convs = [list(c) for c in conversations]
    mine = [render(tokenizer, [*aligned_prefix, *c]) for c in convs]
    gens = generate_batch(aligned, tokenizer, mine, max_new_tokens, batch_size)
    kept = [(g, c) for g, c in zip(gens, convs, strict=True) if g.new_ids]
    items = [g.read_item() for g, _ in kept]
    items_q = None
    if aligned_prefix:
        items_q = []
        for g, c in kept:
            ids = list(tokenizer(render(tokenizer, c), add_special_tokens=False)["input_ids"])
            items_q.append(ReadItem(ids + g.new_ids, len(ids), len(ids) + len(g.new_ids)))
    comps = compare_positions(aligned, base, items, batch_size, progress=progress, items_q=items_q)
    return summarise(comps, min_count, seed=seed), [g.text for g in gens]
