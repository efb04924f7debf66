"""The lead over retrieval in metrics/comparison.json: paired by test message, with its 95% interval."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from supportagent.config import SYSTEMS
from supportagent.evaluation.comparison import lead_over_retrieval


def _scored(pair_ids, rouge, semantic):
    return pd.DataFrame({"pair_id": pair_ids, "rouge_l": rouge, "semantic_similarity": semantic})


def test_the_lead_is_paired_by_message_whatever_the_row_order():
    rng = np.random.default_rng(0)
    ids = np.arange(40)
    base = rng.uniform(0, 60, (2, 40))
    other = base + rng.normal(3, 8, (2, 40))
    preds = {s: _scored(ids, *base) for s in SYSTEMS}
    shuffled = rng.permutation(40)
    preds["qlora"] = _scored(ids[shuffled], other[0][shuffled], other[1][shuffled])
    lead = lead_over_retrieval(preds)
    assert set(lead) == set(SYSTEMS) - {"retrieval"}
    for k, (a, b) in (("rouge_l", (other[0], base[0])), ("semantic_similarity", (other[1], base[1]))):
        low, high = stats.ttest_rel(a, b).confidence_interval(0.95)
        assert lead["qlora"][k]["mean"] == round(float(np.mean(a - b)), 2)
        assert (lead["qlora"][k]["ci95_low"], lead["qlora"][k]["ci95_high"]) == (round(low, 2), round(high, 2))
    # a system with the baseline's scores leads by nothing, with no room either side
    assert lead["prompt_tuning"]["rouge_l"] == {"mean": 0.0, "ci95_low": 0.0, "ci95_high": 0.0}
    assert lead_over_retrieval({"retrieval": preds["retrieval"], "qlora": preds["qlora"]}, ["qlora"]) == {
        "qlora": lead["qlora"]}  # one system's (a seed run's)


def test_systems_scored_on_different_messages_are_refused():
    preds = {s: _scored([1, 2, 3], [10, 20, 30], [1, 2, 3]) for s in SYSTEMS}
    preds["zero_shot"] = _scored([1, 2, 4], [10, 20, 30], [1, 2, 3])
    with pytest.raises(ValueError, match="different test messages.*dvc repro"):
        lead_over_retrieval(preds)
