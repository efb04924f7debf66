"""Pairs -> train/val/test, stratified by brand and grouped by conversation, so no conversation leaks."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import SplitParams
from ..errors import DataError


def split_pairs(pairs: pd.DataFrame, params: SplitParams, seed: int) -> dict[str, pd.DataFrame]:
    """Split stratified by brand and grouped by conversation (no conversation in two splits)."""
    if pairs.empty:
        raise DataError("no pairs to split: run the subset stage first (dvc repro subset)")
    conv = pairs.groupby("conversation_id").agg(brand=("brand", "first"), n=("pair_id", "size")).reset_index()
    rng = np.random.default_rng(seed)
    assign = {}
    for _, group in conv.sort_values("conversation_id").groupby("brand", sort=True):
        order = group.iloc[rng.permutation(len(group))]
        frac = order["n"].cumsum().to_numpy() / order["n"].sum()
        cut_train, cut_val = params.train, params.train + params.val
        # the first conversation of a brand goes to test so that every brand is evaluated
        names = np.where(frac <= cut_train, "train", np.where(frac <= cut_val + 1e-9, "val", "test"))
        if len(order) >= 3 and "test" not in names:
            names[-1] = "test"
        assign.update(dict(zip(order["conversation_id"], names)))
    which = pairs["conversation_id"].map(assign)
    return {name: pairs[which == name].reset_index(drop=True) for name in ("train", "val", "test")}
