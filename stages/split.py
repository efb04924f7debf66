"""DVC stage `split`: pairs -> train/val/test, by brand and conversation (params: seed, split)."""
from pathlib import Path

import pandas as pd
from _common import params, run, write_json

from supportagent.data import split_pairs

PAIRS, OUT, METRICS = Path("data/interim/pairs.parquet"), Path("data/processed"), Path("metrics/split.json")


def main() -> None:
    p = params()
    splits = split_pairs(pd.read_parquet(PAIRS), p.split, p.seed)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, df in splits.items():
        df.to_parquet(OUT / f"{name}.parquet", index=False)
    write_json(METRICS, {name: {"pairs": len(df), "conversations": int(df["conversation_id"].nunique()),
                                "per_brand": {b: int(n) for b, n in df["brand"].value_counts().sort_index().items()}}
                         for name, df in splits.items()})
    print({name: len(df) for name, df in splits.items()})


if __name__ == "__main__":
    run(main)
