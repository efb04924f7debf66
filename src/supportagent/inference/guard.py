"""What the agent sends: the best-ranked candidate that passes every output check (checks.py); else the brand's
nearest past reply that passes; else the brand's fallback reply (params: brands.<brand>.fallback), which hands the
message to a person. Where the reranker ranks the brand's past replies with the model's candidates
(`evaluate.rerank_past_replies`), a past reply ranked above every candidate that passes is sent as such
(`past_reply`). `reply`, `serve` and `evaluate` all send through `guard`, and every reply records its path and
the reasons better-ranked replies were passed over: a flagged reply is never sent silently."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..config import BrandParams, Params
from ..data.placeholders import serve
from ..data.rules import RuleResult, apply_rules
from .checks import Context, Flag, check_reply, conversation_language

PATHS = ("passed", "past_reply", "fallback_retrieval", "fallback_template")


@dataclass
class Guarded:
    text: str  # as written (cleaning masks kept): what the overlap metrics compare with the reference
    sent: str  # what the customer receives: masks filled, the hand-off note added where the message is escalated
    path: str  # one of PATHS
    escalate: bool  # the rules' escalation, or the fallback's hand-over
    flags: list[str] = field(default_factory=list)  # the sent reply's own flags (a fallback may still carry some)
    passed_over: list[str] = field(default_factory=list)  # "candidate 1: check: reason" for each reply not sent
    first_flags: list[str] = field(default_factory=list)  # the best-ranked candidate's: what an unguarded agent sends


def context(params: Params, brand: str, message: str, previous: str, rules: RuleResult,
            truncated: bool = False) -> Context:
    """What a reply to `message` (of `brand`, with the previous turn `previous`) is checked against."""
    conf = params.brands.get(brand) or BrandParams()
    harm = bool(set(rules.reasons) & set(params.rules.safety_keywords))
    return Context(message, previous, escalate=rules.escalate, harm=harm, intent=rules.intent,
                   support_url=conf.support_url, contacts=tuple(c for c in (*conf.contacts, conf.help_url) if c),
                   truncated=truncated)


def check_sent(text: str, brand: str, message: str, previous: str, rules: RuleResult, params: Params,
               truncated: bool = False) -> list[Flag]:
    """The flags of `text` (as written: masks are filled first, as for sending) as a reply to `message`."""
    sent = serve(text, brand, params.brands) if text.strip() else ""
    return check_reply(sent, context(params, brand, message, previous, rules, truncated))


def raised(replies: list[str], brands: list[str], messages: list[str], previous: list[str], params: Params
           ) -> list[set[str]]:
    """The checks each reply raises as the answer to its message (the rules read from the message, as for sending):
    for replies no guard chose, such as the brands' real ones or labelled ones."""
    return [{f.check for f in check_sent(r, b, m, p, apply_rules(m, params.rules, p), params)}
            for r, b, m, p in zip(replies, brands, messages, previous)]


def rates(found: list[set[str]]) -> dict:
    """Share (0-100) of replies that raise no check (`send_ready`), and each check's flag rate."""
    from .checks import CHECKS

    rate = lambda hits: round(100 * sum(hits) / max(len(found), 1), 2)  # noqa: E731
    return {"send_ready": rate([not f for f in found]), "flag_rate": {c: rate([c in f for f in found]) for c in CHECKS}}


def with_handoff(reply: str, escalate: bool, params: Params) -> str:
    """The reply with the rules' hand-off note (rules.handoff) where the message is escalated (after a full stop
    where the reply's last sentence has none, and ends in a word rather than a link)."""
    handoff = params.rules.handoff
    if not escalate:
        return reply
    if handoff.policy == "replace":
        return handoff.note
    reply = reply.strip()
    unstopped = reply[-1:].isalnum() and not re.search(r"(?:https?://|www\.)\S*$", reply)
    return f"{reply}{'.' if unstopped else ''} {handoff.note}".strip()


def own_brand(references: list[list[str]], examples: list) -> list[list[str]]:
    """Each message's retrieved past replies (ExampleIndex.examples_and_references) where they are its brand's own,
    else none: another brand's reply is never ranked among the candidates, nor sent."""
    return [r if e.source == "same_brand" else [] for r, e in zip(references, examples)]


def unwritten_language(message: str, previous: str, params: Params) -> Flag | None:
    """A flag for every reply of the model's to a message in a language the base does not write well
    (`evaluate.model_languages`): such a message gets a past reply in its language, or the hand-over."""
    lang = conversation_language(message, previous)
    if lang is None or lang in params.evaluate.model_languages:
        return None
    return Flag("language_mismatch", f"the message is in {lang}, which the base does not write well "
                f"(evaluate.model_languages: {', '.join(params.evaluate.model_languages)})")


def guard(candidates: list[tuple[str, bool]], past_replies: list[str], brand: str, message: str, previous: str,
          rules: RuleResult, params: Params) -> Guarded:
    """The reply to send. `candidates`: the reranker's pool best-ranked first, each (text as written, whether the
    length limit cut it): the model's replies, and where it ranks them too, past replies; `past_replies`: the brand's
    past replies to the nearest past messages, nearest first (empty for a system without retrieval, or a brand
    without past pairs). A member of the pool that is one of them is a past reply; the others are tried after the
    pool."""
    conf = params.brands.get(brand) or BrandParams()
    passed_over: list[str] = []
    first: list[Flag] | None = None
    past, pool = set(past_replies), {text for text, _ in candidates}
    tries = [("past reply" if text in past else "candidate", "pool", text, cut) for text, cut in candidates]
    tries += [("past reply", "fallback", text, False) for text in past_replies if text not in pool]
    untrusted = unwritten_language(message, previous, params)
    for i, (kind, where, text, cut) in enumerate(tries):
        if kind == "candidate" and untrusted:  # none of the model's replies is sent: only the first is checked (the
            # unguarded agent's reply, for the flag rates), not every candidate
            flags = [untrusted, *(check_sent(text, brand, message, previous, rules, params, cut) if i == 0 else [])]
        else:
            flags = check_sent(text, brand, message, previous, rules, params, cut)
        if first is None:
            first = flags
        if not flags:
            path = "fallback_retrieval" if where == "fallback" else "passed" if kind == "candidate" else "past_reply"
            sent = with_handoff(serve(text, brand, params.brands), rules.escalate, params)
            return Guarded(text, sent, path, rules.escalate, [], passed_over, [str(f) for f in first])
        rank = i + 1 if where == "pool" else i + 1 - len(candidates)
        passed_over += [f"{kind} {rank}: {f}" for f in flags]
    text = conf.fallback_text()
    flags = check_reply(text, context(params, brand, message, previous, rules))
    return Guarded(text, with_handoff(text, True, params), "fallback_template", True, [str(f) for f in flags],
                   passed_over, [str(f) for f in first or []])
