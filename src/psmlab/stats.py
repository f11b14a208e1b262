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
