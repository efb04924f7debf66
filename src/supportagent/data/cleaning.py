"""Text normalisation of tweets: mentions, handles, URLs, entities, agent sign-offs, whitespace.

The patterns are RE2 (run by pyarrow on whole columns, much faster than Python's `re` row by row);
their character classes spell out what Python's Unicode `\\s` and `\\w` match, so results equal
Python's, and RE2 has no look-behind, so the handle rule keeps the character before the handle.
One message (serving) is cleaned by the same patterns on the `regex` module, which reads their `\\p{..}` classes:
a column pass pays a fixed cost before its first row (pandas and pyarrow read each pattern anew), which one
message should not; tests/test_data.py checks the two engines agree."""
from __future__ import annotations

import html
from functools import lru_cache

import numpy as np
import pandas as pd
import regex

USER = "@user"
URL = "<url>"

_S = r"\t\n\v\f\r\x1c-\x1f\x85\p{Z}"  # Python's str.isspace()
_W = r"\p{L}\p{N}_"  # Python's \w: str.isalnum() or "_"
NON_LETTERS = r"[^\p{L}\p{Nl}\p{No}]+"  # runs of anything but Python's [^\W\d_] (letters)
_LEADING_MENTIONS = rf"^(?:[{_S}]*@[{_W}]+)+[{_S}:,]*"
_HANDLE = rf"(^|[^{_W}@])@[{_W}]+"  # a handle not glued to a word or another handle
_URL = rf"(?i)(?:https?://|www\.)[^{_S}]+"
_WS = rf"[{_S}]+"
# Agent sign-offs closing a reply: "^JK", "-Becky", "- AA", "~MR", "/TJ", "*CL", "–Dan C".
_SIGNATURE = (rf"[{_S}]*(?:\^|[{_S}][-–—~/*]|^[-–—~/*])[{_S}]?[A-Z][A-Za-z]{{0,15}}"
              rf"(?:[{_S}]?[A-Z]{{1,2}}\.?)?[{_S}]*$")
ARROW_STR = pd.StringDtype("pyarrow", na_value=np.nan)


def _collapse(s: pd.Series) -> pd.Series:
    return s.str.replace(_WS, " ", regex=True).str.strip()


def clean_texts(texts: pd.Series, strip_signatures: bool = False) -> pd.Series:
    """Vectorised cleaning of a column of tweets (customer or brand)."""
    s = texts.fillna("").astype(ARROW_STR)
    entity = s.str.contains("&", regex=False)
    if entity.any():
        s = s.where(~entity, s[entity].map(html.unescape)).astype(ARROW_STR)
    s = _collapse(s)  # also turns bare CRs/newlines into spaces
    s = s.str.replace(_LEADING_MENTIONS, "", regex=True)
    s = s.str.replace(_URL, URL, regex=True)
    s = s.str.replace(_HANDLE, r"\1" + USER, regex=True)
    if strip_signatures:
        s = s.str.replace(_SIGNATURE, "", regex=True)
    return _collapse(s)


@lru_cache(maxsize=None)
def _pattern(rule: str) -> regex.Pattern:
    return regex.compile(rule)


def clean_text(text: str, strip_signatures: bool = False) -> str:
    """Cleaning of one message (serving), the rules of `clean_texts` in the same order."""
    s = text if isinstance(text, str) else ""
    if "&" in s:
        s = html.unescape(s)
    s = _pattern(_WS).sub(" ", s).strip()
    s = _pattern(_LEADING_MENTIONS).sub("", s)
    s = _pattern(_URL).sub(URL, s)
    s = _pattern(_HANDLE).sub(r"\1" + USER, s)
    if strip_signatures:
        s = _pattern(_SIGNATURE).sub("", s)
    return _pattern(_WS).sub(" ", s).strip()
