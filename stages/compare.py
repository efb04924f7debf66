"""DVC stage `compare`: decision metrics, the output checks on the real replies, the data of the top-level plots,
review samples (params: seed, method, rules, brands, retrieval, review.samples)."""
from _common import arguments, params, run, write_json

from supportagent.config import METHODS, SYSTEMS
from supportagent.evaluation.comparison import comparison, load_all, real_replies, served_metrics
from supportagent.evaluation.predictions import read_predictions
from supportagent.reporting.plots import write_plot_data
from supportagent.reporting.samples import write_samples


def main() -> None:
    a = arguments(__doc__, "metrics", "train_logs", "predictions", "base", "plot_data", "samples")
    p = params()
    evals, trains = load_all(a.metrics)
    preds = {s: read_predictions(a.predictions / f"{s}.jsonl", base_dir=a.base) for s in SYSTEMS}
    real = real_replies(preds["retrieval"], p)
    write_json(
        a.metrics / "comparison.json", comparison(evals, trains, p.method, p.retrieval.model_dump(), preds, real)
    )
    write_json(a.metrics / "served.json", served_metrics(evals, trains, p.method))
    write_plot_data(evals, trains, {m: a.train_logs / m for m in METHODS}, a.plot_data, real["flag_rate"])
    write_samples(preds, p.review.samples, p.seed, a.samples)
    print(f"served: {p.method}; best ROUGE-L: {max(SYSTEMS, key=lambda s: evals[s]['rouge_l'])}")


if __name__ == "__main__":
    run(main)
