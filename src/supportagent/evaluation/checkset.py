"""The labelled replies the output checks are measured on (tests/data/reply_checks.jsonl): crafted replies with the
checks each should raise, and real replies of the data, named by pair id (the data stays in DVC) with the checks a
reader found they deserve. `scores` gives each check's precision and recall on them."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..config import Params
from ..inference.checks import CHECKS
from ..inference.guard import raised


def load(path: str | Path, pairs: pd.DataFrame | None = None) -> list[dict]:
    """The labelled rows, each with brand, message, previous, reply and flags; real rows take their texts from
    `pairs` (data/interim/pairs.parquet), and are left out without it."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by_id = pairs.set_index("pair_id") if pairs is not None else None
    out = []
    for r in rows:
        if "pair_id" in r:
            if by_id is None:
                continue
            if r["pair_id"] not in by_id.index:
                raise KeyError(f"pair {r['pair_id']} of {path} is not in the pairs: run `dvc repro subset` with the "
                               "default params")
            p = by_id.loc[r["pair_id"]]
            r = {
                **r,
                "brand": p["brand"],
                "message": p["customer"],
                "previous": p["context"] or "",
                "reply": p["reply"],
            }
        out.append(r)
    return out


def flagged(rows: list[dict], params: Params) -> list[set[str]]:
    """The checks each row's reply raises, as the guard would run them."""
    return raised(*([r[k] for r in rows] for k in ("reply", "brand", "message", "previous")), params)


def scores(rows: list[dict], found: list[set[str]]) -> dict:
    """Per check: how many rows should raise it, precision and recall (None where nothing was raised or expected),
    and the rows it missed or raised wrongly (their index)."""
    out = {}
    for c in CHECKS:
        want = [c in r["flags"] for r in rows]
        got = [c in f for f in found]
        tp = sum(w and g for w, g in zip(want, got))
        out[c] = {"positives": sum(want), "precision": round(tp / sum(got), 3) if any(got) else None,
                  "recall": round(tp / sum(want), 3) if any(want) else None,
                  "missed": [i for i, (w, g) in enumerate(zip(want, got)) if w and not g],
                  "wrong": [i for i, (w, g) in enumerate(zip(want, got)) if g and not w]}
    return out
