"""TWCS raw tweets -> cleaned (customer tweet, first brand reply) pairs of the top brands."""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from . import tweets
from ..config import SubsetParams
from ..errors import DataError
from .cleaning import ARROW_STR, NON_LETTERS, clean_texts
from .tweets import NO_ID, Skeleton, time_index

PAIR_COLUMNS = ["pair_id", "conversation_id", "brand", "created_at", "context", "customer", "reply"]


@dataclass
class Report:
    rows_read: int = 0
    dropped: Counter = field(default_factory=Counter)

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] += int(n)


def conversation_roots(pair_ids: np.ndarray, sk: Skeleton, max_depth: int = 1000) -> np.ndarray:
    """Root tweet of each id's reply chain (pointer jumping over the id -> parent links)."""
    cur = pair_ids.astype("int64")
    moving = np.arange(len(cur))  # chains not yet at their root: most are a turn or two long
    for _ in range(max_depth):
        at = sk.find(cur[moving])
        nxt = np.where(at >= 0, sk.parent_id[np.maximum(at, 0)], NO_ID)
        has = nxt != NO_ID
        if not has.any():
            break
        moving = moving[has]
        cur[moving] = nxt[has]
    return cur


def link_pairs(sk: Skeleton, report: Report) -> pd.DataFrame:
    """Customer tweet -> earliest brand reply to it, as rows of the file (no text yet), in the replies' time order."""
    replies = np.flatnonzero(~sk.inbound & (sk.parent_id != NO_ID))
    # per parent: the earliest reply (unknown times last, ties by tweet id)
    by_parent = replies[np.lexsort((sk.tweet_id[replies], sk.created_us[replies], sk.parent_id[replies]))]
    parents = sk.parent_id[by_parent]
    first = by_parent[np.r_[True, parents[1:] != parents[:-1]] if len(parents) else []]
    report.drop("later_reply_to_same_tweet", len(replies) - len(first))
    first = first[np.lexsort((sk.tweet_id[first], sk.created_us[first]))]
    customer = sk.find(sk.parent_id[first])
    answered = customer >= 0
    answered[answered] = sk.inbound[customer[answered]]
    report.drop("reply_without_customer_tweet", (~answered).sum())
    first, customer = first[answered], customer[answered]
    context = sk.find(sk.parent_id[customer])
    return pd.DataFrame({
        "pair_id": sk.tweet_id[customer],
        "brand": pd.Categorical.from_codes(sk.author[first], categories=sk.authors).astype(object),
        "created_at": time_index(sk.created_us[customer]),
        "conversation_id": conversation_roots(sk.tweet_id[customer], sk),
        "customer_row": sk.row[customer],
        "reply_row": sk.row[first],
        "context_row": np.where(context >= 0, sk.row[np.maximum(context, 0)], -1),
    })


def add_texts(pairs: pd.DataFrame, path: str | Path, block_bytes: int) -> pd.DataFrame:
    """Pass two: the raw texts of each pair's customer tweet, reply and preceding turn."""
    rows = np.unique(np.concatenate([pairs[c].to_numpy() for c in ("customer_row", "reply_row", "context_row")]))
    rows = rows[rows >= 0]
    text = tweets.texts(path, rows, block_bytes, progress("pass 2 of 2, the pairs' texts"))
    for role in ("customer", "reply", "context"):
        row = pairs.pop(f"{role}_row").to_numpy()
        at = pa.array(np.searchsorted(rows, row), mask=row < 0)  # no preceding turn: null, then ""
        raw = text.take(at).fill_null("")
        pairs[f"{role}_raw"] = pd.Series(pd.arrays.ArrowStringArray(raw), index=pairs.index).astype(ARROW_STR)
    return pairs


def progress(what: str, every_s: float = 10.0):
    """A callback printing rows read so far at most every `every_s` seconds (a large file takes minutes)."""
    last = [time.monotonic()]

    def show(rows: int) -> None:
        if time.monotonic() - last[0] >= every_s:
            last[0] = time.monotonic()
            print(f"subset: {what}, {rows:,} rows", file=sys.stderr, flush=True)

    return show


def latin_share(texts: pd.Series) -> pd.Series:
    """Share of letters that are basic Latin (a-z): the embedded model and the metrics are English-centric."""
    texts = texts.astype(ARROW_STR)
    # lengths after deleting runs of other characters: faster than counting matches one by one
    letters = texts.str.replace(NON_LETTERS, "", regex=True).str.len()
    latin = texts.str.replace(r"[^A-Za-z]+", "", regex=True).str.len()
    return (latin / letters.where(letters > 0, 1)).where(letters > 0, 1.0)


def build_pairs(path: str | Path, params: SubsetParams, report: Report, block_bytes: int = tweets.BLOCK_BYTES
                ) -> pd.DataFrame:
    """Customer tweet -> earliest brand reply to it, with the optional preceding turn as context, cleaned."""
    sk = tweets.skeleton(path, block_bytes, progress("pass 1 of 2, ids and links"))
    report.rows_read = sk.parsed_rows + sk.bad_lines
    report.drop("malformed_line", sk.bad_lines)
    report.drop("malformed_field", sk.malformed)
    report.drop("duplicate_tweet_id", sk.duplicates)
    pairs = link_pairs(sk, report)
    del sk
    pairs = add_texts(pairs, path, block_bytes)
    context = pairs.pop("context_raw")
    if params.keep_context:
        pairs["context"] = clean_texts(context, params.strip_signatures).str.slice(0, params.max_context_chars)
    else:
        pairs["context"] = ""
    del context
    pairs["customer"] = clean_texts(pairs.pop("customer_raw"))
    pairs["reply"] = clean_texts(pairs.pop("reply_raw"), params.strip_signatures)

    keep = pd.Series(True, index=pairs.index)
    for reason, mask in [
        ("empty_text", (pairs["customer"] == "") | (pairs["reply"] == "")),
        ("customer_too_short", pairs["customer"].str.len() < params.min_customer_chars),
        ("reply_too_short", pairs["reply"].str.len() < params.min_reply_chars),
        ("customer_too_long", pairs["customer"].str.len() > params.max_customer_chars),
        ("reply_too_long", pairs["reply"].str.len() > params.max_reply_chars),
        ("non_latin_text", (latin_share(pairs["customer"]) < params.min_latin_share)
         | (latin_share(pairs["reply"]) < params.min_latin_share)),
    ]:
        report.drop(reason, (keep & mask).sum())
        keep &= ~mask
    pairs = pairs[keep]
    dup = pairs.duplicated(["brand", "context", "customer", "reply"])
    report.drop("duplicate_pair", dup.sum())
    return pairs[~dup][PAIR_COLUMNS].reset_index(drop=True)


def select_brands(pairs: pd.DataFrame, params: SubsetParams, seed: int, report: Report) -> pd.DataFrame:
    """Keep the top-N brands (or the explicit list), then cap pairs per brand and total bytes."""
    counts = pairs["brand"].value_counts()
    if params.brands:
        unknown = [b for b in params.brands if b not in counts.index]
        if unknown:
            raise DataError(f"subset.brands names brand(s) with no usable pairs: {unknown}; "
                            f"top brands: {list(counts.index[:10])}")
        brands = list(params.brands)
    else:
        # ties broken by name so the choice is deterministic
        brands = sorted(counts.index, key=lambda b: (-counts[b], b))[: params.top_n_brands]
    inside = pairs["brand"].isin(brands)
    report.drop("brand_not_selected", (~inside).sum())
    pairs = pairs[inside]
    if params.max_pairs_per_brand:
        capped = pairs.sample(frac=1.0, random_state=seed).groupby("brand").head(params.max_pairs_per_brand)
        report.drop("over_brand_cap", len(pairs) - len(capped))
        pairs = capped
    if params.max_total_bytes:
        pairs = pairs.sample(frac=1.0, random_state=seed)
        size = (pairs["customer"].str.len() + pairs["reply"].str.len() + pairs["context"].str.len()).cumsum()
        over = size > params.max_total_bytes
        report.drop("over_total_bytes", over.sum())
        pairs = pairs[~over]
    return pairs.sort_values(["brand", "pair_id"]).reset_index(drop=True)


def make_subset(raw_path: str | Path, params: SubsetParams, seed: int, block_bytes: int = tweets.BLOCK_BYTES
                ) -> tuple[pd.DataFrame, dict]:
    report = Report()
    pairs = build_pairs(raw_path, params, report, block_bytes)
    if len(pairs):
        pairs = select_brands(pairs, params, seed, report)
    if pairs.empty:
        raise DataError(f"no pairs left after filtering; rows read {report.rows_read}, "
                        f"dropped per reason: {dict(report.dropped)}")
    metrics = {
        "rows_read": report.rows_read,
        "pairs": len(pairs),
        "pairs_per_brand": {b: int(n) for b, n in pairs["brand"].value_counts().sort_index().items()},
        "dropped": dict(sorted(report.dropped.items())),
    }
    return pairs, metrics

