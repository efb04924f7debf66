import hashlib

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from supportagent.config import SplitParams, SubsetParams
from supportagent.data.cleaning import clean_text, clean_texts
from supportagent.data.pairs import DataError, make_subset
from supportagent.data.splitting import split_pairs

from conftest import ROOT

THREADS = ROOT / "tests/fixtures/threads.csv"
# the pairs the pandas reader (which held the whole file in memory) built from the bundled sample with the default
# params and with no per-brand cap, at f202ca3: sha256 of `pairs.to_csv(index=False)`, first 16 hex digits
SAMPLE_PAIRS_SHA256 = {300: "1ef54250479615fd", 0: "f4c87159d0c8183d"}
LOOSE = SubsetParams(top_n_brands=5, max_pairs_per_brand=0, min_customer_chars=3, min_reply_chars=5)


@pytest.fixture
def pairs():
    return make_subset(THREADS, LOOSE, seed=1)


def test_earliest_reply_is_kept_and_later_ones_dropped(pairs):
    df, metrics = pairs
    first = df[df.pair_id == 1].iloc[0]
    assert first.reply == "Sorry about that! Can you try logging out and back in?"  # not the 22:40 follow-up
    assert metrics["dropped"]["later_reply_to_same_tweet"] == 1


def test_reply_without_customer_tweet_is_counted(pairs):
    df, metrics = pairs
    assert 999 not in set(df.pair_id)
    assert metrics["dropped"]["reply_without_customer_tweet"] == 1


def test_follow_up_keeps_previous_turn_as_context_and_same_conversation(pairs):
    df, _ = pairs
    follow = df[df.pair_id == 4].iloc[0]
    assert follow.context == "Sorry about that! Can you try logging out and back in?"
    assert follow.conversation_id == df[df.pair_id == 1].iloc[0].conversation_id == 1


def test_cleaning_mentions_urls_entities_signatures(pairs):
    df, _ = pairs
    by_id = df.set_index("pair_id")
    assert by_id.loc[1, "customer"] == "my playlist disappeared after the update & I'm sad"
    assert by_id.loc[4, "customer"] == "nope still gone. see <url> @user has the same"
    assert by_id.loc[4, "reply"].endswith("we'll restore it.")  # "-Becky" removed
    assert by_id.loc[6, "reply"].endswith("by DM?")  # "^PL" removed
    assert "\n" not in by_id.loc[11, "customer"]


def test_short_texts_malformed_rows_and_duplicates_are_counted(pairs):
    df, metrics = pairs
    assert metrics["dropped"]["malformed_field"] == 1  # inbound "maybe"
    assert metrics["dropped"]["malformed_line"] == 1  # 9 fields
    assert metrics["dropped"]["duplicate_pair"] == 1  # pair 13 repeats pair 11 after cleaning
    assert metrics["rows_read"] == 16


def test_default_min_length_drops_ok(tmp_path):
    _, metrics = make_subset(THREADS, SubsetParams(max_pairs_per_brand=0), seed=1)
    assert metrics["dropped"]["customer_too_short"] >= 1  # "ok"


def test_signature_regex_keeps_normal_endings():
    assert clean_text("We can help with that - DM us", strip_signatures=True) == "We can help with that - DM us"
    assert clean_text("Happy to help! ^JK", strip_signatures=True) == "Happy to help!"
    assert clean_text("Glad it works now -AA", strip_signatures=True) == "Glad it works now"


def test_missing_file_names_dvc_pull(tmp_path):
    with pytest.raises(DataError, match="dvc pull"):
        make_subset(tmp_path / "twcs.csv", LOOSE, 1)


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "twcs.csv"
    path.write_text("tweet_id,author_id,text\n1,a,b\n")
    with pytest.raises(DataError, match="inbound"):
        make_subset(path, LOOSE, 1)


def test_a_raw_file_that_is_not_utf8_gets_a_message(tmp_path):
    path = tmp_path / "twcs.csv"
    path.write_bytes(THREADS.read_bytes() + "1,a,True,x,caf\xe9 ol\xe9,,\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text.*iconv"):
        make_subset(path, LOOSE, 1)


def test_filter_leaving_nothing_reports_counts():
    with pytest.raises(DataError, match="dropped per reason.*reply_too_short"):
        make_subset(THREADS, LOOSE.model_copy(update={"min_reply_chars": 500, "max_reply_chars": 600}), 1)


def test_brand_cap_keeps_small_brands(pairs):
    df, _ = make_subset(THREADS, LOOSE.model_copy(update={"max_pairs_per_brand": 1}), 1)
    assert df.brand.value_counts().to_dict() == {"AmazonHelp": 1, "SpotifyCares": 1}


def test_explicit_brand_list_overrides_and_unknown_brand_fails():
    df, _ = make_subset(THREADS, LOOSE.model_copy(update={"brands": ["SpotifyCares"]}), 1)
    assert set(df.brand) == {"SpotifyCares"}
    with pytest.raises(DataError, match="Nike"):
        make_subset(THREADS, LOOSE.model_copy(update={"brands": ["Nike"]}), 1)


def test_non_latin_pairs_are_dropped(tmp_path):
    text = (
        THREADS.read_text()
        + "17,400001,True,Wed Nov 01 16:00:00 +0000 2017,"
        "@AppleSupport 電話で対応してもらいましたが改良されませんでした,18,\n"
        "18,AppleSupport,False,Wed Nov 01 16:05:00 +0000 2017,"
        "@400001 カスタマーサービスにてお問い合わせ済みとのことで,,17\n"
    )
    (tmp_path / "t.csv").write_text(text)
    _, metrics = make_subset(tmp_path / "t.csv", LOOSE, 1)
    assert metrics["dropped"]["non_latin_text"] == 1


def _synthetic_pairs(conversations: list[int], brands: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"pair_id": range(len(conversations)), "conversation_id": conversations,
                         "brand": [f"b{b}" for b in brands], "customer": "x", "reply": "y", "context": ""})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3)), min_size=1, max_size=200), st.integers(0, 10))
def test_splits_never_share_a_conversation(rows, seed):
    df = _synthetic_pairs([c for c, _ in rows], [b for _, b in rows])
    splits = split_pairs(df, SplitParams(), seed)
    seen = [set(s.conversation_id) for s in splits.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert sum(len(s) for s in splits.values()) == len(df)


def test_split_is_deterministic_and_close_to_80_10_10():
    df = _synthetic_pairs(list(range(1000)), [i % 5 for i in range(1000)])
    a, b = split_pairs(df, SplitParams(), 3), split_pairs(df, SplitParams(), 3)
    assert all(a[k].pair_id.tolist() == b[k].pair_id.tolist() for k in a)
    assert 780 <= len(a["train"]) <= 820 and 80 <= len(a["test"]) <= 120
    assert set(a["test"].brand) == {f"b{i}" for i in range(5)}


def test_empty_pairs_cannot_be_split():
    with pytest.raises(DataError, match="subset"):
        split_pairs(_synthetic_pairs([], []), SplitParams(), 1)


@pytest.mark.parametrize("raw, clean", [
    ("@AmazonHelp @x my order\u00a0is  late", "my order is late"),  # Unicode space, leading mentions
    ("thanks @José and@me, see www.EXAMPLE.com/a?b", "thanks @user and@me, see <url>"),  # handle glued to a word stays
    ("a @b@c", "a @user@c"),
    ("line\u2028break\x85here &amp; &lt;3", "line break here & <3"),
    ("Sorry about that! ^JK", "Sorry about that!"),
    ("We can help - Dan C", "We can help"),
])
def test_rules_match_pythons_unicode_semantics(raw, clean):
    """The RE2 patterns (run by pyarrow) must behave like Python's Unicode \\s and \\w."""
    assert clean_text(raw, strip_signatures=True) == clean


_PIECES = st.sampled_from(
    [
        "@",
        "@AmazonHelp",
        "@José",
        " ",
        "  ",
        "\u00a0",
        "\u2028",
        "\x85",
        "\r",
        "\n",
        "\t",
        "a",
        "Zé",
        "_",
        "7",
        "Ⅻ",
        "½",
        "&amp;",
        "&lt;3",
        "&",
        "https://t.co/x",
        "www.A.com/b",
        "HTTP://",
        "^JK",
        " - AA",
        "-Becky",
        " ~MR",
        "/TJ",
        " *CL",
        " –Dan C",
        ".",
        "!",
        ":",
        ",",
        "é",
        "日本",
        "😭",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=14).map("".join), st.booleans())
def test_one_message_is_cleaned_as_its_column_is(text, strip_signatures):
    """Serving cleans a message alone on the `regex` module, the data stages whole columns on RE2 (pyarrow): the same
    patterns on two engines must give the same text, or the model would see messages unlike its training data."""
    assert clean_text(text, strip_signatures) == clean_texts(pd.Series([text]), strip_signatures).iloc[0]


def test_the_fixture_threads_clean_alike_on_both_engines():
    texts = pd.read_csv(THREADS, dtype=str, on_bad_lines="skip", keep_default_na=False)["text"]
    for strip in (False, True):
        assert [clean_text(t, strip) for t in texts] == clean_texts(texts, strip).tolist()


def test_the_split_stage_draws_with_data_seed_not_the_training_seed(tmp_path):
    """`dvc exp run -S seed=43` is another training run on the same data: the split stage reads `data_seed` (as
    does `subset`'s per-brand cap), so another `seed` leaves the splits alone and another `data_seed` redraws them."""
    import os
    import subprocess
    import sys

    import yaml

    from conftest import ROOT

    _synthetic_pairs(list(range(200)), [i % 4 for i in range(200)]).to_parquet(tmp_path / "pairs.parquet")
    from supportagent.config import read_raw

    base = read_raw(ROOT / "params.yaml")

    def split(**changes) -> list[int]:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({**base, **changes}))
        out = tmp_path / "-".join(f"{k}{v}" for k, v in changes.items())
        env = {**os.environ, "SUPPORTAGENT_PARAMS": str(tmp_path / "params.yaml")}
        subprocess.run([sys.executable, str(ROOT / "stages/split.py"), "--pairs", str(tmp_path / "pairs.parquet"),
                        "--out", str(out), "--metrics", str(out / "split.json")], env=env, check=True, cwd=tmp_path)
        return pd.read_parquet(out / "test.parquet")["pair_id"].tolist()

    assert split(seed=43) == split(seed=42)
    assert split(data_seed=43) != split(data_seed=42)


def _bundled_sample():
    """data/raw/twcs.csv, or (on a clone that has not pulled it) the object in the DVC remote its .dvc file names."""
    if (ROOT / "data/raw/twcs.csv").exists():
        return ROOT / "data/raw/twcs.csv"
    md5 = yaml.safe_load((ROOT / "data/raw/twcs.csv.dvc").read_text())["outs"][0]["md5"]
    stored = ROOT.parent / "shared/dvc-store/files/md5" / md5[:2] / md5[2:]
    if not stored.exists():
        pytest.skip("the bundled TWCS sample is neither pulled (`make data`) nor in ../shared/dvc-store")
    return stored


def _sha(pairs: pd.DataFrame) -> str:
    return hashlib.sha256(pairs.to_csv(index=False).encode()).hexdigest()[:16]


@pytest.mark.parametrize("cap", [300, 0])
def test_streaming_gives_the_pairs_of_the_in_memory_reader_on_the_bundled_sample(params, cap):
    pairs, metrics = make_subset(_bundled_sample(), params.subset.model_copy(update={"max_pairs_per_brand": cap}),
                                 params.data_seed, block_bytes=1 << 20)  # ten batches per pass
    assert metrics["rows_read"] == 58041
    assert _sha(pairs) == SAMPLE_PAIRS_SHA256[cap]


def test_pairs_do_not_depend_on_where_the_batches_break():
    whole, m_whole = make_subset(THREADS, LOOSE, seed=1)
    small, m_small = make_subset(THREADS, LOOSE, seed=1, block_bytes=300)  # a few rows per batch
    pd.testing.assert_frame_equal(whole, small)
    assert m_whole == m_small


def test_a_row_broken_by_an_unquoted_carriage_return_is_dropped_and_counted(tmp_path):
    text = THREADS.read_text() + (
        "20,400002,True,Wed Nov 01 16:00:00 +0000 2017,@SpotifyCares my album\ris gone again since the update,21,\n"
        "21,SpotifyCares,False,Wed Nov 01 16:05:00 +0000 2017,@400002 Sorry! Which album is it?,,20\n")
    (tmp_path / "t.csv").write_text(text, newline="")
    df, metrics = make_subset(tmp_path / "t.csv", LOOSE, 1)
    assert metrics["dropped"]["malformed_line"] == 1 + 2  # the fixture's own, and both halves of the broken row
    assert metrics["dropped"]["reply_without_customer_tweet"] == 1 + 1  # the reply to it has no customer tweet
    assert 20 not in set(df.pair_id) and len(df) == len(make_subset(THREADS, LOOSE, 1)[0])

