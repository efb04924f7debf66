"""The support agent: rule layer + shared prompt contract + the served model, with escalation hand-off."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from . import models
from .cleaning import clean_text
from .config import Params
from .generation import Generator, load_system
from .prompts import build_messages, encode
from .rules import RuleResult, apply_rules

CLARIFY = "Hi! Could you tell us a bit more about what's happening, so we can help?"


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
    reply: str  # what is sent: the model's reply, with the hand-off note when escalated
    model_reply: str
    reply_truncated: bool
    handoff_note: str | None
    method: str
    latency_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def prepare(params: Params, tokenizer, brand: str, message: str, context: str = "") -> tuple[list[int], RuleResult, str]:
    """Clean a customer message, run the rules and build the prompt ids (the same path as training)."""
    message = message if isinstance(message, str) else ""
    rules = apply_rules(message, params.rules, context)
    text = clean_text(message)[: params.rules.max_message_chars]
    ctx = clean_text(context)[: params.subset.max_context_chars] if context else ""
    msgs = build_messages(params.model.system_prompt, brand, text, rules, ctx)
    enc = encode(tokenizer, msgs, params.model.max_prompt_tokens, params.model.max_reply_tokens)
    return enc.input_ids, rules, text


class SupportAgent:
    """Loads the served method once; `reply` and `reply_many` answer customer messages."""

    def __init__(self, params: Params, method: str | None = None, base_dir: str = "models/base",
                 adapter_dir: str | None = None):
        self.params = params
        self.method = method or params.method
        model, self.tokenizer = load_system(self.method, base_dir, adapter_dir)
        models.dense_4bit_for_cpu(model)
        ev = params.evaluate
        self.generator = Generator(model, self.tokenizer, ev.max_new_tokens, ev.repetition_penalty)

    def reply_many(self, items: list[dict], batch_size: int | None = None) -> list[AgentResponse]:
        """Items with `brand`, `text` and optional `context`; the model sees batches of them."""
        prepared = [prepare(self.params, self.tokenizer, it.get("brand", ""), it.get("text", ""), it.get("context", ""))
                    for it in items]
        todo = [i for i, (_, _, text) in enumerate(prepared) if text.strip()]
        start = time.perf_counter()
        batch_size = batch_size or self.params.evaluate.batch_size
        replies, _ = self.generator.generate_all([prepared[i][0] for i in todo], batch_size,
                                                 progress=len(todo) > batch_size)
        per_item_ms = (time.perf_counter() - start) * 1000 / max(len(items), 1)
        by_index = dict(zip(todo, replies))
        handoff = self.params.rules.handoff
        out = []
        for i, (it, (_, rules, text)) in enumerate(zip(items, prepared)):
            gen = by_index.get(i)
            model_reply = gen.text if gen else CLARIFY
            note = handoff.note if rules.escalate else None
            if note is None:
                reply = model_reply
            elif handoff.policy == "replace":
                reply = note
            else:
                reply = f"{model_reply} {note}".strip()
            out.append(AgentResponse(
                brand=it.get("brand", ""), message=text, tags=rules.tag_line(), intent=rules.intent,
                priority=rules.priority, band=rules.band, escalate=rules.escalate, reasons=rules.reasons,
                input_truncated=rules.truncated, reply=reply, model_reply=model_reply,
                reply_truncated=bool(gen and gen.truncated), handoff_note=note, method=self.method,
                latency_ms=round(per_item_ms, 1)))
        return out

    def reply(self, brand: str, message: str, context: str = "") -> AgentResponse:
        return self.reply_many([{"brand": brand, "text": message, "context": context}], batch_size=1)[0]
