"""Rule layer on top of the LLM: escalation flags, intent, priority score, and the prompt tag line."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from ..config import RulesParams

# Letters that look like Latin ones (Cyrillic, Greek) and digits used as letters.
_CONFUSABLES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "к": "k", "м": "m", "т": "t", "в": "b", "н": "h", "ԁ": "d", "ɡ": "g", "ո": "n", "ս": "u",
    "α": "a", "ε": "e", "ο": "o", "ι": "i", "κ": "k", "ν": "v", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    "ѵ": "v", "ɑ": "a", "ı": "i",
})
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_TAG_LIKE = re.compile(r"\[\s*(intent|priority|escalate|reasons)\s*[=:]", re.IGNORECASE)
_CONTROL_TOKENS = re.compile(r"<\|[^|>]{0,40}\|>|</?s>|<unk>|\[/?INST\]|<<SYS>>|<</SYS>>", re.IGNORECASE)
# Mistral's other control tokens are bracketed names ([TOOL_CALLS], [IMG], [control_8], [REFERENCE_DOC_0]): their
# brackets become parentheses, so the words stay but no tokenizer reads them as control tokens
_BRACKETED_CONTROL = re.compile(r"\[(/?(?:[A-Z][A-Z_]*|control_\d+|[A-Z][A-Z_]*_\d+))\]")


def normalise(text: str) -> list[str]:
    """Word tokens of `text` for matching: NFKC, look-alikes mapped, hashtags and CamelCase split,
    leetspeak inside words undone, case folded."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    text = _CAMEL.sub(" ", text).translate(_CONFUSABLES)
    words = []
    for w in re.findall(r"[^\s#!?.,;:()\[\]{}\"/\\|]+", text):
        w = w.translate(_CONFUSABLES).lower()
        if any(c.isalpha() for c in w):  # "r3fund" -> "refund", but "2024" stays a number
            w = w.translate(_LEET)
        words += _TOKEN.findall(w)
    return [unicodedata.normalize("NFKD", w).encode("ascii", "ignore").decode() or w for w in words]


def _squeeze(word: str, keep: int) -> str:
    """Collapse runs of a repeated letter ("angryyyy") to `keep` letters."""
    return re.sub(r"(.)\1{%d,}" % keep, r"\1" * keep, word)


def _variants(tokens: list[str]) -> list[str]:
    """The token sequence as space-padded strings, raw and with repeated letters squeezed."""
    return list(dict.fromkeys(" " + " ".join(_squeeze(t, k) if k else t for t in tokens) + " " for k in (0, 2, 1)))


@lru_cache(maxsize=256)
def _compile(keyword: str) -> re.Pattern:
    """A keyword or phrase as a whole-word pattern; a trailing * matches any word ending ("refund*")."""
    words = normalise(keyword.rstrip("*"))
    body = r"\s".join(re.escape(w) for w in words)
    tail = r"\w*" if keyword.endswith("*") else ""
    return re.compile(r"(?<=\s)" + body + tail + r"(?=\s)")


def find_keywords(texts: list[str], keywords: list[str]) -> list[str]:
    """The keywords found in a message's variants (`_variants`, computed once per message)."""
    return [k for k in keywords if any(_compile(k).search(t) for t in texts)]


@dataclass(frozen=True)
class RuleResult:
    intent: str
    confidence: float
    priority: int
    band: str
    escalate: bool
    reasons: list[str] = field(default_factory=list)
    truncated: bool = False

    def tag_line(self) -> str:
        reasons = ",".join(self.reasons) if self.reasons else "none"
        return (f"[intent={self.intent} priority={self.priority}/{self.band} "
                f"escalate={'yes' if self.escalate else 'no'} reasons={reasons}]")

    def to_dict(self) -> dict:
        return asdict(self) | {"tags": self.tag_line()}


def sanitise(text: str) -> str:
    """Customer text made safe to place in a prompt: no chat-control tokens, no forged tag lines."""
    text = _BRACKETED_CONTROL.sub(r"(\1)", _CONTROL_TOKENS.sub(" ", text))
    return _TAG_LIKE.sub(lambda m: "(" + m.group(0)[1:], text)


def truncate(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit].rstrip() + "…", True)


def _label(keyword: str) -> str:
    return re.sub(r"\W+", "_", keyword.rstrip("*").strip().lower()).strip("_")


def classify_intent(texts: list[str], params: RulesParams) -> tuple[str, float, list[str]]:
    """Intent with the most keyword hits in a message's variants; ties go to the intent listed first in params."""
    scores = {}
    for name, intent in params.intents.items():
        hits = find_keywords(texts, intent.keywords)
        if hits:
            scores[name] = (len(hits), hits)
    if not scores:
        return params.default_intent, 0.0, []
    order = list(params.intents)
    best = max(scores, key=lambda n: (scores[n][0], -order.index(n)))
    total = sum(s[0] for s in scores.values())
    return best, round(scores[best][0] / total, 3), scores[best][1]


def apply_rules(text: str, params: RulesParams, context: str = "") -> RuleResult:
    """Run every rule on a customer message (and the preceding turn of its thread, if any)."""
    text = text if isinstance(text, str) else ""
    text, truncated = truncate(text, params.max_message_chars)
    tokens = normalise(text)
    texts = _variants(tokens)
    reasons = [_label(k) for k in find_keywords(texts, params.escalation_keywords)]
    reasons = [c for c, words in params.safety_keywords.items() if find_keywords(texts, words)] + reasons
    escalate = bool(reasons)
    intent, confidence, _ = classify_intent(texts, params)
    weight = params.intents[intent].weight if intent in params.intents else 0
    priority = weight + (params.escalation_priority_boost if escalate else 0)
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 8 and sum(c.isupper() for c in letters) / len(letters) > 0.7:
        priority += params.caps_boost
        reasons.append("all_caps")
    if re.search(r"[!?]{2,}", text):
        priority += params.punctuation_boost
        reasons.append("punctuation")
    if find_keywords(texts, params.profanity):
        priority += params.profanity_boost
        reasons.append("profanity")
    if context.strip():
        priority += params.repeat_contact_boost
        reasons.append("repeat_contact")
    if truncated:
        reasons.append("truncated")
    if not tokens:
        reasons.append("no_words")
    priority = max(0, min(100, priority))
    band = "low"
    for name, threshold in sorted(params.bands.items(), key=lambda kv: kv[1]):
        if priority >= threshold:
            band = name
    return RuleResult(intent, confidence, priority, band, escalate, list(dict.fromkeys(reasons)), truncated)


def escalation_scores(labelled: list[dict], escalated: list[bool]) -> dict:
    """Recall (0-100) of the rules on labelled messages (`escalate`, `category`), overall and per category, and the
    share of the messages that need no escalation which they escalate all the same."""
    pos = [(x, e) for x, e in zip(labelled, escalated) if x["escalate"]]
    neg = [e for x, e in zip(labelled, escalated) if not x["escalate"]]
    by_cat: dict[str, list[bool]] = {}
    for x, e in pos:
        by_cat.setdefault(x.get("category", "other"), []).append(e)

    def pct(hits: list[bool]) -> float:
        return round(100 * sum(hits) / len(hits), 2) if hits else 0.0

    return {"positives": len(pos), "negatives": len(neg), "recall": pct([e for _, e in pos]),
            "false_escalation_rate": pct(neg), "recall_per_category": {c: pct(v) for c, v in sorted(by_cat.items())}}
