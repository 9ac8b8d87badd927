"""How sure a measured share is, and whether it beats another: the course's one rule for both.

Every accuracy and share the course reports comes from a finite sample (200
prompts, 300 questions), so it is drawn with its 95% interval. Whether a
share beats a baseline (or another run) is decided by one rule,
:func:`compare_shares`: the 95% interval of the *difference* of the two
shares (Newcombe's score interval, built from the two Wilson intervals)
must lie wholly above or below zero. Two separate intervals that merely fail
to overlap, or one interval above a baseline read as if it were exact, are
not that rule: they give other verdicts on the same counts.
"""

from __future__ import annotations

import math
from typing import TypedDict

__all__ = ["Z95", "wilson_interval", "Share", "share", "Comparison", "compare_shares", "perplexity_from_loss"]

LOSS_CAP = 700.0  # exp(709.8) overflows a float: a diverged loss still gives a (huge) finite perplexity

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


class Comparison(TypedDict):
    difference: float  # share - baseline share
    low: float         # 95% interval of the difference
    high: float
    effect: float      # Cohen's h: 2 asin(sqrt p) - 2 asin(sqrt q); 0.2 small, 0.5 medium, 0.8 large
    verdict: str       # "above", "below" or "not distinguishable"


def compare_shares(successes: int, n: int, base_successes: int, base_n: int) -> Comparison:
    """Whether ``successes / n`` beats ``base_successes / base_n``: the interval of the difference and its effect size.

    The interval is Newcombe's hybrid score interval for a difference of two
    independent proportions (his method 10): it combines the two Wilson
    intervals, stays sensible at 0 and n, and is what every "above the
    baseline" in the course means. A baseline measured on the same
    questions is treated as its own sample of them.
    """
    p, q = successes / n, base_successes / base_n
    p_low, p_high = wilson_interval(successes, n)
    q_low, q_high = wilson_interval(base_successes, base_n)
    low = p - q - math.sqrt((p - p_low) ** 2 + (q_high - q) ** 2)
    high = p - q + math.sqrt((p_high - p) ** 2 + (q - q_low) ** 2)
    verdict = "above" if low > 0 else "below" if high < 0 else "not distinguishable"
    effect = 2 * math.asin(math.sqrt(p)) - 2 * math.asin(math.sqrt(q))
    return {"difference": p - q, "low": low, "high": high, "effect": effect, "verdict": verdict}


def perplexity_from_loss(loss: float) -> float:
    """``exp(loss)`` for a mean loss in nats per token, finite even for a diverged run's loss."""
    return math.exp(min(loss, LOSS_CAP))
