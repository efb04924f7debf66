"""The embedding index: examples without leakage, unseen brands, bad indexes, and the retrieval baseline."""
import numpy as np
import pandas as pd
import pytest

from supportagent.config import RetrievalParams
from supportagent.data.retrieval import ExampleIndex, RetrievalBaseline, build_index
from supportagent.errors import RetrievalIndexError
from supportagent.model import models

from conftest import make_tiny_pairs


def _rp(k: int, fields: str, max_chars: int) -> RetrievalParams:
    return RetrievalParams(k=k, fields=fields, max_example_chars=max_chars)


@pytest.fixture(scope="module")
def index(tiny_index):
    return ExampleIndex(tiny_index, make_tiny_pairs(), models.embedder_id())


def test_training_examples_never_come_from_the_pairs_own_conversation(index):
    pairs = make_tiny_pairs()
    examples = index.examples_for_train(pairs, _rp(3, "pair", 200))
    conv = dict(zip(pairs["pair_id"], pairs["conversation_id"]))
    brand = dict(zip(pairs["pair_id"], pairs["brand"]))
    for pid, ex in zip(pairs["pair_id"], examples):
        assert len(ex.pair_ids) == 3 and pid not in ex.pair_ids
        assert all(conv[e] != conv[pid] for e in ex.pair_ids)  # nor its conversation's other pair
        assert all(brand[e] == brand[pid] for e in ex.pair_ids) and ex.source == "same_brand"
    # without the exclusion the nearest pair of a pair is the pair itself: the exclusion is what prevents it
    rows, _ = index.nearest(index.vectors[:1], [pairs["brand"][0]], 1)[0]
    assert int(index.pairs.at[int(rows[0]), "pair_id"]) == pairs["pair_id"][0]


def test_examples_are_nearest_first_and_cut_to_length(index, embedder):
    ex = index.examples(embedder, ["my playlist number 6 vanished, please help"], ["SpotifyCares"], _rp(2, "pair", 20))[
        0
    ]
    assert ex.pair_ids[0] == 6 and all(len(c) <= 21 and len(r) <= 21 for c, r in ex.pairs)
    reply_only = index.examples(embedder, ["playlist 6"], ["SpotifyCares"], _rp(2, "reply", 200))[0]
    assert all(c == "" and r for c, r in reply_only.pairs)


def test_unseen_brand_gets_pairs_of_any_brand_and_says_so(index, embedder):
    ex = index.examples(embedder, ["where is my order?"], ["DeltaAssist"], _rp(2, "pair", 200))[0]
    assert ex.source == "other_brands" and len(ex.pairs) == 2


def test_a_brand_with_only_its_own_conversation_falls_back_to_other_brands(tiny_index, tmp_path, embedder):
    pairs = make_tiny_pairs()
    pairs.loc[pairs["brand"] == "AmazonHelp", "conversation_id"] = 99  # one conversation holds every Amazon pair
    build_index(pairs, embedder, tmp_path, models.embedder_id())
    ex = ExampleIndex(tmp_path, pairs).examples_for_train(
        pairs[pairs["brand"] == "AmazonHelp"].head(2), _rp(2, "pair", 200)
    )
    assert all(e.source == "other_brands" and e.pairs for e in ex)
    assert all(p % 2 == 0 for e in ex for p in e.pair_ids)  # SpotifyCares pairs


def test_k_zero_gives_no_examples(index, embedder):
    assert index.examples(embedder, ["hi"], ["SpotifyCares"], _rp(0, "pair", 100))[0].pairs == ()
    assert index.examples_and_references(embedder, ["hi"], ["SpotifyCares"], _rp(0, "pair", 100), 4) == \
        ([index.examples(embedder, ["hi"], ["SpotifyCares"], _rp(0, "pair", 100))[0]], [[]])


def test_references_are_the_full_replies_of_more_neighbours_than_the_prompt_shows(index, embedder):
    text, rp = ["my playlist number 6 vanished, please help"], _rp(2, "pair", 20)
    (ex,), (refs,) = index.examples_and_references(embedder, text, ["SpotifyCares"], rp, 4)
    (nearest4,) = index.examples(embedder, text, ["SpotifyCares"], _rp(4, "pair", 20))
    assert ex == index.examples(embedder, text, ["SpotifyCares"], rp)[0]  # the prompt: the same 2 examples
    reply = dict(zip(index.pairs["pair_id"], index.pairs["reply"]))
    assert refs == [reply[p] for p in nearest4.pair_ids] and len(refs) == 4  # uncut, nearest first
    assert any(len(r) > 20 for r in refs)
    (_,), (fewer,) = index.examples_and_references(embedder, text, ["SpotifyCares"], rp, 1)
    assert fewer == refs[:1]  # fewer references than examples: the prompt still shows k


def test_an_index_of_another_split_is_refused_with_the_stage_to_rerun(tiny_index):
    other = make_tiny_pairs().head(10)
    with pytest.raises(RetrievalIndexError, match="dvc repro index"):
        ExampleIndex(tiny_index, other)
    with pytest.raises(RetrievalIndexError, match="embedder"):
        ExampleIndex(tiny_index, embedder_id="another-model==1")


def test_a_missing_or_empty_index_says_what_to_run(tmp_path, embedder):
    with pytest.raises(RetrievalIndexError, match="dvc repro index"):
        ExampleIndex(tmp_path / "nope")
    with pytest.raises(RetrievalIndexError, match="train split is empty"):
        build_index(make_tiny_pairs().head(0), embedder, tmp_path / "empty", models.embedder_id())


def test_training_pairs_missing_from_the_index_are_refused(index):
    stray = make_tiny_pairs().head(1).assign(pair_id=1000)
    with pytest.raises(RetrievalIndexError, match="not in the index"):
        index.examples_for_train(stray, _rp(2, "pair", 100))


def test_retrieval_baseline_answers_with_the_nearest_reply_of_the_brand(index, embedder):
    replies = RetrievalBaseline(index, embedder).reply(["SpotifyCares", "AmazonHelp", "Nobody"],
                                                       ["my playlist number 4 vanished, please help",
                                                        "where is my order 7? it is late", "order 7 late"])
    assert replies[0].startswith("Sorry about playlist 4") and "order 7" in replies[1] and replies[2]
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1, atol=1e-4)
    assert isinstance(index.pairs, pd.DataFrame)
