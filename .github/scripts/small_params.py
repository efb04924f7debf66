"""Shrink params.yaml in place to the small configuration used for pull-request metrics diffs."""
import yaml

SMALL = {
    "subset": {"max_pairs_per_brand": 40},
    "train": {"qlora": {"max_steps": 10, "max_train_pairs": 80}, "prompt_tuning": {"max_steps": 10, "max_train_pairs": 80}},
    "evaluate": {"test_size": 16, "latency_samples": 2},
    "review": {"samples": 5},
}


def merge(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict):
            merge(dst.setdefault(k, {}), v)
        else:
            dst[k] = v


params = yaml.safe_load(open("params.yaml"))
merge(params, SMALL)
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
