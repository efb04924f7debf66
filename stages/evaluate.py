"""DVC stage `evaluate@<system>`: replies and metrics of one system on the test split (params: seed, model, rules, evaluate, retrieval, brands)."""
import sys
from pathlib import Path

import pandas as pd
from _common import params, run, write_json

from supportagent.config import METHODS, SYSTEMS
from supportagent.evaluation import evaluate_system
from supportagent.predictions import write_predictions


def main() -> None:
    system = sys.argv[1] if len(sys.argv) > 1 else ""
    if system not in SYSTEMS:
        sys.exit(f"usage: python stages/evaluate.py {{{'|'.join(SYSTEMS)}}}")
    p = params()
    data = Path("data/processed")
    metrics, rows = evaluate_system(system, p, pd.read_parquet(data / "test.parquet"), pd.read_parquet(data / "train.parquet"),
                                    base_dir="models/base", index_dir="models/index",
                                    adapter_dir=f"models/{system}" if system in METHODS else None)
    write_predictions(f"reports/predictions/{system}.jsonl", rows, base_dir="models/base")
    write_json(f"metrics/eval/{system}.json", metrics)
    print({k: v for k, v in metrics.items() if k != "per_brand"})


if __name__ == "__main__":
    run(main)
