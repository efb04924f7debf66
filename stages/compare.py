"""DVC stage `compare`: decision metrics, the data of the top-level plots, review samples (params: seed, method,
retrieval, review.samples)."""
from pathlib import Path

from _common import params, run, write_json

from supportagent.config import SYSTEMS
from supportagent.plots import write_plot_data
from supportagent.predictions import read_predictions
from supportagent.report import comparison, load_all, served_metrics, write_samples


def main() -> None:
    p = params()
    evals, trains = load_all()
    write_json("metrics/comparison.json", comparison(evals, trains, p.method, p.retrieval.model_dump()))
    write_json("metrics/served.json", served_metrics(evals, trains, p.method))
    write_plot_data(evals, trains, Path("plots/train"), Path("plots/compare"))
    preds = {s: read_predictions(f"reports/predictions/{s}.jsonl", base_dir="models/base") for s in SYSTEMS}
    write_samples(preds, p.review.samples, p.seed, Path("reports/samples.md"))
    print(f"served: {p.method}; best ROUGE-L: {max(SYSTEMS, key=lambda s: evals[s]['rouge_l'])}")


if __name__ == "__main__":
    run(main)
