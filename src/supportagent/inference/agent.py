"""The support agent: rule layer + shared prompt contract + the served model, with escalation hand-off."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from ..config import Params
from ..data.cleaning import clean_text
from ..data.prompts import build_messages, encode
from ..data.retrieval import NO_EXAMPLES, ExampleIndex, Examples
from ..data.rules import RuleResult, apply_rules
from ..model import models
from .generation import load_system
from .guard import guard, own_brand
from .serving import ready_to_serve

CLARIFY = "Hi! Could you tell us a bit more about what's happening, so we can help?"
WARM_UP_MESSAGE = "Hi, my order hasn't arrived and the app keeps logging me out. Can you help?"


@dataclass
class AgentResponse:
    brand: str
    message: str
    tags: str
    intent: str
    priority: int
    band: str
    escalate: bool
    reasons: list[str]
    input_truncated: bool
    reply: str  # what is sent (guard.py): a checked reply (masks filled), with the hand-off note when escalated
    model_reply: str  # the reranker's best-ranked reply as written (masks such as <url> kept): the model's, or a past
    # reply it ranked first (evaluate.rerank_past_replies)
    examples_source: str | None  # where the past pairs in the prompt came from: same_brand, other_brands, None
    reply_truncated: bool  # the model's best-ranked reply hit the token limit (the guard then sent another)
    handoff_note: str | None
    method: str
    latency_ms: float
    path: str  # how the reply was chosen: passed, past_reply, fallback_retrieval or fallback_template (guard.PATHS)
    flags: list[str]  # the sent reply's own flags (checks.py); empty when it passed every check
    passed_over: list[str]  # why better-ranked replies were not sent

    def to_dict(self) -> dict:
        return asdict(self)


def read_message(params: Params, message: str, context: str = "") -> tuple[RuleResult, str, str]:
    """The rules on the raw customer message, and the cleaned message and previous turn the prompt holds."""
    message = message if isinstance(message, str) else ""
    rules = apply_rules(message, params.rules, context)
    text = clean_text(message)[: params.rules.max_message_chars]
    ctx = clean_text(context)[: params.subset.max_context_chars] if context else ""
    return rules, text, ctx


def prompt_ids(params: Params, tokenizer, brand: str, rules: RuleResult, text: str, ctx: str,
               examples: Examples = NO_EXAMPLES) -> list[int]:
    msgs = build_messages(params.model.system_prompt, brand, text, rules, ctx, examples=examples)
    return encode(tokenizer, msgs, params.model.max_prompt_tokens, params.model.max_reply_tokens).input_ids


def prepare(params: Params, tokenizer, brand: str, message: str, context: str = "",
            examples: Examples = NO_EXAMPLES) -> tuple[list[int], RuleResult, str]:
    """Clean a customer message, run the rules and build the prompt ids (the same path as training)."""
    rules, text, ctx = read_message(params, message, context)
    return prompt_ids(params, tokenizer, brand, rules, text, ctx, examples), rules, text


class SupportAgent:
    """Loads the served method once; `reply` and `reply_many` answer customer messages."""

    def __init__(self, params: Params, base_dir: str, index_dir: str, method: str | None = None,
                 adapter_dir: str | None = None):
        self.params = params
        self.method = method or params.method
        model, self.tokenizer = load_system(self.method, base_dir, adapter_dir)
        self.index = self.embedder = None
        if params.retrieval.k:  # the examples come from the train split's index, as in training
            self.index = ExampleIndex(index_dir, embedder_id=models.embedder_id())
        if params.retrieval.k or params.evaluate.candidates:  # candidates are compared in its embedding space
            self.embedder = models.load_embedder()
        self.generator = ready_to_serve(model, self.tokenizer, params.evaluate, self.embedder, params.seed,
                                        params.model.max_prompt_tokens)

    def warm_up(self, batch_size: int = 1) -> float:
        """Pays the one-off costs of the first request before any request arrives; returns the seconds (none on the
        eager engine, whose first request costs what the next do). On the compiled engine (a GPU's `evaluate.engine:
        auto`) it compiles the decoding loop for one message, whose cache length every prompt of up to
        model.max_prompt_tokens shares (`Generator.cache_length`), and with a `batch_size` over one (the server's
        largest batch) for its batches too: a group of messages whose candidates are sampled together
        (generation.SAMPLE_GROUP), or, without candidates, that many greedy replies. Then it answers
        WARM_UP_MESSAGE the way a request is answered (retrieval, sampling, the reranker's embeddings: their first
        call on a GPU costs about a second) and puts the seeded draws back, so the requests that follow get the
        replies they would have got without it. A server calls it before it takes requests."""
        if self.generator.engine != "compiled":
            return 0.0
        start = time.perf_counter()
        self.generator.warm_up([[self.tokenizer.eos_token_id] * self.params.model.max_prompt_tokens], batch_size)
        with self.generator.draws_kept():
            self.reply_many([{"brand": "", "text": WARM_UP_MESSAGE}], batch_size=1)
        return time.perf_counter() - start

    def reply_many(self, items: list[dict], batch_size: int | None = None) -> list[AgentResponse]:
        """Items with `brand`, `text` and optional `context`; the model sees batches of them."""
        brands = [it.get("brand", "") for it in items]
        read = [read_message(self.params, it.get("text", ""), it.get("context", "")) for it in items]
        examples, refs = ([NO_EXAMPLES] * len(items), None) if self.index is None else \
            self.index.examples_and_references(self.embedder, [text for _, text, _ in read], brands,
                                               self.params.retrieval, self.params.evaluate.rerank_references)
        refs = refs if refs is None else own_brand(refs, examples)
        todo = [i for i, (_, text, _) in enumerate(read) if text.strip()]
        prompts = [prompt_ids(self.params, self.tokenizer, brands[i], *read[i], examples[i]) for i in todo]
        start = time.perf_counter()
        batch_size = batch_size or self.params.evaluate.batch_size
        replies, _ = self.generator.generate_all(prompts, batch_size, progress=len(todo) > batch_size,
                                                 references=None if refs is None else [refs[i] for i in todo])
        by_index = dict(zip(todo, replies))
        candidates = [[(g.text, g.truncated), *g.alternatives] if g else [(CLARIFY, False)]
                      for g in map(by_index.get, range(len(items)))]
        sent = [guard(c, refs[i] if i in by_index and refs is not None else [], brand, text, ctx, rules, self.params)
                for i, (c, brand, (rules, text, ctx)) in enumerate(zip(candidates, brands, read))]
        per_item_ms = round((time.perf_counter() - start) * 1000 / max(len(items), 1), 1)  # the checks included
        out = []
        for i, (c, g, brand, ex, (rules, text, _)) in enumerate(zip(candidates, sent, brands, examples, read)):
            source = ex.source if i in by_index and ex.pairs else None
            tags = rules.tag_line() + (f" [examples={len(ex.pairs)} source={source}]" if source else "")
            out.append(AgentResponse(
                brand=brand, message=text, tags=tags, intent=rules.intent,
                priority=rules.priority, band=rules.band, escalate=g.escalate, reasons=rules.reasons,
                input_truncated=rules.truncated, reply=g.sent, model_reply=c[0][0], examples_source=source,
                reply_truncated=c[0][1], handoff_note=self.params.rules.handoff.note if g.escalate else None,
                method=self.method, latency_ms=per_item_ms, path=g.path, flags=g.flags, passed_over=g.passed_over))
        return out

    def reply(self, brand: str, message: str, context: str = "") -> AgentResponse:
        return self.reply_many([{"brand": brand, "text": message, "context": context}], batch_size=1)[0]
