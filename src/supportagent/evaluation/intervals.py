"""Means with their 95% confidence intervals (Student's t): of ratings (the review), and of per-message
differences between two systems scored on the same test messages (the comparison)."""
from __future__ import annotations

import math

import numpy as np


def mean_interval(values, digits: int = 3) -> dict:
    """{"mean", "ci95_low", "ci95_high"}, as the metrics files hold them: the mean and its 95% confidence interval
    (bounds None for n < 2, all None for n = 0)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return {"mean": None, "ci95_low": None, "ci95_high": None}
    mean = float(values.mean())
    if len(values) < 2:
        return {"mean": round(mean, digits), "ci95_low": None, "ci95_high": None}
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return {
        "mean": round(mean, digits),
        "ci95_low": round(mean - half, digits),
        "ci95_high": round(mean + half, digits),
    }
