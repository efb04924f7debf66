"""The raw TWCS csv, streamed in two passes so that memory grows with the tweets' ids, not their texts.

Pass one reads every row's ids, author, direction, time and parent (`skeleton`); the pairs are linked on those.
Pass two reads the text column again and keeps the texts of the rows the pairs name (`texts`). Both passes parse
the file with the same options, so a row's position is the same in each."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import DataError

REQUIRED_COLUMNS = ["tweet_id", "author_id", "inbound", "created_at", "text", "in_response_to_tweet_id"]
SKELETON_COLUMNS = ["tweet_id", "author_id", "inbound", "created_at", "in_response_to_tweet_id"]
BLOCK_BYTES = 16 << 20  # bytes parsed per batch: memory per batch, not per file
NO_ID = -1  # a missing parent; tweet ids are positive
NO_TIME = np.iinfo(np.int64).max  # a missing or unparsable time sorts last


COLUMNS = {"row": np.int64, "tweet_id": np.int64, "inbound": np.bool_, "created_us": np.int64,
           "parent_id": np.int64, "author": np.int32}


@dataclass
class Skeleton:
    """Every kept tweet (well-formed, first of its id), sorted by tweet id; `row` is its position among the parsed
    rows of the file (pass two finds its text there)."""
    row: np.ndarray  # int64
    tweet_id: np.ndarray  # int64, ascending
    inbound: np.ndarray  # bool
    created_us: np.ndarray  # int64 microseconds since the epoch, NO_TIME when unknown
    parent_id: np.ndarray  # int64, NO_ID when none
    author: np.ndarray  # int32 code into `authors` for brand (outbound) tweets, -1 for customers
    authors: list[str]
    parsed_rows: int  # rows the parser returned
    bad_lines: int  # lines with the wrong number of fields
    malformed: int  # rows with an unreadable id, direction, author or parent
    duplicates: int  # rows repeating an earlier tweet id

    def find(self, ids: np.ndarray) -> np.ndarray:
        """Positions of tweet ids, -1 where absent (binary search: a hash index would cost more than the ids)."""
        if not len(self.tweet_id):
            return np.full(len(ids), -1)
        at = np.minimum(np.searchsorted(self.tweet_id, ids), len(self.tweet_id) - 1)
        return np.where(self.tweet_id[at] == ids, at, -1)


class Growing:
    """Columns appended batch by batch into arrays grown by half again when full: the batches' small arrays are
    not kept, so the heap does not fragment between them, and a column's peak is 1.5 times its size."""

    def __init__(self, dtypes: dict, capacity: int):
        self.n = 0
        self.columns = {k: np.empty(capacity, dtype=t) for k, t in dtypes.items()}

    def append(self, **values: np.ndarray) -> None:
        m = len(next(iter(values.values())))
        for k, v in values.items():
            col = self.columns[k]
            if self.n + m > len(col):
                grown = np.empty(max(self.n + m, len(col) * 3 // 2), dtype=col.dtype)
                grown[: self.n] = col[: self.n]
                self.columns[k] = col = grown
            col[self.n: self.n + m] = v
        self.n += m

    def take(self) -> dict[str, np.ndarray]:
        out = {k: v[: self.n].copy() if len(v) > self.n * 1.1 else v[: self.n] for k, v in self.columns.items()}
        self.columns = {}
        return out


def check_header(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"{path} not found. Fetch the bundled sample with `dvc pull data/raw/twcs.csv.dvc`, or download "
            "Kaggle's 'Customer Support on Twitter' twcs.csv, put it at data/raw/twcs.csv and run "
            "`dvc add data/raw/twcs.csv`."
        )
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err.reason) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path} lacks the column(s) {missing}; "
                        f"a TWCS file has {REQUIRED_COLUMNS + ['response_tweet_id']}")
    return header


def _not_utf8(path: Path, reason: str) -> DataError:
    return DataError(f"{path} is not UTF-8 text ({reason}): TWCS is UTF-8. Convert it (`iconv -f <its encoding> "
                     "-t utf-8`) or download it again, then `dvc add data/raw/twcs.csv`")


def _batches(path: Path, header: list[str], columns: list[str], block_bytes: int,
             on_bad_line: Callable[[], None]) -> Iterator[pa.RecordBatch]:
    def skip(_row) -> str:
        on_bad_line()
        return "skip"

    try:
        yield from pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=block_bytes),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                                 include_columns=columns, strings_can_be_null=False),
        )
    except pa.ArrowInvalid as err:
        if "utf8" in str(err).lower():
            raise _not_utf8(path, "invalid UTF-8 bytes") from None
        raise DataError(f"{path} could not be parsed as csv ({err})") from None


def _ids(col: pa.Array) -> np.ndarray:
    """Tweet ids as int64, NO_ID where empty or not a number (pandas' to_numeric rules)."""
    try:
        ids = pc.cast(pc.if_else(pc.equal(col, ""), None, col), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # " 12", "12.0": pandas reads them
        numbers = pd.to_numeric(pd.Series(col.to_numpy(zero_copy_only=False)), errors="coerce")
        return np.where(numbers.isna(), NO_ID, numbers.fillna(0)).astype(np.int64)
    return ids.fill_null(NO_ID).to_numpy(zero_copy_only=False).astype(np.int64)


def parse_times(col: pa.Array) -> np.ndarray:
    """TWCS timestamps ("Tue Oct 31 22:10:47 +0000 2017") -> int64 UTC microseconds; unparsable -> NO_TIME.

    pyarrow's strptime reads the usual +0000 form; other offsets fall back to pandas."""
    fast = pc.strptime(pc.utf8_slice_codeunits(col, 4), format="%b %d %H:%M:%S +0000 %Y", unit="us",
                       error_is_null=True)
    out = pc.cast(fast, pa.int64()).fill_null(NO_TIME).to_numpy(zero_copy_only=False).astype(np.int64)
    rest = (out == NO_TIME) & pc.not_equal(col, "").to_numpy(zero_copy_only=False)
    if rest.any():
        texts = pd.Series(col.to_numpy(zero_copy_only=False)[rest])
        slow = pd.to_datetime(texts, format="%a %b %d %H:%M:%S %z %Y", errors="coerce", utc=True)
        out[rest] = np.where(slow.isna(), NO_TIME, slow.to_numpy(dtype="datetime64[us]").astype(np.int64))
    return out


def skeleton(path: str | Path, block_bytes: int = BLOCK_BYTES, progress: Callable[[int], None] | None = None
             ) -> Skeleton:
    """Pass one: every well-formed tweet's ids, direction, time, parent and (for brands) author."""
    path = Path(path)
    header = check_header(path)
    bad = [0]
    authors: dict[str, int] = {}
    kept: Growing | None = None
    parsed = malformed = 0
    for batch in _batches(path, header, SKELETON_COLUMNS, block_bytes, lambda: bad.__setitem__(0, bad[0] + 1)):
        n = batch.num_rows
        tweet_id = _ids(batch.column("tweet_id"))
        direction = pc.utf8_lower(pc.utf8_trim_whitespace(batch.column("inbound")))
        inbound = pc.equal(direction, "true").to_numpy(zero_copy_only=False)
        known = inbound | pc.equal(direction, "false").to_numpy(zero_copy_only=False)
        author_col = batch.column("author_id")
        parent_text = batch.column("in_response_to_tweet_id")
        parent_id = _ids(parent_text)
        has_parent_text = pc.not_equal(parent_text, "").to_numpy(zero_copy_only=False)
        ok = (tweet_id != NO_ID) & known & pc.not_equal(author_col, "").to_numpy(zero_copy_only=False)
        ok &= ~(has_parent_text & (parent_id == NO_ID))
        malformed += int(n - ok.sum())
        keep = np.flatnonzero(ok)
        codes = np.full(n, -1, dtype=np.int32)
        brand_rows = np.flatnonzero(ok & ~inbound)
        if len(brand_rows):
            encoded = pc.dictionary_encode(author_col.take(pa.array(brand_rows)))
            lookup = np.array([authors.setdefault(a, len(authors)) for a in encoded.dictionary.to_pylist()],
                              dtype=np.int32)
            codes[brand_rows] = lookup[encoded.indices.to_numpy(zero_copy_only=False)]
        if kept is None:  # room for the whole file at the first block's rows per byte, and a tenth more
            size = path.stat().st_size
            kept = Growing(COLUMNS, n if size <= block_bytes else int(1.1 * n * size / block_bytes))
        kept.append(row=parsed + keep, tweet_id=tweet_id[keep], inbound=inbound[keep],
                    created_us=parse_times(batch.column("created_at").take(pa.array(keep))),
                    parent_id=parent_id[keep], author=codes[keep])
        parsed += n
        if progress:
            progress(parsed + bad[0])
    columns = (kept or Growing(COLUMNS, 0)).take()
    # sorted by id, each id's first row in the file kept (a stable sort keeps file order among equal ids)
    order = np.argsort(columns["tweet_id"], kind="stable")
    ids = columns["tweet_id"][order]
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    del ids
    order = order[first]
    for k in columns:  # one column at a time: the peak is one column more
        columns[k] = columns[k][order]
    del order
    return Skeleton(**columns, authors=list(authors), parsed_rows=parsed, bad_lines=bad[0], malformed=malformed,
                    duplicates=int((~first).sum()))


def texts(path: str | Path, rows: np.ndarray, block_bytes: int = BLOCK_BYTES,
          progress: Callable[[int], None] | None = None) -> pa.Array:
    """Pass two: the raw texts of the parsed rows `rows` (sorted, unique), in that order."""
    path = Path(path)
    header = check_header(path)
    chunks, start, bad = [], 0, [0]
    for batch in _batches(path, header, ["text"], block_bytes, lambda: bad.__setitem__(0, bad[0] + 1)):
        end = start + batch.num_rows
        lo, hi = np.searchsorted(rows, [start, end])
        if hi > lo:
            chunks.append(batch.column("text").take(pa.array(rows[lo:hi] - start)))
        start = end
        if progress:
            progress(start + bad[0])
    text = pa.chunked_array(chunks, type=pa.string()).combine_chunks()
    if len(text) != len(rows):
        raise DataError(f"{path} changed between the two passes of the subset stage ({len(text)} of {len(rows)} "
                        "texts found); run it again on a file that is not being written")
    return text


def time_index(created_us: np.ndarray) -> pd.DatetimeIndex:
    """int64 microseconds (NO_TIME = unknown) -> UTC datetimes (NaT)."""
    values = np.where(created_us == NO_TIME, np.iinfo(np.int64).min, created_us).astype("datetime64[us]")
    return pd.DatetimeIndex(values).tz_localize("UTC")
