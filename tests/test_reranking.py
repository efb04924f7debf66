"""Sampled candidates and their reranking (`evaluate.candidates`): the sampler reads each prompt once and decodes
what the model would, and the consensus picks the reply its peers and the retrieved replies agree with."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import tiny_system
from supportagent.data.overlap import lcs_f1, positions
from supportagent.inference.generation import SAMPLE_GROUP, Generator, Rerank
from supportagent.inference.reranking import (Similarities, agreement, choose, consensus, pool_rankings, rank,
                                              similarities)
from supportagent.model import models

pytestmark = pytest.mark.numeric  # run again under the other dtype by `make test-dtypes`

MESSAGES = ["hi", "where is my order, it is very late now", "my playlist vanished after the update",
            "I was charged twice for one ride, refund please", "the app crashes when I open it",
            "can I change the delivery address of my parcel?"]


class EndsAt:
    """The tokenizer with another end token: a random model then ends some replies early."""

    def __init__(self, tokenizer, eos: int):
        self._tokenizer, self.eos_token_id = tokenizer, eos

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)




@pytest.mark.parametrize("engine", ["eager", "compiled"])
@pytest.mark.parametrize("system", ["base", "soft_prompt"])
def test_sampling_near_zero_temperature_decodes_the_greedy_replies(params, tiny_base, tokenizer, system, engine):
    """Prompts of different lengths in one left-padded batch (eager: each read once and its cache shared by its 3
    candidates, replies that end leaving the batch; compiled: the 6 prompts one group padded to SAMPLE_GROUP, every
    candidate a row of the static cache, longer than prompt and reply). At a temperature near 0 every copy must decode
    the greedy reply token for token: a wrong position, mask or cache row would change them."""
    model = tiny_system(params, tiny_base, system)
    prompts = [tokenizer(m)["input_ids"] for m in MESSAGES]
    first = Generator(model, tokenizer, max_new_tokens=12, repetition_penalty=1.0).generate(prompts)
    # the end token becomes a token some greedy replies write midway, so that those replies stop early
    eos = next(t for r in first for t in r.token_ids[2:6] if sum(t in x.token_ids for x in first) < len(first))
    gen = Generator(model, EndsAt(tokenizer, eos), max_new_tokens=12, repetition_penalty=1.0, engine=engine)
    greedy = gen.generate(prompts)
    lengths = {len(r.token_ids) for r in greedy}
    assert min(lengths) < 12 and max(lengths) == 12  # some replies ended early, some ran to the limit
    draws = torch.Generator().manual_seed(0)
    sampled = gen.sample(prompts, 3, temperature=1e-4, top_p=1.0, generator=draws)
    assert [len(s) for s in sampled] == [3] * len(prompts)
    for g, copies in zip(greedy, sampled):
        assert all(c.token_ids == g.token_ids and c.truncated == g.truncated for c in copies)


@pytest.mark.parametrize("engine", ["eager", "compiled"])
@pytest.mark.parametrize("system", ["base", "soft_prompt"])
@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_the_greedy_reply_decoded_among_the_samples_is_the_greedy_reply(params, tiny_base, tokenizer, system, penalty,
                                                                        engine):
    """With candidates the greedy reply is decoded in the sampling batch: at a high temperature its row must still
    take the likeliest token after the repetition penalty, as generate() does, while the other rows sample."""
    model = tiny_system(params, tiny_base, system)
    prompts = [tokenizer(m)["input_ids"] for m in MESSAGES]
    gen = Generator(model, tokenizer, max_new_tokens=12, repetition_penalty=penalty, engine=engine)
    pools = gen.sample(prompts, 4, temperature=2.0, top_p=1.0, generator=torch.Generator().manual_seed(0),
                       greedy_first=True)
    assert [p[0].token_ids for p in pools] == [g.token_ids for g in gen.generate(prompts)]
    assert any(c.token_ids != p[0].token_ids for p in pools for c in p[1:])


@pytest.mark.parametrize("engine", ["eager", "compiled"])
def test_the_same_seed_draws_the_same_candidates_and_another_seed_others(params, tiny_base, tokenizer, engine):
    gen = Generator(models.load_base(tiny_base), tokenizer, max_new_tokens=10, engine=engine)
    prompts = [tokenizer(m)["input_ids"] for m in MESSAGES[:3]]
    draw = lambda seed: [[c.token_ids for c in s] for s in
                         gen.sample(prompts, 4, 1.0, 0.95, torch.Generator().manual_seed(seed))]
    assert draw(1) == draw(1)
    assert draw(1) != draw(2)
    assert len({tuple(c) for s in draw(1) for c in s}) > 4  # the draws differ within a prompt too


@pytest.mark.parametrize("system", ["base", "soft_prompt"])
def test_both_engines_draw_the_same_candidates_from_the_same_seed(params, tiny_base, tokenizer, system, fp32):
    """The compiled engine's rows (one prompt, copied into each row of a static cache longer than prompt and reply)
    see the logits the eager loop's shared prompt cache gives and draw from them the same way: while no candidate
    ends (a random model almost never writes the end token) the same seed gives the same tokens, greedy reply
    first."""
    model = tiny_system(params, tiny_base, system)
    prompts = [tokenizer(m)["input_ids"] for m in MESSAGES[:3]]
    draw = lambda engine: [[c.token_ids for c in s] for i, p in enumerate(prompts) for s in Generator(
        model, tokenizer, max_new_tokens=10, repetition_penalty=1.3, engine=engine).sample(
        [p], 4, 1.0, 0.95, torch.Generator().manual_seed(i), greedy_first=True)]
    eager = draw("eager")
    assert all(len(c) == 10 for s in eager for c in s)
    assert draw("compiled") == eager


def test_the_compiled_engine_samples_a_batch_in_groups_of_sample_group(params, tiny_base, tokenizer, monkeypatch):
    gen = Generator(models.load_base(tiny_base), tokenizer, max_new_tokens=4, engine="compiled")
    calls = []
    monkeypatch.setattr(
        gen, "_static_sample", lambda group, n, *a: calls.append(len(group)) or [[str(p)] * n for p in group]
    )
    prompts = [tokenizer(m)["input_ids"] for m in (MESSAGES * 3)[:SAMPLE_GROUP + 3]]
    assert gen.sample(prompts, 2, 1.0, 0.95) == [[str(p)] * 2 for p in prompts]
    assert calls == [SAMPLE_GROUP, 3]


def test_compiled_sampling_makes_the_graphs_of_two_batch_sizes_whatever_the_group(params, tiny_base, tokenizer):
    """What a GPU compiles for sampling, traced on a CPU (torch.compile's eager backend, as test_engine.py traces
    greedy decoding): one message's candidates, and groups of 2, 3 and SAMPLE_GROUP messages (a server's batches),
    make the graphs of two batch sizes (a chunk's forward and a decoding step's for each), not one per group size;
    the warm-up of a server's batches makes both before the first request. Each group's pools are its messages'."""
    from torch._dynamo.utils import counters

    gen = Generator(models.load_base(tiny_base), tokenizer, max_new_tokens=4, engine="compiled", max_prompt_tokens=32)
    prompts = [tokenizer(m)["input_ids"] for m in (MESSAGES * 2)[:SAMPLE_GROUP]]
    greedy = [r.token_ids for r in gen.generate(prompts)]
    torch._dynamo.reset()
    counters.clear()
    gen._step = torch.compile(gen._step, fullgraph=True, dynamic=False, backend="eager")
    gen.rerank = Rerank(3, 1.0, 0.95, 0, lambda c, r: [list(range(len(x))) for x in c])
    gen.warm_up([prompts[0]], batch_size=16)
    assert counters["stats"]["unique_graphs"] == 4
    for group in (1, 2, 3, SAMPLE_GROUP):  # near temperature 0 every candidate is the greedy reply
        pools = gen.sample(prompts[:group], 4, 1e-4, 1.0, torch.Generator().manual_seed(0))
        assert [[c.token_ids for c in p] for p in pools] == [[g] * 4 for g in greedy[:group]]
    assert counters["stats"]["unique_graphs"] == 4


def test_a_reply_with_candidates_is_the_one_chosen_among_greedy_and_samples(params, tiny_base, tokenizer):
    model = models.load_base(tiny_base)
    prompts = [tokenizer(m)["input_ids"] for m in MESSAGES[:3]]
    seen = []

    def last(candidates, references):  # a ranking that puts each message's last sample first
        seen.append((candidates, references))
        return [[len(c) - 1, *range(len(c) - 1)] for c in candidates]

    plain = Generator(model, tokenizer, max_new_tokens=8)
    reranked = Generator(model, tokenizer, max_new_tokens=8, rerank=Rerank(2, 1.0, 0.95, 0, last))
    refs = [["ref a"], ["ref b"], []]
    replies = reranked.reply(prompts, refs)
    (candidates, references), = seen
    assert references == refs
    assert [c[0] for c in candidates] == [r.text for r in plain.generate(prompts)]  # the greedy reply leads
    assert [len(c) for c in candidates] == [3, 3, 3]
    assert [r.text for r in replies] == [c[-1] for c in candidates]
    assert [[t for t, _ in r.alternatives] for r in replies] == [c[:-1] for c in candidates]  # the guard's next tries
    assert [r.text for r in plain.reply(prompts)] == [c[0] for c in candidates]  # no rerank: the greedy reply


def test_consensus_picks_the_reply_its_peers_and_the_references_agree_with(embedder):
    candidates = [["I love pizza on Sundays.",
                   "Please DM us your order number and we'll check.",
                   "Sorry! DM us your order number so we can check on it."]]
    references = [["Please send us a DM with your order number so we can check."]]
    half = dict(word_weight=0.5, reference_weight=1.0)
    assert consensus(candidates, references, embedder, **half) in ([1], [2])
    # with no references the peers decide; the same reply twice: the earlier one
    assert consensus([["same reply", "same reply"]], [[]], embedder, **half) == [0]
    assert consensus([["only one"]], [["a reference"]], embedder, **half) == [0]


def test_consensus_weighs_references_against_peers_and_wording_against_meaning(embedder):
    # two peers agree on a reply the one reference disagrees with: the references' weight decides
    candidates = [
        ["Please DM us your order number.", "Please DM us your order number!", "Restart the app and log in again."]
    ]
    references = [["Restart the app, then log in again."]]
    assert consensus(candidates, references, embedder, word_weight=0.5, reference_weight=1.0) == [0]
    assert consensus(candidates, references, embedder, word_weight=0.5, reference_weight=4.0) == [2]
    # the same words, other meaning against other words, same meaning: ROUGE-L alone takes the shared words
    candidates = [["We are not able to refund it.", "We can refund the order for you."]]
    references = [["We are able to refund it."]]
    by_words = consensus(candidates, references, embedder, word_weight=1.0, reference_weight=1.0)
    assert by_words == [0]


def test_a_candidate_without_words_is_never_chosen_while_another_has_some():
    # the empty reply scores highest here, yet the best of the candidates with words is chosen
    s = Similarities(words=np.array([[0.0, 0.1, 0.9], [0.1, 0.0, 0.2], [0.9, 0.2, 0.0]]), cosine=np.zeros((3, 3)),
                     has_words=np.array([True, True, False]))
    assert choose(s, word_weight=1.0, reference_weight=1.0) == 0
    assert choose(Similarities(s.words, s.cosine, np.array([True, True, True])), word_weight=1.0,
                  reference_weight=1.0) == 2
    assert choose(Similarities(s.words, s.cosine, np.zeros(3, bool)), word_weight=1.0, reference_weight=1.0) == 2


def test_choosing_with_the_first_references_is_consensus_with_those_references(embedder):
    """The selection grid (benchmarks/full_sweep.py) compares once with the most references, then lets each setting
    take its first R: the same choice as comparing with those R alone."""
    candidates = [["Please DM us your order number.", "Restart the app and log in again.", "", "Thanks for the love!"]]
    references = [["Restart the app, then log in again.", "DM us your order number please.", "Happy to help!",
                   "Log out and back in, that should do it."]]
    s, = similarities(candidates, references, embedder)
    assert s.words.shape == s.cosine.shape == (4, 8) and list(s.has_words) == [True, True, False, True]
    for r in range(len(references[0]) + 1):
        for w, x in ((0.5, 1.0), (0.75, 4.0), (1.0, 2.0)):
            assert [choose(s, word_weight=w, reference_weight=x, references=r)] == consensus(
                candidates, [references[0][:r]], embedder, word_weight=w, reference_weight=x)
    # a setting asking for more references than a message has (a brand with few past pairs) takes all it has
    assert choose(s, word_weight=0.75, reference_weight=4.0, references=16) == choose(s, word_weight=0.75,
                                                                                      reference_weight=4.0)


def test_a_pool_of_candidates_and_past_replies_ranks_a_fitting_past_reply_over_an_odd_candidate(embedder):
    """`evaluate.rerank_past_replies`: the candidates and the brand's past replies ranked together."""
    candidates = ["Restart the app and log in again.", "I love pizza on Sundays."]
    past = ["Restart the app, then log in again.", "Log out and back in, that should do it.", "Happy to help!"]
    w = dict(word_weight=0.75, reference_weight=1.0)
    order, = pool_rankings([candidates], [past], embedder, **w)
    assert sorted(order) == list(range(5))
    assert order[0] in (0, 2, 3) and order.index(1) > order.index(2)  # the fitting past reply before the odd one
    # a past reply does not vote for itself: its own entry is 0, not its similarity 1 with itself
    s, = similarities([candidates + past], [[]], embedder)
    assert np.all(np.diag(s.words) == 0) and np.all(np.diag(s.cosine) == 0)
    # a candidate scores as `rank` scores it against the past replies: the candidates keep their order among them
    alone, = similarities([candidates], [past], embedder)
    assert [i for i in order if i < len(candidates)] == rank(alone, **w)


def test_a_head_start_for_past_replies_sends_a_persons_reply_unless_a_candidate_agrees_clearly_better(embedder):
    """`evaluate.rerank_past_reply_bonus`: 0 ranks as before; a head start moves past replies up by that much of
    the similarity scale, so a candidate far ahead stays first and one barely ahead does not."""
    candidates = ["Restart the app and log in again.", "Restart the app and log in again, please.",
                  "I love pizza on Sundays."]
    past = ["Log out and back in, that should do it.", "Restart the app, then log in again.", "Happy to help!"]
    w = dict(word_weight=0.75, reference_weight=1.0)
    s, = similarities([candidates + past], [[]], embedder)
    plain = rank(s, **w, voters=len(candidates))
    assert pool_rankings([candidates], [past], embedder, **w, past_bonus=0.0) == [plain]
    votes = len(candidates) + len(past)
    score = agreement(s, **w, voters=len(candidates)) / votes
    best_candidate, best_past = score[:3].max(), score[3:].max()
    assert best_candidate > best_past  # the fixture: the model's reply leads without a head start
    lead = best_candidate - best_past
    behind, = pool_rankings([candidates], [past], embedder, **w, past_bonus=lead + 1e-6)
    assert behind[0] == 3 + int(np.argmax(score[3:]))  # the best past reply overtakes it
    ahead, = pool_rankings([candidates], [past], embedder, **w, past_bonus=lead / 2)
    assert ahead[0] == int(np.argmax(score[:3]))  # a head start smaller than the lead changes nothing at the top
    everything, = pool_rankings([candidates], [past], embedder, **w, past_bonus=1.0)
    assert sorted(everything[:3]) == [3, 4, 5] and everything[3:] == [i for i in plain if i < 3]


def test_a_past_reply_ranked_first_is_the_reply_and_the_guard_sends_it_as_such(params, tiny_base, tokenizer):
    from supportagent.data.rules import apply_rules
    from supportagent.inference.guard import guard

    model = models.load_base(tiny_base)
    prompts = [tokenizer(m)["input_ids"] for m in MESSAGES[:2]]
    past = [["Sorry about that! Please DM us your order number.", "Happy to help!"], []]

    def past_first(candidates, references):  # the first past reply first, where there is one (pool_rankings' indices)
        return [([len(c)] if r else []) + list(range(len(c))) + list(range(len(c) + 1, len(c) + len(r)))
                for c, r in zip(candidates, references)]

    gen = Generator(model, tokenizer, max_new_tokens=8, rerank=Rerank(2, 1.0, 0.95, 0, past_first))
    with_past, without = gen.reply(prompts, past)
    assert with_past.text == past[0][0] and with_past.token_ids == [] and not with_past.truncated
    assert [t for t, _ in with_past.alternatives][-1] == past[0][1] and len(with_past.alternatives) == 4
    assert without.token_ids and len(without.alternatives) == 2  # no past reply: the model's own
    message = "where is my order, it is very late now"
    pool = [(with_past.text, False), *with_past.alternatives]
    g = guard(pool, past[0], "AmazonHelp", message, "", apply_rules(message, params.rules, ""), params)
    assert g.path == "past_reply" and g.text == past[0][0] and not g.passed_over
    # the same reply ranked after the candidates is a fallback, tried once
    g = guard([("Customer: leaked", False)], past[0], "AmazonHelp", message, "", apply_rules(message, params.rules, ""),
              params)
    assert g.path == "fallback_retrieval" and g.text == past[0][0] and len(g.passed_over) == 1


def test_lcs_f1_is_the_rouge_l_of_rouge_score():
    from rouge_score import rouge_scorer
    from rouge_score.tokenizers import DefaultTokenizer

    tokenize = DefaultTokenizer(use_stemmer=True).tokenize
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    texts = ["We're sorry! Please DM us your order number.", "please dm the order numbers to us", "", "thanks",
             "Sorry about that: DM us and we will look into it, sorry again."]
    for a in texts:
        for b in texts:
            assert lcs_f1(tokenize(a), tokenize(b)) == pytest.approx(scorer.score(a, b)["rougeL"].fmeasure)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from("abcde"), max_size=40), st.lists(st.sampled_from("abcdef"), max_size=70))
def test_the_bit_parallel_lcs_is_the_textbook_one(a, b):
    """`lcs_f1` counts the longest common subsequence on the bits of an int: it must equal the dynamic-programming
    table's count, for texts longer than a machine word too."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x == y else max(table[i - 1][j], table[i][j - 1])
    expected = 2 * table[-1][-1] / (len(a) + len(b)) if a and b else 0.0
    assert lcs_f1(a, b) == expected == lcs_f1(a, b, positions(b))


def test_candidates_without_an_embedder_fail_by_name(params, tiny_base, tokenizer):
    from supportagent.inference.serving import ready_to_serve

    ev = params.evaluate.model_copy(update={"candidates": 4})
    with pytest.raises(ValueError, match="evaluate.candidates"):
        ready_to_serve(models.load_base(tiny_base), tokenizer, ev)


def test_the_timed_warm_up_leaves_the_seeded_draws_alone(params, tiny_base, tokenizer):
    """Latency is measured on real predictions after a warm-up: with candidates the warm-up samples on draws of its
    own, so the timed replies are the replies the same seed gives without it."""
    model = models.load_base(tiny_base)
    prompts = [tokenizer(m)["input_ids"] for m in MESSAGES[:3]]
    make = lambda: Generator(
        model, tokenizer, max_new_tokens=8, rerank=Rerank(4, 1.0, 0.95, 0, lambda c, r: [[2, 0, 1, 3, 4]] * len(c))
    )
    timed, latency = make().timed(prompts)
    plain = make()
    assert [r.text for r in timed] == [plain.reply([p])[0].text for p in prompts]
    assert latency["latency_p50_ms"] > 0


def test_candidates_sampled_in_another_dtype_use_a_cast_copy_that_keeps_buffers_and_ties(
    params, tiny_base, tokenizer, fp32
):
    """`sample_dtype` (bf16 on CPUs that train in it): the sampler is a copy with its parameters cast, its rotary
    frequencies shared in full precision and its tied embeddings still tied; the served model is untouched."""
    model = models.load_base(tiny_base)
    gen = Generator(
        model,
        tokenizer,
        max_new_tokens=6,
        rerank=Rerank(3, 1.0, 0.95, 0, lambda c, r: [[0, 1, 2, 3]] * len(c)),
        sample_dtype=torch.bfloat16,
    )
    assert {p.dtype for p in gen.sampler.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in gen.model.parameters()} == {torch.float32}
    assert [b.data_ptr() for b in gen.sampler.buffers()] == [b.data_ptr() for b in gen.model.buffers()]
    assert gen.sampler.get_input_embeddings().weight is gen.sampler.get_output_embeddings().weight
    prompts = [tokenizer(m)["input_ids"] for m in MESSAGES[:2]]
    assert [len(p) for p in gen.sample(prompts, 3, 1.0, 0.95, torch.Generator().manual_seed(0))] == [3, 3]
    assert any(b.dtype == torch.float32 for b in gen.sampler.buffers())  # the rotary frequencies
    same = Generator(model, tokenizer, sample_dtype=torch.float32, rerank=gen.rerank)
    assert same.sampler is same.model  # the model's own dtype: no copy


def _after_prompt(gen, prompt: list[int], reply: list[int]) -> float:
    """A reply's mean token log-probability after `prompt` by one forward pass of prompt and reply together."""
    ids, mask, embeds = gen._inputs([prompt + reply], len(prompt) + len(reply))
    with torch.no_grad():
        logits = gen.model(input_ids=ids if embeds is None else None, inputs_embeds=embeds,
                           attention_mask=mask).logits[0].float()
    return float(logits[-len(reply) - 1:-1].log_softmax(-1).gather(-1, torch.tensor(reply)[:, None]).mean())


@pytest.mark.parametrize("system", ["base", "soft_prompt"])
def test_a_replys_likelihood_is_its_mean_token_log_probability_after_the_prompt(params, tiny_base, tokenizer,
                                                                                system):
    """The pool's members are read together after one read of the prompt, packed into one row: each member's mean
    log-probability, its end token included, is what one forward pass of prompt and member gives."""
    gen = Generator(tiny_system(params, tiny_base, system), tokenizer, max_new_tokens=16)
    prompt = tokenizer(MESSAGES[1])["input_ids"]
    texts = ["Sorry about that! Please DM us your order number.", "Happy to help", "hi"]
    got = gen.likelihoods(prompt, texts)
    for text, value in zip(texts, got):
        reply = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert value == pytest.approx(_after_prompt(gen, prompt, reply), abs=1e-3)
    assert len(set(np.round(got, 4))) == 3  # a random model still tells the members apart


@pytest.mark.parametrize("system", ["base", "soft_prompt"])
def test_sampling_scores_its_candidates_as_it_draws_them_and_the_past_replies_after_the_prompt_it_read(
        params, tiny_base, tokenizer, system):
    """`sample_scored` draws the same candidates as `sample` (one seed), and each prompt's likelihoods: its candidates'
    from the sampling loop (what a forward pass of prompt and candidate gives; a candidate cut at the token limit has
    no end token), then its past replies', read after the prompt cache the sampling holds, whatever the batch's left
    padding."""
    gen = Generator(tiny_system(params, tiny_base, system), tokenizer, max_new_tokens=6)
    prompts = [tokenizer(m)["input_ids"] for m in MESSAGES[:3]]
    refs = [["Sorry about that! Please DM us your order number.", "Happy to help"], [], ["hi"]]
    pools, scores = gen.sample_scored(prompts, 3, 1.0, 0.95, torch.Generator().manual_seed(0), refs)
    again = gen.sample(prompts, 3, 1.0, 0.95, torch.Generator().manual_seed(0), greedy_first=True)
    assert [[c.token_ids for c in pool] for pool in pools] == [[c.token_ids for c in pool] for pool in again]
    assert [len(s) for s in scores] == [5, 3, 4]
    eos = tokenizer.eos_token_id
    for prompt, pool, texts, got in zip(prompts, pools, refs, scores):
        drawn = [c.token_ids + ([] if c.truncated else [eos]) for c in pool]
        want = [_after_prompt(gen, prompt, ids) for ids in drawn] + list(gen.likelihoods(prompt, texts))
        assert got == pytest.approx(want, abs=1e-2)  # bf16: the loop's logits and one forward's round apart


def test_a_drawn_replys_mean_log_probability_counts_its_tokens_up_to_its_end_token():
    from supportagent.inference.likelihood import mean_log_probs

    eos = 9
    rows = [[1, 2, eos, eos], [3, 4, 5, 6], [eos, eos, eos, eos]]
    log_probs = torch.tensor([[-1.0, -2.0, -3.0, 0.0], [-1.0, -1.0, -1.0, -5.0], [-0.5, 0.0, 0.0, 0.0]])
    assert mean_log_probs(rows, log_probs, eos) == pytest.approx([-2.0, -2.0, -0.5])


def test_the_likelihood_weight_reorders_the_pool_within_each_kind():
    """Pool scores tie: the likelihood decides, a candidate compared with candidates and a past reply with past
    replies (a past reply less likely than every candidate still leads its kind); a member without a word stays
    last; weight 0 is the plain pool ranking."""
    from supportagent.inference.reranking import rank_pool, with_likelihood

    n, pool = 2, 4  # two candidates, two past replies
    s = Similarities(np.zeros((pool, pool)), np.zeros((pool, pool)), np.array([True, True, True, True]))
    lp = np.array([-1.0, -0.5, -3.0, -2.0])
    assert rank_pool(s, n, word_weight=0.75, reference_weight=4.0) == [0, 1, 2, 3]
    ranked = rank_pool(s, n, word_weight=0.75, reference_weight=4.0, likelihood=lp, likelihood_weight=0.3)
    assert ranked[:2] == [1, 3] and set(ranked[2:]) == {0, 2}
    mixed = with_likelihood(np.array([0.2, -np.inf, 0.1, 0.3]), lp, n, 0.3)
    assert mixed[1] == -np.inf and np.isfinite(mixed[[0, 2, 3]]).all()


def test_without_past_replies_in_the_pool_the_likelihood_reorders_the_candidates(embedder):
    """`evaluate.rerank_past_replies: false`: the candidates alone are ranked, the likelihood of each mixed in (a
    past reply's, which the likelihoods also hold, is not one of them)."""
    from supportagent.inference.reranking import rankings

    candidates = [["Sorry, please DM us.", "Sorry, please DM us."]]
    plain = rankings(candidates, [["a past reply"]], embedder, word_weight=0.75, reference_weight=4.0)
    assert plain == [[0, 1]]  # a tie: the earlier first
    mixed = rankings(candidates, [["a past reply"]], embedder, word_weight=0.75, reference_weight=4.0,
                     likelihoods=[np.array([-3.0, -1.0, 0.0])], likelihood_weight=0.3)
    assert mixed == [[1, 0]]


def test_with_the_likelihood_weight_the_ranking_gets_each_pool_members_likelihood(tiny_base, tokenizer):
    seen = []

    def rank(candidates, references, likelihoods=None, likelihood_weight=0.0):
        seen.append((candidates, likelihoods, likelihood_weight))
        return [list(range(len(c) + len(r))) for c, r in zip(candidates, references)]

    gen = Generator(models.load_base(tiny_base), tokenizer, max_new_tokens=8,
                    rerank=Rerank(2, 1.0, 0.95, 0, rank, likelihood_weight=0.3))
    prompts = [tokenizer(m)["input_ids"] for m in MESSAGES[:2]]
    refs = [["Sorry about that! Please DM us your order number."], []]
    gen.reply(prompts, refs)
    (candidates, likelihoods, weight), = seen
    assert weight == 0.3
    assert [len(lp) for lp in likelihoods] == [4, 3]  # the greedy reply, 2 samples, and the message's past replies
    assert likelihoods[0][3:] == pytest.approx(gen.likelihoods(prompts[0], refs[0]), abs=1e-4)


def test_past_replies_outside_the_pool_are_not_read(tiny_base, tokenizer):
    """With `evaluate.rerank_past_replies: false` the ranking gets the candidates' likelihoods alone: the past
    replies are not read after the prompt."""
    seen = []

    def rank(candidates, references, likelihoods=None, likelihood_weight=0.0):
        seen.append(likelihoods)
        return [list(range(len(c))) for c in candidates]

    gen = Generator(models.load_base(tiny_base), tokenizer, max_new_tokens=8,
                    rerank=Rerank(2, 1.0, 0.95, 0, rank, likelihood_weight=0.3, past_replies=False))
    prompts = [tokenizer(m)["input_ids"] for m in MESSAGES[:2]]
    gen.reply(prompts, [["Sorry about that! Please DM us your order number."], []])
    assert [len(lp) for lp in seen[0]] == [3, 3]  # the greedy reply and 2 samples, no past reply
