"""TWCS raw tweets -> cleaned (customer tweet, first brand reply) pairs, and the leakage-free split."""
from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .cleaning import ARROW_STR, NON_LETTERS, clean_texts
from .config import SplitParams, SubsetParams
from .errors import DataError

REQUIRED_COLUMNS = ["tweet_id", "author_id", "inbound", "created_at", "text", "in_response_to_tweet_id"]
PAIR_COLUMNS = ["pair_id", "conversation_id", "brand", "created_at", "context", "customer", "reply"]


@dataclass
class Report:
    rows_read: int = 0
    dropped: Counter = field(default_factory=Counter)

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] += int(n)


def read_raw(path: str | Path, report: Report) -> pd.DataFrame:
    """Read a TWCS csv (sample or the full Kaggle file); malformed rows are counted, not fatal."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"{path} not found. Fetch the bundled sample with `dvc pull data/raw/twcs.csv.dvc`, or download "
            "Kaggle's 'Customer Support on Twitter' twcs.csv, put it at data/raw/twcs.csv and run "
            "`dvc add data/raw/twcs.csv`."
        )
    try:
        header = pd.read_csv(path, nrows=0).columns
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path} lacks the column(s) {missing}; a TWCS file has {REQUIRED_COLUMNS + ['response_tweet_id']}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # all columns are read: with `usecols` pandas stops detecting lines with too many fields
            df = pd.read_csv(path, dtype=str, on_bad_lines="warn", engine="c", keep_default_na=False)
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err.reason}): TWCS is UTF-8. Convert it (`iconv -f <its encoding> "
                        "-t utf-8`) or download it again, then `dvc add data/raw/twcs.csv`") from None
    bad_lines = sum(len(re.findall(r"Skipping line", str(w.message))) for w in caught)
    report.rows_read = len(df) + bad_lines
    report.drop("malformed_line", bad_lines)

    out = pd.DataFrame({
        "tweet_id": pd.to_numeric(df["tweet_id"], errors="coerce"),
        "author_id": df["author_id"].astype(str),
        "inbound": df["inbound"].str.strip().str.lower().map({"true": True, "false": False}),
        "created_at": parse_dates(df["created_at"]),
        "text": df["text"],
        "parent_id": pd.to_numeric(df["in_response_to_tweet_id"].replace("", None), errors="coerce"),
    })
    bad = out["tweet_id"].isna() | out["inbound"].isna() | (out["author_id"] == "")
    bad |= df["in_response_to_tweet_id"].ne("") & out["parent_id"].isna()
    report.drop("malformed_field", bad.sum())
    out = out[~bad]
    dup = out["tweet_id"].duplicated()
    report.drop("duplicate_tweet_id", dup.sum())
    out = out[~dup].astype({"tweet_id": "int64", "inbound": bool})
    return out


def parse_dates(texts: pd.Series) -> pd.Series:
    """TWCS timestamps ("Tue Oct 31 22:10:47 +0000 2017") -> UTC datetimes; unparsable -> NaT.

    pyarrow's strptime handles the usual +0000 form ~6x faster than pandas; other offsets fall back."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(texts.to_numpy(dtype=object), type=pa.string())
    fast = pc.strptime(pc.utf8_slice_codeunits(arr, 4), format="%b %d %H:%M:%S +0000 %Y", unit="us", error_is_null=True)
    out = pd.Series(fast.to_pandas(), index=texts.index).dt.tz_localize("UTC")
    rest = out.isna() & texts.ne("")
    if rest.any():
        out[rest] = pd.to_datetime(texts[rest], format="%a %b %d %H:%M:%S %z %Y", errors="coerce", utc=True)
    return out


def conversation_roots(tweet_ids: np.ndarray, parent: pd.Series, max_depth: int = 1000) -> np.ndarray:
    """Root tweet of each id's reply chain (pointer jumping over the id -> parent map)."""
    cur = tweet_ids.astype("int64")
    for _ in range(max_depth):
        nxt = parent.reindex(cur).to_numpy()
        has = ~np.isnan(nxt)
        if not has.any():
            break
        cur = np.where(has, np.nan_to_num(nxt, nan=0).astype("int64"), cur)
    return cur


def latin_share(texts: pd.Series) -> pd.Series:
    """Share of letters that are basic Latin (a-z): the embedded model and the metrics are English-centric."""
    texts = texts.astype(ARROW_STR)
    # lengths after deleting runs of other characters: ~3x faster than counting matches one by one
    letters = texts.str.replace(NON_LETTERS, "", regex=True).str.len()
    latin = texts.str.replace(r"[^A-Za-z]+", "", regex=True).str.len()
    return (latin / letters.where(letters > 0, 1)).where(letters > 0, 1.0)


def build_pairs(tweets: pd.DataFrame, params: SubsetParams, report: Report) -> pd.DataFrame:
    """Customer tweet -> earliest brand reply to it, with the optional preceding turn as context."""
    replies = tweets[~tweets["inbound"] & tweets["parent_id"].notna()]
    customers = tweets[tweets["inbound"]].set_index("tweet_id")
    replies = replies.sort_values(["created_at", "tweet_id"], na_position="last")
    first = replies.drop_duplicates("parent_id", keep="first")
    report.drop("later_reply_to_same_tweet", len(replies) - len(first))
    first = first.astype({"parent_id": "int64"})
    has_parent = first["parent_id"].isin(customers.index)
    report.drop("reply_without_customer_tweet", (~has_parent).sum())
    first = first[has_parent]
    cust = customers.loc[first["parent_id"].to_numpy()]
    pairs = pd.DataFrame({
        "pair_id": first["parent_id"].to_numpy(),
        "brand": first["author_id"].to_numpy(),
        "created_at": cust["created_at"].to_numpy(),
        "customer_raw": cust["text"].to_numpy(),
        "reply_raw": first["text"].to_numpy(),
        "context_id": cust["parent_id"].to_numpy(),
    })
    parent = tweets.set_index("tweet_id")["parent_id"]
    pairs["conversation_id"] = conversation_roots(pairs["pair_id"].to_numpy(), parent)

    if params.keep_context:
        texts = tweets.set_index("tweet_id")["text"]
        ctx = texts.reindex(pairs["context_id"].fillna(-1).astype("int64").to_numpy()).fillna("")
        pairs["context"] = clean_texts(pd.Series(ctx.to_numpy()), params.strip_signatures).str.slice(0, params.max_context_chars)
    else:
        pairs["context"] = ""
    pairs["customer"] = clean_texts(pairs["customer_raw"])
    pairs["reply"] = clean_texts(pairs["reply_raw"], params.strip_signatures)

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
            raise DataError(f"subset.brands names brand(s) with no usable pairs: {unknown}; top brands: {list(counts.index[:10])}")
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


def make_subset(raw_path: str | Path, params: SubsetParams, seed: int) -> tuple[pd.DataFrame, dict]:
    report = Report()
    tweets = read_raw(raw_path, report)
    pairs = build_pairs(tweets, params, report)
    if len(pairs):
        pairs = select_brands(pairs, params, seed, report)
    if pairs.empty:
        raise DataError(f"no pairs left after filtering; rows read {report.rows_read}, dropped per reason: {dict(report.dropped)}")
    metrics = {
        "rows_read": report.rows_read,
        "pairs": len(pairs),
        "pairs_per_brand": {b: int(n) for b, n in pairs["brand"].value_counts().sort_index().items()},
        "dropped": dict(sorted(report.dropped.items())),
    }
    return pairs, metrics


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
