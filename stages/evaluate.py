"""DVC stage `evaluate@<system>`: replies and metrics of one system on the test split (params: seed, model, rules,
evaluate, retrieval, brands). `--model`: what the system adds to the base (its adapter, or the index)."""
import pandas as pd
from _common import arguments, params, run, write_json

from supportagent.config import METHODS, SYSTEMS
from supportagent.evaluation.evaluate import evaluate_system
from supportagent.evaluation.predictions import write_predictions


def main() -> None:
    a = arguments(__doc__, "splits", "base", "index", "model", "predictions", "metrics", items=SYSTEMS)
    p = params()
    metrics, rows = evaluate_system(a.item, p, pd.read_parquet(a.splits / "test.parquet"),
                                    pd.read_parquet(a.splits / "train.parquet"), base_dir=a.base, index_dir=a.index,
                                    adapter_dir=a.model if a.item in METHODS else None)
    write_predictions(a.predictions, rows, base_dir=a.base)
    write_json(a.metrics, metrics)
    print({k: v for k, v in metrics.items() if k != "per_brand"})


if __name__ == "__main__":
    run(main)
