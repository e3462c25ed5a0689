"""Paired comparisons over seeds: two arms run with the same seeds and scored on the same
carve differ by ``a_i - b_i`` per seed; their mean and a Student-t interval say how sure the
difference is. Exact for whole degrees of freedom, with no SciPy (Abramowitz & Stegun 26.7)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95


def t_mass(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with ``df`` (a whole number >= 1) degrees of freedom:
    the closed forms of A&S 26.7.3 (odd df) and 26.7.4 (even df)."""
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a whole number >= 1, got {df}")
    t = abs(t)
    if math.isinf(t):
        return 1.0
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        series = 0.0
        if df > 1:
            term = series = c
            for k in range(3, df - 1, 2):  # cos^3 .. cos^(df-2), each term from the last
                term *= c * c * (k - 1) / k
                series += term
        return min(1.0, 2 / math.pi * (theta + s * series))
    term = series = 1.0
    for k in range(2, df - 1, 2):  # cos^2 .. cos^(df-2)
        term *= c * c * (k - 1) / k
        series += term
    return min(1.0, s * series)


def t_quantile(level: float, df: int) -> float:
    """The ``t`` with ``P(|T| <= t) = level`` (two-sided): 12.706 for df 1 at 95 %."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    low, high = 0.0, 1.0
    while t_mass(high, df) < level:
        high *= 2
    for _ in range(200):  # bisection to float precision
        mid = (low + high) / 2
        if mid in (low, high):
            break
        low, high = (mid, high) if t_mass(mid, df) < level else (low, mid)
    return (low + high) / 2


@dataclass(frozen=True)
class Paired:
    """The mean of ``a - b`` over ``n`` pairs, its ``level`` interval and two-sided p."""

    n: int
    mean: float
    low: float | None = None  # None: one pair, no interval
    high: float | None = None
    p: float | None = None
    level: float = LEVEL
    kind: str = "t"  # how the interval was made: Student t, df = n - 1

    @property
    def includes_zero(self) -> bool | None:
        return None if self.low is None else self.low <= 0 <= self.high

    def text(self) -> str:
        """``+1.03 [-0.20, +2.25] p 0.07 (n 3)``; one pair: ``+1.03 (n 1)``."""
        if self.low is None:
            return f"{self.mean:+.2f} (n {self.n})"
        p = "<0.001" if self.p < 0.001 else f"{self.p:.3f}" if self.p < 0.01 else f"{self.p:.2f}"
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}] p {p} (n {self.n})"


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Paired:
    """Mean of ``a[i] - b[i]`` with a Student-t interval (df = n - 1) and two-sided p-value."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired samples need the same, non-zero length; got {len(a)} and {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    n, mean = len(diffs), statistics.fmean(diffs)
    if n == 1:
        return Paired(1, mean, level=level)
    se = statistics.stdev(diffs) / math.sqrt(n)
    if se == 0:  # every pair differs by the same amount
        return Paired(n, mean, mean, mean, 1.0 if mean == 0 else 0.0, level)
    half = t_quantile(level, n - 1) * se
    p = 1.0 - t_mass(mean / se, n - 1)
    return Paired(n, mean, mean - half, mean + half, max(0.0, p), level)
