"""How sure a measured share is: 95% intervals for a count of successes, and shares with their interval.

Every accuracy and share the course reports comes from a finite sample (200
prompts, 300 questions), so it is drawn with its interval: a difference
between two points whose intervals overlap widely is not a finding.
"""

from __future__ import annotations

import math
from typing import TypedDict

__all__ = ["Z95", "wilson_interval", "Share", "share"]

Z95 = 1.959963984540054  # the two-sided 95% point of the standard normal distribution


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default).

    Unlike the textbook ``p +- z sqrt(p(1-p)/n)`` it stays inside [0, 1]
    and is not zero-width at 0 or n successes, which small samples reach.
    """
    if n <= 0:
        raise ValueError(f"an interval needs at least one trial, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in 0..{n}, got {successes}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class Share(TypedDict):
    share: float     # successes / n
    low: float       # 95% interval
    high: float
    successes: int
    n: int


def share(successes: int, n: int) -> Share:
    """``successes / n`` with its 95% Wilson interval, as one record."""
    low, high = wilson_interval(successes, n)
    return {"share": successes / n, "low": low, "high": high, "successes": successes, "n": n}
