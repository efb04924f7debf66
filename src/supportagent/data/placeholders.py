"""Cleaning masks (`<url>`, `@user`) never reach a customer: served replies get the brand's link or lose the sentence.

The model learns from cleaned replies, so it writes the masks the cleaning put in (many train
replies carry `<url>`). Before a reply is sent, `<url>` becomes the brand's `brands.<brand>.support_url`
from policy.yaml. A mask that cannot be filled (no link for the brand, or a masked `@user` handle,
whose account is unknown) takes its whole sentence with it; a reply left empty, or written empty, becomes
`NO_LINK`. Initials that sign a brand agent's replies (SpotifyCares' "/JM" before the link), which the model copies
from the replies it learned from, are dropped: the agent signs as no one. So is a last sentence that Twitter cut
("We'll be... <url>": the link led to the whole tweet), which the model copies too: it would reach the customer
unfinished. And the number that opens the first tweet of a brand's thread ("1: Thanks!"): the agent sends one.
Scoring still compares the masked model output with the masked reference."""
from __future__ import annotations

import re

from .cleaning import URL, USER

MASK = re.compile(re.escape(URL) + "|" + re.escape(USER) + r"\b")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
NO_LINK = "Please send us a Direct Message so we can take a closer look."
_INITIALS = re.compile(r"\s*(?<![\w/])/(?:[A-Z]{1,3}\b)?\s*(?=(?:/[A-Z]{1,3}\b\s*)*(?:" + re.escape(URL) + r"\s*)?$)")
_PART = re.compile(r"^\s*1(?:/\d)?:\s*(?=\D)|^\s*1/\d\s+")
_CUT = re.compile(r"(?<=[.!?])\s+[^.!?…]*\w(?:\.\.\.|…)(?=\s*(?:" + re.escape(URL) + r")?[^\w<]*$)")


def has_mask(text: str) -> bool:
    return bool(MASK.search(text))


def fill(text: str, link: str | None = None) -> str:
    """`text` with its first `<url>` replaced by `link`, and every sentence holding a mask it cannot fill dropped: a
    second `<url>` stood for another link than the first, and the brand's one link twice says nothing more."""
    if link:
        text = text.replace(URL, link, 1)
    if not has_mask(text):
        return text
    kept = [s for s in _SENTENCE_END.split(text) if not has_mask(s)]
    return " ".join(kept).strip() or NO_LINK


def serve(text: str, brand: str, brands: dict) -> str:
    """The reply a customer of `brand` receives (`brands`: params.brands); never empty (a model that wrote
    nothing, or only masks, gets `NO_LINK`)."""
    conf = brands.get(brand)
    unsigned = re.sub(r" {2,}", " ", _INITIALS.sub(" ", _CUT.sub("", _PART.sub("", text, count=1)))).strip()
    return fill(unsigned, conf.support_url if conf is not None else None).strip() or NO_LINK
