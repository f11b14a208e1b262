"""Statistics the lab reports: Wilson intervals for rates, bootstrap CIs for effects.

Never a bare rate: every rate travels with its count and its 95 % interval.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Rate:
    """k successes out of n, with a Wilson score interval."""

    k: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "value": self.value}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"


def wilson(k: int, n: int, z: float = Z95) -> Rate:
    """Wilson score interval; well-behaved at 0 and n (unlike the normal approximation)."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Rate(0, 0, float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)  # exact ends, not 0.9999999
    return Rate(k, n, low, high)


def rate_of(flags: Sequence[bool]) -> Rate:
    return wilson(sum(bool(f) for f in flags), len(flags))


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a percentile-bootstrap 95 % CI."""

    value: float
    low: float
    high: float
    n_boot: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_ci(
    samples: Sequence[float],
    statistic: Callable[[Sequence[float]], float] = lambda xs: sum(xs) / len(xs),
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Estimate:
    """Percentile bootstrap of `statistic` over `samples` (resampled with replacement)."""
    if not samples:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    rng = random.Random(seed)
    n = len(samples)
    stats = sorted(statistic([samples[rng.randrange(n)] for _ in range(n)]) for _ in range(n_boot))
    lo = stats[int(alpha / 2 * (n_boot - 1))]
    hi = stats[int((1 - alpha / 2) * (n_boot - 1))]
    return Estimate(statistic(samples), lo, hi, n_boot)


def paired_difference(
    after: Sequence[float], before: Sequence[float], n_boot: int = 2000, seed: int = 0
) -> Estimate:
    """Mean of after_i - before_i over paired items (0/1 flags or numbers), with a percentile
    bootstrap over the items: an attacked against a default answer to the same request, a
    model after against before fine-tuning."""
    diffs = [float(a) - float(b) for a, b in zip(after, before, strict=True)]
    return bootstrap_ci(diffs, n_boot=n_boot, seed=seed)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                    -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):  # fmt: skip
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # the continued fraction converges fast for x < (a + 1) / (a + b + 2); else use the symmetry
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom: 1/2 I_{df/(df+t^2)}(df/2, 1/2) for
    t >= 0 (exact to ~1e-14 at any t, so a huge t gives a tiny p, never a wrong one)."""
    if df < 1:
        raise ValueError(f"need df >= 1, got {df}")
    if math.isnan(t):
        raise ValueError("t is NaN")
    tail = 0.0 if math.isinf(t) else 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(p: float, df: int) -> float:
    """The t value with P(T <= t) = p (bisection on `t_sf`)."""
    lo, hi = -1e6, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1.0 - t_sf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def number(x: Any) -> float | None:
    """A measured number, or None where there is none (None, or NaN: a seed or a readout that
    could not measure it)."""
    if x is None:
        return None
    f = float(x)
    return None if math.isnan(f) else f


def across_seeds(
    values: Sequence[float | None],
    threshold: float = 0.0,
    confidence: float = 0.95,
    two_sided: bool = False,
) -> dict[str, Any]:
    """Mean over seeds with a Student-t interval at `confidence` (95 %; a Bonferroni-adjusted
    level where several are read together), and the t-test of "the mean exceeds `threshold`"
    (one-sided p) or of "the mean differs from `threshold`" (`two_sided`); with one seed, no
    interval and no test. None and NaN values (a seed that could not measure it) are left out;
    `n_seeds` says how many were used."""
    xs = [x for x in map(number, values) if x is not None]
    n = len(xs)
    out: dict[str, Any] = {"n_seeds": n, "values": xs, "threshold": threshold,
                           "confidence": confidence}  # fmt: skip
    if n == 0:
        return {**out, "value": None, "low": None, "high": None, "p_value": None}
    mean = sum(xs) / n
    if n == 1:
        return {**out, "value": mean, "low": None, "high": None, "p_value": None}
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    se = sd / math.sqrt(n)
    if se <= 1e-12 * max(1.0, abs(mean)):
        # every seed equal (up to rounding): the mean is known exactly, the test is decided by it
        se = 0.0
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * se
    if se > 0:
        t = (mean - threshold) / se
        p = 2 * t_sf(abs(t), n - 1) if two_sided else t_sf(t, n - 1)
    elif two_sided:
        p = 0.0 if mean != threshold else 1.0
    else:
        p = 0.0 if mean > threshold else 1.0
    return {**out, "value": mean, "low": mean - half, "high": mean + half, "p_value": p}
