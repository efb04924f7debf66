import pytest

from supportagent.data.overlap import repetition
from supportagent.evaluation.metrics import exact_match, normalise_for_match, rouge_l, score


class FakeEmbedder:
    """Bag-of-letters vectors: deterministic, no model."""

    def encode(self, texts, normalize_embeddings=True, **kw):
        import numpy as np

        out = np.zeros((len(texts), 26))
        for i, t in enumerate(texts):
            for c in t.lower():
                if "a" <= c <= "z":
                    out[i, ord(c) - 97] += 1
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norm == 0, 1, norm)


def test_exact_match_ignores_case_punctuation_handles_and_urls():
    assert normalise_for_match("Hi @Bob! See https://t.co/x.") == normalise_for_match("hi @user see <url>")
    assert exact_match(["Hi there!"], ["hi there"]) == 100.0
    assert exact_match(["Hi there"], ["bye"]) == 0.0


def test_repetition_counts_repeated_trigrams():
    assert repetition("a b c a b c") == pytest.approx(1 / 4)
    assert repetition("please dm us your email") == 0.0
    assert repetition("hi") == 0.0


def test_scores_are_on_a_0_to_100_scale():
    refs = ["Sorry about that, please DM us your email.", "We can help with the order."]
    perfect, _ = score(refs, refs, ["q1", "q2"], FakeEmbedder())
    assert perfect["bleu"] == pytest.approx(100) and perfect["rouge_l"] == pytest.approx(100)
    assert perfect["exact_match"] == 100 and perfect["semantic_similarity"] == pytest.approx(100)
    poor, per = score(["zzz", "qqq qqq qqq qqq"], refs, ["q1", "q2"], FakeEmbedder())
    assert poor["rouge_l"] == 0 and poor["bleu"] < 5 and poor["repetition"] > 0
    assert len(per["rouge_l"]) == 2


def test_rouge_uses_stemming():
    assert rouge_l(["the orders shipped"], ["the order ships"])[0] == pytest.approx(100)


def test_no_predictions_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        score([], [], [], FakeEmbedder())


def test_template_metrics_see_repeated_replies_and_masks():
    from supportagent.evaluation.metrics import distinct_2, distinct_replies

    templates = ["Send us a note at <url>.", "send us a note at <url>", "Sorry! DM us.", "Happy to help."]
    assert distinct_replies(templates) == 75.0  # case and punctuation do not make a template new
    assert distinct_2(["a b c", "a b d"]) == 75.0 and distinct_2([]) == 0.0


def test_placeholder_rate_counts_served_replies(embedder):
    from supportagent.evaluation.metrics import score

    preds = ["DM us at <url>", "All fixed!"]
    corpus, _ = score(preds, ["DM us <url>", "Fixed."], ["help", "help"], embedder)
    assert corpus["placeholder_rate"] == 50.0
    corpus, _ = score(
        preds, ["DM us <url>", "Fixed."], ["help", "help"], embedder, served=["DM us at https://x", "All fixed!"]
    )
    assert corpus["placeholder_rate"] == 0.0 and corpus["rouge_l"] > 0
