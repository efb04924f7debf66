"""Means with their 95% confidence intervals (Student's t): of ratings (the review), and of per-message
differences between two systems scored on the same test messages (the comparison)."""
from __future__ import annotations

import math

import numpy as np


def mean_interval(values, digits: int = 3) -> tuple[float | None, float | None, float | None]:
    """Mean and its 95% confidence interval (none for n < 2, nothing for n = 0)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return None, None, None
    mean = float(values.mean())
    if n < 2:
        return round(mean, digits), None, None
    from scipy import stats

    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return round(mean, digits), round(mean - half, digits), round(mean + half, digits)
