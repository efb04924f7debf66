"""Text normalisation of tweets: mentions, handles, URLs, entities, agent sign-offs, whitespace."""
from __future__ import annotations

import html
import re

import pandas as pd

USER = "@user"
URL = "<url>"

_LEADING_MENTIONS = re.compile(r"^(?:\s*@\w+)+[\s:,]*")
_HANDLE = re.compile(r"(?<![\w@])@\w+")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_WS = re.compile(r"\s+")
# Agent sign-offs closing a reply: "^JK", "-Becky", "- AA", "~MR", "/TJ", "*CL", "–Dan C".
_SIGNATURE = re.compile(r"\s*(?:\^|\s[-–—~/*]|^[-–—~/*])\s?[A-Z][A-Za-z]{0,15}(?:\s?[A-Z]{1,2}\.?)?\s*$")


def _collapse(s: pd.Series) -> pd.Series:
    return s.str.replace(_WS, " ", regex=True).str.strip()


def clean_texts(texts: pd.Series, strip_signatures: bool = False) -> pd.Series:
    """Vectorised cleaning of a column of tweets (customer or brand)."""
    s = texts.fillna("").astype(str)
    s = s.map(html.unescape) if s.str.contains("&", regex=False).any() else s
    s = _collapse(s)  # also turns bare CRs/newlines into spaces
    s = s.str.replace(_LEADING_MENTIONS, "", regex=True)
    s = s.str.replace(_URL, URL, regex=True)
    s = s.str.replace(_HANDLE, USER, regex=True)
    if strip_signatures:
        s = s.str.replace(_SIGNATURE, "", regex=True)
    return _collapse(s)


def clean_text(text: str, strip_signatures: bool = False) -> str:
    """Cleaning of one message, the same rules as `clean_texts` (used when serving)."""
    return clean_texts(pd.Series([text]), strip_signatures).iloc[0]
