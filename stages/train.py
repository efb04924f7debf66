"""DVC stage `train@<method>`: fit one adapter on the train split (params: seed, model, rules, retrieval, train.<method>).

Several GPUs (DDP): `accelerate launch --config_file configs/accelerate/ddp.yaml stages/train.py <method>`."""
import sys
from pathlib import Path

import pandas as pd
from _common import params, run, write_json

from supportagent.config import METHODS
from supportagent.training import train


def main() -> None:
    method = sys.argv[1] if len(sys.argv) > 1 else ""
    if method not in METHODS:
        sys.exit(f"usage: python stages/train.py {{{'|'.join(METHODS)}}}")
    p = params()
    data = Path("data/processed")
    metrics = train(
        method, pd.read_parquet(data / "train.parquet"), pd.read_parquet(data / "val.parquet"),
        base_dir="models/base", index_dir="models/index", out_dir=f"models/{method}", params=getattr(p.train, method),
        model_params=p.model, rules_params=p.rules, retrieval=p.retrieval, seed=p.seed, plots_dir=f"plots/train/{method}",
    )
    if metrics is not None:  # None on the non-main processes of `accelerate launch`
        write_json(f"metrics/train/{method}.json", metrics)
        print(metrics)


if __name__ == "__main__":
    run(main)
