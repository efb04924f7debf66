"""DVC stage `subset`: raw TWCS csv -> cleaned pairs of the top brands (params: data_seed, subset)."""
from _common import arguments, params, run, write_json

from supportagent.data.pairs import make_subset


def main() -> None:
    a = arguments(__doc__, "raw", "pairs", "metrics")
    p = params()
    pairs, metrics = make_subset(a.raw, p.subset, p.data_seed)
    a.pairs.parent.mkdir(parents=True, exist_ok=True)
    pairs.to_parquet(a.pairs, index=False)
    write_json(a.metrics, metrics)
    print(f"{len(pairs)} pairs from {metrics['rows_read']} rows: {metrics['pairs_per_brand']}")


if __name__ == "__main__":
    run(main)
