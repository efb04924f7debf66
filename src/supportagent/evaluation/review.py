"""Blind manual review as data: the items a reviewer rates, the ratings file, and their summary.

Each item is one test message with the replies of the reviewed systems, shown in an order drawn per reviewer
and item (names hidden). Systems that sent the same text (a past reply the reranker chose, say) share one shown
reply: it is rated once, and its rating is each of theirs. A rating is one row per system in
`reports/review/ratings.csv` (1-5 helpfulness, tone and coherence, the preferred reply's systems joined by `|`, or
a tie), appended atomically, with the hash of the predictions file the reply came from: ratings of predictions
that changed since are stale and left out of the summary.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .intervals import mean_interval
from .predictions import read_predictions

CRITERIA = ("helpfulness", "tone", "coherence")
COLUMNS = ["time", "reviewer", "item", "system", *CRITERIA, "preferred", "predictions_sha256"]
TIE = "tie"


def sample_ids(predictions: pd.DataFrame, n: int, seed: int) -> list[int]:
    """The test messages drawn for review (the same draw as reports/samples.md)."""
    return predictions["pair_id"].sample(n=min(n, len(predictions)), random_state=seed).sort_values().tolist()


def prediction_hashes(predictions_dir: str | Path, systems: list[str]) -> dict[str, str]:
    """sha256 of each system's predictions file: a rating holds the hash of what the reviewer saw."""
    out = {}
    for s in systems:
        path = Path(predictions_dir) / f"{s}.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `dvc repro evaluate@{s}` first")
        out[s] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@dataclass(frozen=True)
class Item:
    pair_id: int
    brand: str
    message: str
    context: str
    tags: str
    replies: dict[str, str]  # system -> the reply as a customer receives it


class ReviewSet:
    """The review items of `systems`, read from their prediction files."""

    def __init__(self, predictions_dir: str | Path, systems: list[str], n: int, seed: int):
        if len(systems) < 2:
            raise ValueError("a blind review compares at least two systems")
        self.systems = list(systems)
        self.hashes = prediction_hashes(predictions_dir, systems)
        frames = {s: read_predictions(Path(predictions_dir) / f"{s}.jsonl").set_index("pair_id") for s in systems}
        first = frames[systems[0]].reset_index()
        self.items = []
        for pid in sample_ids(first, n, seed):
            row = frames[systems[0]].loc[pid]
            self.items.append(Item(int(pid), row["brand"], row["customer"], row.get("context") or "", row["tags"],
                                   {s: str(frames[s].loc[pid].get("served", frames[s].loc[pid]["prediction"]))
                                    for s in systems}))
        self._index = {it.pair_id: it for it in self.items}

    def item(self, pair_id: int) -> Item | None:
        return self._index.get(pair_id)

    def order(self, reviewer: str, pair_id: int) -> list[str]:
        """The systems in the order this reviewer sees them for this item (fixed across reloads)."""
        rng = random.Random(hashlib.sha256(f"{reviewer}\0{pair_id}".encode()).digest())
        systems = list(self.systems)
        rng.shuffle(systems)
        return systems

    def slots(self, reviewer: str, pair_id: int) -> list[list[str]]:
        """The replies this reviewer is shown for this item, each as the systems that sent its text, in `order`."""
        by_text: dict[str, list[str]] = {}
        for s in self.order(reviewer, pair_id):
            by_text.setdefault(self._index[pair_id].replies[s], []).append(s)
        return list(by_text.values())

    def done(self, ratings: pd.DataFrame, reviewer: str) -> set[int]:
        """Items this reviewer has rated against the current predictions."""
        fresh = current(ratings, self.hashes)
        return set(fresh.loc[fresh["reviewer"] == reviewer, "item"].astype(int))

    def rows(self, reviewer: str, pair_id: int, scores: list[dict], preferred: int | str) -> list[dict]:
        """Ratings of one item, given per shown slot, as rows naming the systems (a slot's rating for each system
        that sent its text)."""
        slots = self.slots(reviewer, pair_id)
        if len(scores) != len(slots):
            raise ValueError(f"item {pair_id} shows {len(slots)} replies, got scores for {len(scores)}")
        if preferred != TIE and not (isinstance(preferred, int) and 0 <= preferred < len(slots)):
            raise ValueError(f"preferred must be a slot 0-{len(slots) - 1} or '{TIE}'")
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        winner = TIE if preferred == TIE else "|".join(slots[preferred])
        out = []
        for systems, s in zip(slots, scores):
            bad = [c for c in CRITERIA if not (isinstance(s.get(c), int) and 1 <= s[c] <= 5)]
            if bad:
                raise ValueError(f"{', '.join(bad)} must be whole numbers from 1 to 5")
            out += [{"time": now, "reviewer": reviewer, "item": pair_id, "system": system,
                     **{c: s[c] for c in CRITERIA}, "preferred": winner, "predictions_sha256": self.hashes[system]}
                    for system in systems]
        return out


def read_ratings(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.read_csv(path, dtype={"reviewer": str, "system": str, "preferred": str, "predictions_sha256": str})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}: it is not a ratings file of this project")
    return df


def append_ratings(path: str | Path, rows: list[dict]) -> None:
    """Append the rows of one rating in a single write under an exclusive lock: concurrent reviewers never
    interleave lines, and a crash leaves whole ratings or none (the header is written with the first one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        if os.fstat(fd).st_size == 0:
            writer.writeheader()
        writer.writerows(rows)
        os.write(fd, buf.getvalue().encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_fresh(ratings: pd.DataFrame, hashes: dict[str, str]) -> pd.Series:
    return ratings["predictions_sha256"] == ratings["system"].map(hashes)


def current(ratings: pd.DataFrame, hashes: dict[str, str]) -> pd.DataFrame:
    """Ratings made against the predictions as they are now; a reviewer's later rating of an item replaces
    an earlier one."""
    return ratings[_is_fresh(ratings, hashes)].drop_duplicates(["reviewer", "item", "system"], keep="last")


def summarise(ratings: pd.DataFrame, hashes: dict[str, str]) -> dict:
    """metrics/review.json: per system n and each criterion's mean with its 95% interval; pairwise win rates
    from the preferences (a tie, or a preferred reply both systems sent, counts half); ratings of older predictions
    counted as stale, not used."""
    fresh = current(ratings, hashes)
    systems = list(hashes)
    out = {
        "ratings": int(len(fresh)),
        "stale_ratings": int((~_is_fresh(ratings, hashes)).sum()),
        "reviewers": int(fresh["reviewer"].nunique()),
        "items": int(fresh[["reviewer", "item"]].drop_duplicates().shape[0]),
        "systems": {},
        "win_rate": {},
    }
    for s in systems:
        rows = fresh[fresh["system"] == s]
        entry = {"n": int(len(rows))}
        for c in CRITERIA:
            entry[c] = mean_interval(pd.to_numeric(rows[c]))
        out["systems"][s] = entry
    prefs = fresh.drop_duplicates(["reviewer", "item"])[["reviewer", "item", "preferred"]]
    shown = fresh.groupby(["reviewer", "item"])["system"].apply(set)
    for a in systems:
        for b in systems:
            if a == b:
                continue
            both = [k for k, v in shown.items() if {a, b} <= v]
            p = prefs.set_index(["reviewer", "item"]).loc[both, "preferred"] if both else pd.Series(dtype=str)
            won = [set(str(x).split("|")) for x in p]  # the systems of the preferred reply (or {"tie"})
            wins, losses = sum(a in w and b not in w for w in won), sum(b in w and a not in w for w in won)
            ties = sum(w == {TIE} or {a, b} <= w for w in won)
            n = wins + losses + ties
            out["win_rate"][f"{a}_vs_{b}"] = {"n": n, "rate": round((wins + ties / 2) / n, 3) if n else None}
    return out


def plot_rows(summary: dict) -> pd.DataFrame:
    """plots/review/scores.csv: one row per system and criterion (empty means while nobody has rated: the plot
    then says so)."""
    rows = [{"system": s, "criterion": c, "mean": v[c]["mean"], "ci95_low": v[c]["ci95_low"],
             "ci95_high": v[c]["ci95_high"], "n": v["n"]}
            for s, v in summary["systems"].items() for c in CRITERIA]
    return pd.DataFrame(rows, columns=["system", "criterion", "mean", "ci95_low", "ci95_high", "n"])
