"""Ratings as data: atomic appends, the summary (intervals, win rates, stale ratings), n = 0."""
import math
from multiprocessing import Pool

import pandas as pd
import pytest

from supportagent.evaluation.review import COLUMNS, ReviewSet, append_ratings, plot_rows, read_ratings, summarise
from test_server import write_predictions


def _row(reviewer, item, system, h, t, c, preferred, sha):
    return {"time": "2026-11-26T12:00:00", "reviewer": reviewer, "item": item, "system": system, "helpfulness": h,
            "tone": t, "coherence": c, "preferred": preferred, "predictions_sha256": sha}


def _append(args):
    path, k = args
    rows = [_row(f"r{k}", i, s, 3, 3, 3, "tie", "x" * 64) for i in range(20) for s in ("a", "b")]
    for i in range(0, len(rows), 2):
        append_ratings(path, rows[i:i + 2])


def test_concurrent_appends_never_interleave(tmp_path):
    path = tmp_path / "ratings.csv"
    with Pool(4) as pool:
        pool.map(_append, [(path, k) for k in range(4)])
    df = read_ratings(path)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and lines.count(lines[0]) == 1  # one header
    assert len(df) == 4 * 40 and df.groupby("reviewer").size().tolist() == [40] * 4
    assert (df.groupby(["reviewer", "item"])["system"].apply(list) == pd.Series([["a", "b"]] * 80).values).all()


def test_summary_means_intervals_win_rates_and_stale_ratings():
    hashes = {"qlora": "h1", "prompt_tuning": "h2"}
    rows = []
    for item, (q, p, pref) in enumerate([(5, 3, "qlora"), (4, 2, "qlora"), (3, 3, "tie"), (2, 4, "prompt_tuning")]):
        rows += [
            _row("ana", item, "qlora", q, q, q, pref, "h1"),
            _row("ana", item, "prompt_tuning", p, p, p, pref, "h2"),
        ]
    rows += [_row("bo", 0, "qlora", 1, 1, 1, "prompt_tuning", "OLD"), _row("bo", 0, "prompt_tuning", 5, 5, 5,
                                                                          "prompt_tuning", "h2")]
    s = summarise(pd.DataFrame(rows, columns=COLUMNS), hashes)
    assert s["stale_ratings"] == 1 and s["ratings"] == 9
    q = s["systems"]["qlora"]["helpfulness"]
    assert s["systems"]["qlora"]["n"] == 4 and q["mean"] == 3.5
    half = 3.182446 * pd.Series([5, 4, 3, 2]).std() / 2  # t(0.975, 3) * sd / sqrt(4)
    assert math.isclose(q["ci95_high"] - q["mean"], half, abs_tol=1e-3)
    # bo's item shows only prompt_tuning now (his qlora rating is stale): not a comparison
    assert s["win_rate"]["qlora_vs_prompt_tuning"] == {"n": 4, "rate": round((2 + 0.5) / 4, 3)}
    assert s["win_rate"]["prompt_tuning_vs_qlora"] == {"n": 4, "rate": round((1 + 0.5) / 4, 3)}


def test_a_later_rating_of_the_same_item_replaces_the_earlier_one():
    rows = [_row("ana", 0, "a", 1, 1, 1, "b", "h"), _row("ana", 0, "b", 2, 2, 2, "b", "h"),
            _row("ana", 0, "a", 5, 5, 5, "a", "h"), _row("ana", 0, "b", 2, 2, 2, "a", "h")]
    s = summarise(pd.DataFrame(rows, columns=COLUMNS), {"a": "h", "b": "h"})
    assert s["systems"]["a"]["tone"]["mean"] == 5 and s["win_rate"]["a_vs_b"] == {"n": 1, "rate": 1.0}


def test_no_ratings_give_an_empty_summary_and_a_plot_that_says_so(tmp_path):
    s = summarise(read_ratings(tmp_path / "missing.csv"), {"qlora": "h1", "prompt_tuning": "h2"})
    assert s["ratings"] == 0 and s["systems"]["qlora"]["n"] == 0 and s["systems"]["qlora"]["tone"]["mean"] is None
    assert s["win_rate"]["qlora_vs_prompt_tuning"] == {"n": 0, "rate": None}
    rows = plot_rows(s)
    assert len(rows) == 6 and rows["mean"].isna().all()


def test_a_file_that_is_not_a_ratings_file_is_refused(tmp_path):
    (tmp_path / "r.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a ratings file"):
        read_ratings(tmp_path / "r.csv")


def test_the_order_of_replies_differs_between_items_and_is_fixed_per_reviewer(tmp_path):
    write_predictions(tmp_path / "p", n=12)
    review = ReviewSet(tmp_path / "p", ["qlora", "prompt_tuning"], n=12, seed=0)
    orders = [tuple(review.order("ana", it.pair_id)) for it in review.items]
    assert len(set(orders)) == 2  # both orders occur
    assert orders == [tuple(review.order("ana", it.pair_id)) for it in review.items]
    with pytest.raises(ValueError, match="at least two"):
        ReviewSet(tmp_path / "p", ["qlora"], n=3, seed=0)


def test_a_reply_two_systems_sent_is_shown_and_rated_once_for_both(tmp_path):
    import json

    write_predictions(tmp_path, systems=("qlora", "prompt_tuning", "retrieval"), n=2)
    path = tmp_path / "prompt_tuning.jsonl"  # prompt tuning sends retrieval's past reply to message 0
    lines = path.read_text().splitlines()
    row = json.loads(lines[1])
    row["served"] = row["prediction"] = "retrieval says 0"
    path.write_text("\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n")
    review = ReviewSet(tmp_path, ["qlora", "prompt_tuning", "retrieval"], n=2, seed=1)
    slots = review.slots("ana", 0)
    assert sorted(map(sorted, slots)) == [["prompt_tuning", "retrieval"], ["qlora"]]
    assert len(review.slots("ana", 1)) == 3  # distinct replies: one each
    shared = next(i for i, s in enumerate(slots) if len(s) == 2)
    scores = [{"helpfulness": 4 if i == shared else 2, "tone": 4, "coherence": 4} for i in range(2)]
    rows = pd.DataFrame(review.rows("ana", 0, scores, shared), columns=COLUMNS)
    assert len(rows) == 3 and set(rows.loc[rows["helpfulness"] == 4, "system"]) == {"prompt_tuning", "retrieval"}
    with pytest.raises(ValueError, match="shows 2 replies"):
        review.rows("ana", 0, scores + scores[:1], 0)
    s = summarise(rows, review.hashes)
    # the preferred reply was both prompt tuning's and retrieval's: a tie between them, a win over qlora for each
    assert s["win_rate"]["prompt_tuning_vs_retrieval"] == {"n": 1, "rate": 0.5}
    assert s["win_rate"]["retrieval_vs_qlora"] == s["win_rate"]["prompt_tuning_vs_qlora"] == {"n": 1, "rate": 1.0}
