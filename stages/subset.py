"""DVC stage `subset`: raw TWCS csv -> cleaned pairs of the top brands (params: seed, subset)."""
from pathlib import Path

from _common import params, run, write_json

from supportagent.data import make_subset

RAW, OUT, METRICS = Path("data/raw/twcs.csv"), Path("data/interim/pairs.parquet"), Path("metrics/data.json")


def main() -> None:
    p = params()
    pairs, metrics = make_subset(RAW, p.subset, p.seed)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    pairs.to_parquet(OUT, index=False)
    write_json(METRICS, metrics)
    print(f"{len(pairs)} pairs from {metrics['rows_read']} rows: {metrics['pairs_per_brand']}")


if __name__ == "__main__":
    run(main)
