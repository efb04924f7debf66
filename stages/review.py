"""DVC stage `review`: the blind-review ratings -> the review metrics and plot data (params: review).
Ratings made against predictions that have changed since are counted as stale and left out."""
from _common import arguments, params, run, write_json

from supportagent.evaluation.review import plot_rows, prediction_hashes, read_ratings, summarise


def main() -> None:
    a = arguments(__doc__, "ratings", "predictions", "metrics", "plots")
    p = params()
    summary = summarise(read_ratings(a.ratings), prediction_hashes(a.predictions, p.review.systems))
    write_json(a.metrics, summary)
    a.plots.mkdir(parents=True, exist_ok=True)
    plot_rows(summary).to_csv(a.plots / "scores.csv", index=False)
    print(f"review: {summary['ratings']} ratings by {summary['reviewers']} reviewers "
          f"({summary['stale_ratings']} stale, not used)")


if __name__ == "__main__":
    run(main)
