"""DVC stage `train@<method>`: fit one adapter on the train split (params: seed, model, rules, retrieval,
train.<method>).

Several GPUs (DDP): `accelerate launch --config_file configs/accelerate/ddp.yaml stages/train.py <method> ...`
with the arguments of `dvc.yaml`."""
import pandas as pd
from _common import arguments, params, run, write_json

from supportagent.config import METHODS
from supportagent.model.training import train


def main() -> None:
    a = arguments(__doc__, "splits", "base", "index", "out", "metrics", "logs", "checkpoints", items=METHODS)
    p = params()
    metrics = train(
        a.item, pd.read_parquet(a.splits / "train.parquet"), pd.read_parquet(a.splits / "val.parquet"),
        base_dir=a.base, index_dir=a.index, out_dir=a.out, params=getattr(p.train, a.item), model_params=p.model,
        rules_params=p.rules, retrieval=p.retrieval, seed=p.seed, log_dir=a.logs, checkpoint_root=a.checkpoints,
    )
    if metrics is not None:  # None on the non-main processes of `accelerate launch`
        write_json(a.metrics, metrics)
        print(metrics)


if __name__ == "__main__":
    run(main)
