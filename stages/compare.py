"""DVC stage `compare`: comparison metrics, plot data and PNGs, review samples, served metrics (params: seed, method, evaluate, retrieval)."""
from pathlib import Path

from _common import params, run, write_json

from supportagent.config import SYSTEMS
from supportagent.predictions import read_predictions
from supportagent.report import comparison, load_all, write_plot_data, write_pngs, write_samples


def main() -> None:
    p = params()
    evals, trains = load_all()
    write_json("metrics/comparison.json", comparison(evals, trains, p.method, p.retrieval.model_dump()))
    served = {k: v for k, v in evals[p.method].items() if k != "per_brand"}
    write_json("metrics/served.json", {"method": p.method, **served,
                                       "train_seconds": trains[p.method]["train_seconds"]})
    write_plot_data(evals, Path("plots/compare"))
    write_pngs(evals, Path("plots/train"), Path("plots/png"))
    preds = {s: read_predictions(f"reports/predictions/{s}.jsonl", base_dir="models/base") for s in SYSTEMS}
    write_samples(preds, p.evaluate.review_samples, p.seed, Path("reports/samples.md"), p.rules)
    print(f"served: {p.method}; best ROUGE-L: {max(SYSTEMS, key=lambda s: evals[s]['rouge_l'])}")


if __name__ == "__main__":
    run(main)
