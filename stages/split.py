"""DVC stage `split`: pairs -> train/val/test, by brand and conversation (params: data_seed, split)."""
import pandas as pd
from _common import arguments, params, run, write_json

from supportagent.data.splitting import split_pairs


def main() -> None:
    a = arguments(__doc__, "pairs", "out", "metrics")
    p = params()
    splits = split_pairs(pd.read_parquet(a.pairs), p.split, p.data_seed)
    a.out.mkdir(parents=True, exist_ok=True)
    for name, df in splits.items():
        df.to_parquet(a.out / f"{name}.parquet", index=False)
    write_json(a.metrics, {name: {"pairs": len(df), "conversations": int(df["conversation_id"].nunique()),
                                  "per_brand": {b: int(n) for b, n in df["brand"].value_counts().sort_index().items()}}
                           for name, df in splits.items()})
    print({name: len(df) for name, df in splits.items()})


if __name__ == "__main__":
    run(main)
