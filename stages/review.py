"""DVC stage `review`: the blind-review ratings -> metrics/review.json and plots/review/scores.csv (params: review).
Ratings made against predictions that have changed since are counted as stale and left out."""
from pathlib import Path

from _common import params, run, write_json

from supportagent.review import plot_rows, prediction_hashes, read_ratings, summarise


def main() -> None:
    p = params()
    summary = summarise(read_ratings("reports/review/ratings.csv"),
                        prediction_hashes("reports/predictions", p.review.systems))
    write_json("metrics/review.json", summary)
    Path("plots/review").mkdir(parents=True, exist_ok=True)
    plot_rows(summary).to_csv("plots/review/scores.csv", index=False)
    print(f"review: {summary['ratings']} ratings by {summary['reviewers']} reviewers "
          f"({summary['stale_ratings']} stale, not used)")


if __name__ == "__main__":
    run(main)
