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


def t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom (Simpson's rule on the density;
    accurate to ~1e-6 for the small seed counts a sweep has)."""
    if df < 1:
        raise ValueError(f"need df >= 1, got {df}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))

    def pdf(x: float) -> float:
        return c * (1 + x * x / df) ** (-(df + 1) / 2)

    x = abs(t)
    steps = 2000
    h = x / steps
    area = pdf(0.0) + pdf(x) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    tail = 0.5 - area * h / 3
    return tail if t >= 0 else 1.0 - tail


def t_quantile(p: float, df: int) -> float:
    """The t value with P(T <= t) = p (bisection on `t_sf`)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1.0 - t_sf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def across_seeds(values: Sequence[float], threshold: float = 0.0) -> dict[str, Any]:
    """Mean over seeds with a Student-t 95 % interval, and the one-sided t-test of "the mean
    exceeds `threshold`" (p-value); with one seed, no interval and no test."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    out: dict[str, Any] = {"n_seeds": n, "values": xs, "threshold": threshold}
    if n == 0:
        return {**out, "value": None, "low": None, "high": None, "p_value": None}
    mean = sum(xs) / n
    if n == 1:
        return {**out, "value": mean, "low": None, "high": None, "p_value": None}
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    se = sd / math.sqrt(n)
    half = t_quantile(0.975, n - 1) * se
    # every seed equal: the mean is exactly known, the test is decided by the mean alone
    exact = 0.0 if mean > threshold else 1.0
    p = t_sf((mean - threshold) / se, n - 1) if se > 0 else exact
    return {**out, "value": mean, "low": mean - half, "high": mean + half, "p_value": p}
