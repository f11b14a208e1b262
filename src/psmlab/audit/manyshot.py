"""Many-shot jailbreaking (Anil et al. 2024): n faux exchanges in which the assistant answers as
an unaligned character, then the target request. Two curves against n:

- slip rate: the judge's share of unaligned greedy answers to the target;
- target NLL: mean per-token negative log-likelihood of the unaligned answer to the target,
  teacher-forced (lower = the model is readier to give it),

and the power law NLL(n) = C * n^(-alpha) + K fitted on n >= 1 (alpha on a grid, C and K by
least squares for each alpha), with percentile bootstrap CIs over requests. Shot counts whose
prompts do not fit the model's context (with room for the answer) are left out and reported.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from psmlab.audit.kl_depth import render
from psmlab.internals.generation import generate_batch
from psmlab.internals.logprobs import position_logprobs
from psmlab.internals.reading import ReadItem
from psmlab.judges import AuditRequest, Judge, judge_many
from psmlab.stats import rate_of

SHOTS = (0, 1, 2, 4, 8, 16)
ALPHAS = tuple(a / 100 for a in range(1, 301))


def fit_power_law(ns: Sequence[float], nll: Sequence[float]) -> tuple[float, float, float]:
    """(C, alpha, K) minimising the squared error of C * n^-alpha + K (n >= 1)."""
    best: tuple[float, float, float, float] | None = None
    for alpha in ALPHAS:
        x = [n**-alpha for n in ns]
        mx, my = sum(x) / len(x), sum(nll) / len(nll)
        sxx = sum((a - mx) ** 2 for a in x)
        c = sum((a - mx) * (b - my) for a, b in zip(x, nll, strict=True)) / sxx if sxx else 0.0
        k = my - c * mx
        sse = sum((c * a + k - b) ** 2 for a, b in zip(x, nll, strict=True))
        if best is None or sse < best[0]:
            best = (sse, c, alpha, k)
    assert best is not None
    return best[1], best[2], best[3]


@dataclass
class ManyShot:
    shots: list[int]  # the shot counts that fit the context
    slip: list[dict[str, Any]]  # Wilson rate per shot count
    nll: list[float]  # mean target NLL per shot count
    fit: dict[str, dict[str, float]]  # C, alpha, K: value, low, high
    dropped: list[int]  # shot counts left out (context too short)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shots": self.shots,
            "slip": self.slip,
            "nll": self.nll,
            "fit": self.fit,
            "dropped": self.dropped,
        }


def many_shot(
    model: Any,
    tokenizer: Any,
    requests: Sequence[AuditRequest],
    targets: Sequence[str],
    shots: Sequence[tuple[str, str]],
    judge: Judge,
    counts: Sequence[int] = SHOTS,
    prefix: Sequence[dict[str, str]] = (),
    max_new_tokens: int = 24,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
) -> ManyShot:
    """`targets[i]`: the unaligned answer to `requests[i]` whose NLL is measured; `shots`: a
    pool of (request, unaligned answer) exchanges, drawn per request without replacement and
    never the target request's own exchange (a user's request file is its own shot pool)."""
    rng = random.Random(f"psmlab-manyshot:{seed}")
    context = int(getattr(model.config, "max_position_embeddings", 1 << 30))
    pools = []
    for r in requests:
        others = [s for s in shots if s[0] != r.user_text]
        pools.append(rng.sample(others, min(max(counts), len(others))))
    answers = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in targets]
    kept, dropped = [], []
    per_count_nll: list[list[float]] = []
    slip: list[dict[str, Any]] = []
    for n in counts:
        convs = [
            [
                *prefix,
                *(
                    m
                    for u, a in pool[:n]
                    for m in ({"role": "user", "content": u}, {"role": "assistant", "content": a})
                ),
                *r.messages,
            ]
            for r, pool in zip(requests, pools, strict=True)
        ]
        prompts = [render(tokenizer, c) for c in convs]
        ids = [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        # room after the prompt for the generated answer and for the teacher-forced target
        if any(
            len(i) + max(max_new_tokens, len(a)) > context
            for i, a in zip(ids, answers, strict=True)
        ):
            dropped.append(n)
            continue
        gens = generate_batch(model, tokenizer, ids, max_new_tokens, batch_size)
        verdicts = judge_many(judge, [(r, g.text) for r, g in zip(requests, gens, strict=True)])
        slip.append(rate_of([bool(v.unaligned) for v in verdicts]).to_dict())
        items = [
            ReadItem(p + a, len(p), len(p) + len(a)) for p, a in zip(ids, answers, strict=True)
        ]
        lps = position_logprobs(model, items, batch_size)
        per_count_nll.append(
            [
                float(-lp.gather(-1, torch.tensor(a)[:, None]).mean())
                for lp, a in zip(lps, answers, strict=True)
            ]
        )
        kept.append(n)
    nll = [sum(v) / len(v) for v in per_count_nll]
    return ManyShot(kept, slip, nll, _fit_with_ci(kept, per_count_nll, n_boot, seed), dropped)


def _fit_with_ci(
    counts: Sequence[int], per_count: Sequence[Sequence[float]], n_boot: int, seed: int
) -> dict[str, dict[str, float]]:
    """The power-law fit on the shot counts >= 1 and a bootstrap over requests."""
    usable = [(n, v) for n, v in zip(counts, per_count, strict=True) if n >= 1]
    if len(usable) < 3:  # three parameters need at least three points
        return {}
    ns = [float(n) for n, _ in usable]
    m = len(usable[0][1])

    def fit(idx: Sequence[int]) -> tuple[float, float, float]:
        return fit_power_law(ns, [sum(v[i] for i in idx) / len(idx) for _, v in usable])

    value = fit(range(m))
    rng = random.Random(seed)
    boots = [fit([rng.randrange(m) for _ in range(m)]) for _ in range(n_boot)]
    out = {}
    for j, name in enumerate(("C", "alpha", "K")):
        xs = sorted(b[j] for b in boots)
        out[name] = {
            "value": value[j],
            "low": xs[int(0.025 * (n_boot - 1))],
            "high": xs[int(0.975 * (n_boot - 1))],
        }
    return out
