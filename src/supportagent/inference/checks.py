"""Checks on what the agent is about to send: each check is named, reads one served reply (masks filled) with the
customer message it answers, and says why it flags it. `check_reply` runs them all; `guard.py` decides what is
sent. Measured on tests/data/reply_checks.jsonl and the test split's real replies (benchmarks/reply_checks.py).

A check that cannot run (an empty reply, a missing model file) flags the reply with a reason that says what to do:
the checks fail closed."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from urllib.parse import urlparse

from ..data.overlap import lcs_f1, repetition, rouge_tokens

@dataclass(frozen=True)
class Flag:
    check: str  # one of CHECKS (the names of RUN, below)
    reason: str  # what was seen, for the log and the review

    def __str__(self) -> str:
        return f"{self.check}: {self.reason}"


@dataclass(frozen=True)
class Context:
    """What a reply is checked against: the message it answers, the previous turn, whether the rules escalated it,
    the brand's support link and its other allowed contacts (params.brands), and whether decoding was cut off.
    `harm`: the rules escalated it for a category of rules.safety_keywords (injury, fraud, food safety, ...);
    `intent`: the rules' intent of the message (params rules.intents)."""
    message: str
    previous: str = ""
    escalate: bool = False
    harm: bool = False
    intent: str = ""
    support_url: str | None = None
    contacts: tuple[str, ...] = ()
    truncated: bool = False

    @property
    def said(self) -> str:
        """The message with the turn it answers: what the conversation has said so far."""
        return f"{self.message} {self.previous}"


def _rx(*parts: str) -> re.Pattern:
    return re.compile("|".join(parts), re.IGNORECASE)


def _first(pattern: re.Pattern, text: str) -> str | None:
    m = pattern.search(text)
    return m.group(0) if m else None


# --- leaked prompt, template or tag text (prompts.py writes these; a reply never should)
_LEAK = _rx(r"\b(customer|reply|previous turn|user|assistant|system)\s*:",
            r"\[\s*(intent|priority|escalate|reasons|examples)\s*[=:]",
            r"\b(intent|priority|escalate|reasons)=\w", r"<\|[^|>]{0,40}\|>|</?s>|\[/?INST\]|<<SYS>>",
            r"\breplies \S+ sent to similar messages\b", r"\breplies other brands sent\b",
            r"\breply in one short,? polite tweet\b", r"\byou are \S+ customer support\b", r"<url>|@user\b",
            # a template's blank ("at [address]"), not a step of a settings path ("Settings > [your name] > iCloud")
            r"(?<!> )\[[a-z][a-z' ]{1,28}\](?! ?>)",
            r"</?(?:url|user|p|br|a|b|i|div|span|em|strong)\b[^>]{0,20}>",  # markup
            # a desk's signature ("/NH") with more words after it: real replies sign at the end
            r"(?<![\w:/.])/[a-z]{1,4}\b(?![/.])(?=\s+[a-z])")


def leaked_prompt(reply: str, ctx: Context) -> str | None:
    hit = _first(_LEAK, reply)
    return f"prompt or template text in the reply: {hit!r}" if hit else None


# --- cut mid-sentence, or repeating itself
_DANGLING = _rx(r"\b(the|a|an|to|and|or|of|for|with|your|our|my|via|but|because|if|than)\s*$", r"[,:;(\-–]\s*$",
                # Twitter's cut ("just give us a... <link>"), which the model copies from the replies it learned from
                r"[\w:,;](?:\.\.\.|…)\s*(?:https?://\S+\s*)?[^\w\s]{0,3}\s*$",
                r'^[^"]*"\W*$')  # a quotation mark that closes nothing


def unfinished(reply: str, ctx: Context) -> str | None:
    if ctx.truncated:
        return "the reply hit the length limit before it ended"
    hit = _first(_DANGLING, reply.strip())
    return f"the reply stops mid-sentence ({hit.strip()!r} at the end)" if hit else None


_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_DOUBLED = _rx(r"\b(\w{4,}), \w+, \1\b",  # "the weirdest, sweetest, weirdest thing"
               r"\bdm us (?:a |an |your )?dm\b", r"\b(?:send|message) us (?:a |an )?(?:dm|message) (?:a |an )?dm\b")


def looping(reply: str, ctx: Context) -> str | None:
    sentences = [s.strip().lower() for s in _SENTENCE.findall(reply) if len(s.split()) >= 3]
    words = [" ".join(re.findall(r"[\w']+", s)) for s in sentences]
    twice = sorted(s for i, s in enumerate(words) if any(i != j and f" {s} " in f" {t} " for j, t in enumerate(words)))
    if twice:  # the same sentence, or one said again inside another ("Here to help. We're here to help.")
        return f"a sentence stands twice: {twice[0]!r}"
    if repetition(reply) > 0.25:
        return f"{100 * repetition(reply):.0f}% of its 3-word runs repeat"
    doubled = _first(_DOUBLED, reply)
    if doubled:
        return f"a garbled phrase: {doubled!r}"
    starts = [m.start() for m in _APOLOGY.finditer(reply)]
    if any(b - a < 50 for a, b in zip(starts, starts[1:])):  # real replies apologise once, or again at the end
        return "apologises twice in a row"
    links = re.findall(r"https?://\S+", reply)
    if len(links) != len(set(links)):
        return "the same link stands twice"
    return None


# --- requests for secrets (anywhere), and for contact details in public
_NEG = r"(?<!never )(?<!not )(?<!n't )(?<!without )(?<!no )"
_ASK = (r"(send|share|provide|give|dm|tell|confirm|include|reply(?: here)? with|enter|type|tweet|post|let us know|"
        r"what(?:'s| is| are)|need)")
_SECRET = (r"(password|passcode|pass code|\bPIN\b|pin (?:code|number)|card number|card details|\bCVV\b|\bCVC\b|"
           r"security (?:code|question|answer)s?|social security|\bSSN\b|login details|log-in details|credentials)")
_SECRET_ASK = re.compile(_NEG + r"\b" + _ASK + r"\b[^.!?]{0,50}?" + _SECRET, re.IGNORECASE)


def sensitive_request(reply: str, ctx: Context) -> str | None:
    hit = _first(_SECRET_ASK, reply)
    return f"asks for a secret: {hit!r}" if hit else None


_CONTACT = r"(e-?mail(?: address)?|phone(?: number)?|mobile number|(?:home |street |postal |shipping )?address)"
_PUBLIC_ASK = re.compile(r"\b" + _ASK + r"\b[^.!?]{0,40}?\b(your|the)\s+(?:[\w']+\s+){0,3}?" + _CONTACT, re.IGNORECASE)
_PRIVATE = _rx(r"\bDMs?\b", r"direct message", r"private message", r"\bPM\b", r"\bprivately\b", r"https?://",
               r"\bform\b", r"\bchat with us\b", r"\bcall us\b", r"\bthrough the app\b")


def public_contact_request(reply: str, ctx: Context) -> str | None:
    for sentence in _SENTENCE.findall(reply):
        hit = _first(_PUBLIC_ASK, sentence)
        if hit and not _PRIVATE.search(sentence) and not _PRIVATE.search(reply):
            return f"asks in public for contact details: {hit!r}"
    return None


# --- contact details the brand did not list
_PHONE = re.compile(r"(?<![\w/])\+?\d[\d\s().-]{7,}\d(?![\w/])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_LINK = re.compile(r"(?:https?://|www\.)\S+|\b[\w-]+\.(?:com|net|org|co|io|me|ly|gl|be|de|uk|es|fr)(?:/\S*)?\b",
                   re.IGNORECASE)


def _host(link: str) -> str:
    host = urlparse(link if "://" in link else "http://" + link).netloc.lower()
    return host.removeprefix("www.")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


_CHANNEL = _rx(r"\b(facebook|messenger|instagram|whatsapp|snapchat|linkedin|tiktok|wechat|telegram)\b")


def unknown_contact(reply: str, ctx: Context) -> str | None:
    channel = _first(_CHANNEL, reply)  # one the customer spoke of may be named back
    listed = (ctx.said, ctx.support_url or "", *ctx.contacts)
    if channel and not any(channel.lower() in c.lower() for c in listed):
        return f"a channel the brand does not list: {channel!r}"
    hosts = {_host(c) for c in (ctx.support_url, *ctx.contacts) if c and "." in c and "@" not in c}
    phones = {_digits(c) for c in ctx.contacts if len(_digits(c)) >= 7}
    emails = {c.lower() for c in ctx.contacts if "@" in c}
    for m in _EMAIL.finditer(reply):
        if m.group(0).lower().rstrip(".") not in emails:
            return f"an e-mail address the brand does not list: {m.group(0)!r}"
    given = _digits(ctx.said)  # a number the customer wrote may be repeated
    for m in _PHONE.finditer(reply):
        digits = _digits(m.group(0))
        listed = any(digits.endswith(p) or p.endswith(digits) for p in phones)
        if len(digits) >= 7 and digits not in given and not listed:
            return f"a phone number the brand does not list: {m.group(0).strip()!r}"
    for m in _LINK.finditer(_EMAIL.sub(" ", reply)):
        host = _host(m.group(0).rstrip(".,!?)"))
        if not any(host == h or host.endswith("." + h) for h in hosts):
            return f"a link the brand does not list: {m.group(0)!r}"
    return None


# --- language: the reply's against the message's (py3langid, whose model ships in its package)
LANGUAGES = ("en", "es", "de", "fr", "pt", "it", "nl")  # the brands' languages in the data, and near neighbours
MIN_WORDS = 4  # fewer words say too little about a language
MIN_PROBABILITY = 0.95


@lru_cache(maxsize=1)
def _identifier():
    try:
        from py3langid.langid import _load_identifier

        return _load_identifier(norm_probs=True, langs=list(LANGUAGES))
    except (ImportError, OSError) as err:
        raise CheckUnavailable(f"py3langid's model cannot be loaded ({err}): reinstall it with `pip install -e .`") \
            from err


_WORD = re.compile(r"[^\W\d_]{2,}")


@lru_cache(maxsize=4096)  # a message is checked against each of its candidates
def language(text: str) -> str | None:
    """The language of `text` where it says enough (MIN_WORDS words, MIN_PROBABILITY), else None."""
    text = re.sub(r"https?://\S+|@\w+|#", " ", text)
    if len(_WORD.findall(text)) < MIN_WORDS:
        return None
    lang, prob = _identifier().classify(text)
    return lang if prob >= MIN_PROBABILITY else None


def conversation_language(message: str, previous: str = "") -> str | None:
    """The message's language; where the message says too little ("Feliz #Halloween2017"), that of the message
    with the previous turn it answers."""
    return language(message) or (language(f"{previous} {message}") if previous else None)


# a reply that speaks of the language (a hand-over to a desk in the customer's language), or a message that asks for
# the reply's language, is answered in the other language on purpose
_NAMES = {"en": r"english|englisch|ingl[eé]s|anglais", "es": r"spanish|espa[nñ]ol|spanisch|espagnol",
          "de": r"german|deutsch|alem[aá]n|allemand", "fr": r"french|fran[cç]ais|franz[oö]sisch|franc[eé]s",
          "pt": r"portuguese|portugu[eê]s|portugiesisch", "it": r"italian|italiano|italienisch",
          "nl": r"dutch|nederlands"}
_LANGUAGE_TALK = _rx(r"\b(your|preferred|own) language\b", r"\bin (" + "|".join(_NAMES.values()) + r")\b")


def language_mismatch(reply: str, ctx: Context) -> str | None:
    asked, answered = conversation_language(ctx.message, ctx.previous), language(reply)
    if not (asked and answered and asked != answered) or _LANGUAGE_TALK.search(reply):
        return None
    if re.search(r"\b(" + _NAMES[answered] + r")\b", ctx.said, re.IGNORECASE):
        return None
    return f"the message is in {asked}, the reply in {answered}"


# --- mood: cheering a complaint, or apologising to a happy customer (VADER, whose lexicon ships in its package)
class CheckUnavailable(RuntimeError):
    """A check's model or lexicon cannot be loaded; the reply is flagged, never passed."""


@lru_cache(maxsize=1)
def _sentiment():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        return SentimentIntensityAnalyzer()
    except (ImportError, OSError) as err:
        raise CheckUnavailable(f"VADER's lexicon cannot be loaded ({err}): reinstall vaderSentiment with "
                               "`pip install -e .`") from err


_PROBLEM = _rx(r"\b(not|n't|never|no longer|still|can'?t|cannot|won'?t|doesn'?t|didn'?t|isn'?t|wasn'?t|haven'?t|"
               r"hasn'?t)\b"
               r"[^.!?]{0,30}\b(work|working|arriv|load|play|open|respond|help|fix|deliver|come|show|sync|connect|answer|"
               r"see|find|access|log ?in|sign ?in|download|install|update)",
               r"\b(broken|botched|stuck|missing|lost|wrong|crash\w*|fail|failed|fails|late|cold|rude|worst|terrible|awful|"
               r"annoy\w*|frustrat\w*|disappoint\w*|piss(?:ed|ing)?(?: me)? off|hurt|injur\w*|accident|(?<!i )forgot|"
               r"upset|useless|ridiculous|"
               r"undercook\w*|overcook\w*|burnt|stale|bone in|hair in|no response|still waiting|overcharg\w*|"
               r"false charges?|charged (?:twice|double|again))\b",
               r"\bstill (?:gone|happening|the same|down|an issue|a problem)\b",
               r"\b(?:too often|keeps? (?:happening|crashing|freezing|stopping|skipping|pausing))\b",
               r"\b(?:tried|did|done) (?:literally )?everything\b",
               # something paid for or waited on that never came ("the money I've paid for things I haven't gotten")
               r"\b(?:haven'?t|hasn'?t|didn'?t|did not|have not|has not|not yet|yet to) (?:\w+ ){0,2}?"
               r"(?:gotten|got|received|heard back)\b",
               r"\b(?:it'?s|that'?s|so|very|really) (?:weird|strange|odd)\b",
               r"\bnever used to\b", r"\b(?:did ?n'?t|did not|never) (?:do|happen)(?:ed)? (?:that|this|it) before\b",
               r"\b(?:been )?going on (?:for|since)\b", r"\bsame (?:issue|problem|error)\b",
               r"\b(?:having|experiencing|getting|facing) (?:some |an? |the same |the |more |these |those )?"
               r"(?:issues?|problems?|trouble|errors?)\b",
               r"\b(?:is|are|was|were|has|have|got) (?:gone|missing|disappeared|vanished|deleted)\b",
               r"\b(?:it|this|that) worked for (?:a|an|one|\d+|a few|only) \w+",  # and stopped
               r"\b(?:helps?|helped|works?|fixe[sd]) (?:it |things )?(?:only )?for (?:a few|a couple of|a|an|\d+) "
               r"(?:minutes?|mins?|seconds?|secs?|hours?|days?|while)\b",
               # the answer to a suggested fix: "It did not." / "Nope, that didn't help"
               r"^\W*(?:no(?:pe)?\W+)?(?:it|that|this)(?: still)? (?:did not|didn't|does not|doesn't|has not|hasn't)"
               r"(?: (?:work|help|change anything|fix it))?\W*(?:$|[.!]|but\b)")
_RESOLVED = _rx(_NEG + r"\b(works|working|playing|loading|showing|syncing) (now|again)\b",
                r"\b(?:seems?|seemed) to (?:do the trick|have worked|work now|be working)\b", r"\bactually found\b",
                r"\b(it's|its|it is|all) (sorted|fixed)\b",
                r"\bsorted now\b", r"^\W*works\b", r"\bresol(ved|ving)\b",
                r"\bfound a (?:work-? ?around|fix|solution)\b",
                r"\b(?:(that|it|this) (worked|helped|did it|did the trick)|fixed (it|now))\b"
                r"(?! for (?:a|an|one|\d+|a few) \w+| until| but| somewhat)",
                r"\ball good\b", r"\bback to normal\b", r"\bgot it (?:done|sorted|fixed|working|to work)\b",
                r"\b(?:that|this) (?:has )?sorted (?:it|things|that|this)\b",
                r"\balready (?:handled|sorted|resolved|fixed|taken care of)\b",
                r"\b(?:they'?re|theyre|they are|it'?s|its|it is|everything'?s|everything is)(?: all)? back now\b")
_CHEER = _rx(r"\b(awesome|yay+|woo+hoo+|hooray|fantastic|great news|great to hear|good to hear|glad to hear|"
             r"happy to hear|love to hear|glad to know|love that|so glad|glad (?:it|that|you|everything)|that's great|"
             r"thats great|sounds great|how exciting|congrat\w*|enjoy(?: it| your| the)?[!.])",
             # thanks for praise, said to a complaint
             r"\bshout ?-?out\b", r"\b(?:thanks?|thank you) (?:so much )?for stopping by\b",
             r"\bappreciate you stopping by\b",
             r"\bwe love (?:you|that|this|it)\b", r"\bi love (?:that|this|it)\b", r"\bmade (?:our|my) day\b",
             r"\b(?:well|nicely) done\b", r"^\W*m{3,}\b", r"^\W*great\s*[!.]", r"\bthat'?s a great\b",
             r"\bthat'?s (?:just )?what (?:i|we) (?:like|love) to hear\b",
             r"\bsuch a great (?:option|choice|deal|idea|time|day)\b",
             r"\b(?:thanks|thank you) (?:so much )?for the (?:compliment|kind words|love)\b",
             # agreement that answers banter, said to a complaint
             r"^\W*(?:(?:that'?s right|that'?s the (?:thing|truth)|agreed|truth|true story|so true|totally|"
             r"yeah,? buddy|heck yeah)\b|right\?)")
_FIX = _rx(r"\b(?:try|trying|tried|could you|can you|are you able to|please) (?:to )?"
           r"(?:restart|reinstall|re-install|log(?:ging)? out|sign(?:ing)? out|"
           r"reset|updat|clear|reboot|delet)\w*",
           r"\b(?:does|did|would|will) [^.!?]{0,60}\bhelp\b[^.!]*\?")  # "does logging out help any?"
_SORRY_FOR = r"\bsorry (?:for|about) (?:the|any|this|that) "
_SORRY_YOU = (r"\bsorry (?:you|that you)(?:'re| are| have|'ve| did|didn't)", r"\bsorry to hear (?:that|this|about)")
_OPEN_PROBLEM_APOLOGY = _rx(_SORRY_FOR + r"(?:delay|wait|trouble|confusion|inconvenience|frustration|disappointment|"
                            r"issue|problem)", *_SORRY_YOU)
# the same, said to a question that reports no problem: a wait is _UNREPORTED's ("where is my package" reports one),
# and "sorry for the trouble / the inconvenience" is the courtesy of a hand-over, the brands' fallback reply among them
_UNCAUSED_APOLOGY = _rx(_SORRY_FOR + r"(?:confusion|frustration|disappointment|issue|problem)", *_SORRY_YOU)
# an apology that the customer did not write: blame, where the brand's own failures (a reply never heard, a line that
# could not be reached) are worth the apology
_BLAME = _rx(r"\bsorry (?:that )?you (?:didn'?t|did not|never) (?:write|contact|reach out|message|dm|tweet|call|tell|"
             r"let us know)\b")
# concern voiced at what the customer said ("That's concerning.")
_CONCERN = _rx(r"^\W*(?:oh no\W+)?(?:that'?s|this is|that is|that sounds|this sounds) (?:very |really |so )?"
               r"(?:concerning|troubling|alarming|worrying|odd|strange|not good|not ok|not okay|frustrating)\b")
_APOLOGY = _rx(r"\b(sorry|apologi[sz]e|apologies|we regret)\b")
_SORRY = r"\b(?:sorry|apologi[sz]e|apologies)\b"
_WAITING = _rx(r"\b(late|wait\w*|delay\w*|still|yet|hours?|hrs?|days?|weeks?|minutes?|mins?|long|slow\w*|ago|when|"
               r"never|eta|hasn'?t|haven'?t|not (?:arrived|received|delivered|here|come)|expected|tracking|where|today|"
               r"tomorrow|yesterday|last (?:night|week|month)|since|nothing back|heard nothing|"
               r"no (?:reply|response|answer)|no ?one|nobody|semanas?|d[ií]as|horas?|todav[ií]a|a[uú]n|tagen?|wochen|"
               r"stunden|noch|seit|jours?|semaines?|heures?|encore|toujours)\b")
# a DM spoken of as sent or read (claims_dm where the conversation never mentions one; a problem reopened where
# the customer calls it fixed)
_DM_CLAIM = _rx(r"\b(?:we'?ve|we have|i'?ve|i have) (?:just )?(?:received|got|responded to|replied to|answered) your "
                r"(?:dm|direct message|message|private message)",
                r"\b(?:we'?ve|we have|i'?ve|i have) (?:just )?(?:sent|dropped) you (?:a |an )?"
                r"(?:dm|direct message|reply|message)")
# asking for what troubleshooting needs (account, device, version)
_ASKS_DETAILS = (r"\b(dm|send|share|provide|confirm|tell|give|let) us\b[^.!?]{0,40}\b(e-?mail|username|account|details|"
                 r"version|device|screenshot|order|information|info)"
                 r"|\b(?:share|provide|send|include|enter) (?:your|the|some|more|a few|as many) (?:\w+ ){0,2}?"
                 r"(?:details|info|information)\b")
# a problem reopened: asking for details, or for a DM about it
_DETAILS = _rx(_ASKS_DETAILS,
               r"\b(which|what)[^.!?]{0,20}\b(device|version|model|error)\b",
               r"\b(does|did|is|are|has|have)\b[^.!?]{0,60}\b(working|still|happening)\b[^.!]*\?",
               r"\b(you're|you are|you've been) (still )?(having|experiencing|seeing) (an? )?"
               r"(issues?|trouble|problems?)\b",
               r"\blet'?s (?:continue|keep going|work on (?:this|it)|take (?:this|it) to dm|meet (?:up )?in dm)\b",
               r"\bcontinue (?:working with you |assisting you |helping you |from |over )?(?:there|in dm)\b",
               r"\bmeet (?:us |me |up )?in (?:dm|direct message)", r"\blet'?s work together\b",
               r"\bfigure out what'?s (?:going on|happening)", r"\bcarry on (?:chatting|helping(?: out)?) there\b",
               r"\bdescribe (?:the|your|what)\b",
               _DM_CLAIM.pattern)
# a first message that reports no problem is no support case: real agents never ask it for account details, nor
# offer to investigate
_INVESTIGATE = r"\b(?:investigat\w*|look into (?:this|it)|take a (?:closer |further )?look)\b"
_INVESTIGATING = _rx(_INVESTIGATE)  # an investigation offered reopens a problem the message calls solved
_CASE = _rx(_ASKS_DETAILS, _INVESTIGATE, r"\b(?:reach (?:out to )?us|contact us|troubleshoot\w*)\b",
            r"\b(?:reach|contact)\b[^.!?]{0,40}\bhere\b",  # "You can reach the nearest location here: <url>"
            r"\blet us know (?:in|via|by|through|over) (?:a )?(?:dm|direct message|private message)\b")
# a question how to do something ("How do you switch between multi-room and one speaker?")
_HOW_TO = _rx(r"\bhow (?:do|can|could|would|should) (?:i|you|we|one)\b", r"\bhow to\b", r"\bis (?:there|it possible)\b")
# a feature wished for, or the brand's word that a wish was passed on: nothing on the customer's account to look into
# ("Can you DM us your account's email?" to "Please add a way to see only new releases")
_WISH = _rx(r"\b(?:a|the|this|that|new) feature\b", r"\bfeature request\b",
            r"\b(?:please|pls|plz|can you|could you|will you|would you|you should|you need to|you guys should) "
            r"(?:please )?(?:add|bring back|put back|implement|introduce)\b", r"\bbring (?:it|them|that|this) back\b",
            r"\bwould (?:love|like) (?:to see|it if|if you)\b", r"\bi wish (?:you|there|it|spotify|apple)\b")
_PASSED_ON = _rx(r"\bpass(?:ed|ing)? (?:this|that|it|your \w+)(?: \w+)? (?:on|along)\b",
                 r"\blet (?:the|our) (?:\w+ )?(?:team|folks|devs?|developers) know\b", r"\b(?:relevant|right) folks\b",
                 r"\badd your vote\b", r"\bsomething you'?d (?:like|love) to see\b")
_LOOK_INTO = _rx(_ASKS_DETAILS, _INVESTIGATE, _FIX.pattern)
# a problem the message calls solved is reopened, too, by a DM asked for or work started with no condition in its
# sentence ("Send us a DM and we'll get started" to "Thanks, I got it fixed now"; not "If it happens again, DM us")
_INVITE = _rx(r"\b(?:send|drop|shoot) us an? (?:dm|direct message|message|note)\b", r"\b(?:dm|message) us\b",
              r"\blet'?s get started\b", r"\bwe'?ll get started\b",
              r"\blet'?s (?:take|move) (?:this|it) to (?:a )?dm\b")
_CONDITION = _rx(r"\b(?:if|whenever|should|in case|anytime|any time|next time|ever|again)\b")


def _invites(reply: str) -> str | None:
    """The first invitation to a DM or to start work that no condition in its sentence holds back."""
    for sentence in re.split(r"(?<=[.!?])\s+", reply):
        hit = None if _CONDITION.search(sentence) else _first(_INVITE, sentence)
        if hit:
            return hit
    return None


# what a message about a delivery says
_DELIVERY = _rx(r"\b(deliver\w*|dlvd|arriv\w*|receiv\w*|package|parcel|ship\w*|tracking|courier|driver|carrier|"
                r"mail\w*|order\w*|wheres?|came|come|coming|got|get|showed|missing|lost|stolen|bestellung|angekommen|"
                r"geliefert|lieferung|paket|pedido|paquete|env[ií]o|llegado|llega|entrega|commande|colis|"
                r"livraison|re[çc]u|livr[ée]e?)\b")
# what a message about a damaged or wrong item says
_DAMAGE = _rx(r"\b(damag\w*|broke\w*|condition|rattl\w*|scratch\w*|crush\w*|dent\w*|torn|wrong|"
              r"incorrect|defect\w*|missing|smash\w*|crack\w*|leak\w*|opened|box|packag\w*|misship\w*|mix-?up|"
              r"instead)\b")
# a specific problem the reply apologises for, and the words a message that reports it uses (or its previous turn)
_UNREPORTED = {
    "a wait": (_rx(_SORRY + r" (?:for|about) (?:the|any|this|your) (?:delay|wait)"), _WAITING),
    "a delivery": (_rx(_SORRY + r"[^.!?]{0,30}?\b(?:(?:has ?n[o']t|have ?n[o']t|did ?n[o']t|was ?n[o']t|"
                       r"were ?n[o']t|not|never) (?:yet )?(?:arrived?|been delivered|delivered|received?|come|"
                       r"shown up)|delivery (?:issue|problem)|missing (?:package|parcel)|"
                       r"(?:you(?:'ve| have)? )?(?:received |got )?(?:an? )?lost (?:your |the )?"
                       r"(?:order|package|parcel|item|delivery))"),
                   _DELIVERY),
    "a confusion": (_rx(_SORRY + r" (?:for|about) (?:the|any|this|that) (?:confusion|misunderstanding)"),
                    _rx(r"\?|\b(?:confus\w*|understand\w*|unclear|mean\w*|talk\w* about|said|says|read|incomplete|"
                        r"explain\w*|misunderst\w*|not what|wrong|which|what|how|why|huh|wtf)\b")),
    "a death": (_rx(_SORRY + r" (?:for|about) your loss\b"),
                _rx(r"\b(died|dies|passed away|passing|death|dead|funeral|condolences|deceased|memorial|rip|r\.i\.p|"
                    r"murdered|killed)\b")),
    "an item's condition": (_rx(_SORRY + r"[^.!?]{0,30}?\b(?:(?:arrived|came|received) (?:in (?:this|that|such|these) "
                                r"condition|damaged|broken)|(?:an? |the )?(?:incorrect|wrong|damaged|broken|defective) "
                                r"(?:item|order|product))"),
                            _DAMAGE),
    # an error on the customer's screen, apologised for where the message shows or speaks of none ("I'm sorry you've
    # received an error." to thanks for style advice)
    "an error": (_rx(_SORRY + r"[^.!?]{0,30}?\b(?:an|the|this|that|these|those) (?:\w+ )?errors?\b"),
                 _rx(r"\b(errors?|wrong|problems?|issues?|work\w*|crash\w*|fail\w*|bugs?|glitch\w*|messages?|says|said|"
                     r"tells|shows|showing|screen\w*|pop-?ups?|codes?|won'?t|can'?t|cannot|unable|not)\b|n't")),
    # an order that came, apologised for as such ("I'm sorry you have received your order."), where the message
    # speaks of no delivery, nor of anything wrong with what came
    "an order that came": (_rx(_SORRY + r" (?:that )?you(?:'ve| have)? (?:received|got) (?:your|the) "
                               r"(?:order|package|parcel|item|delivery)"
                               r"(?! (?:damaged|broken|late|in|with|without|but|yet|after|that|which)\b)"),
                           _rx(_DAMAGE.pattern, _DELIVERY.pattern)),
}


# a service switched off or down, explained to a message that reports nothing of the kind (a past reply about an
# outage, sent to a question about a menu or a location)
_OUTAGE = _rx(r"\b(?:turned|turn|shut|switched|took) (?:it |online ordering |ordering |the app |the site )?off\b",
              r"\b(?:it'?ll|it will|will) be back (?:on|up|online)\b", r"\b(?:outage|is down|are down|went down)\b")
# (an order made in the app is no failing app: "Quality Control on app orders", "app order messed up AGAIN")
_OUTAGE_SAID = _rx(r"\b(?:app(?! orders?\b)|online|website|site|ordering|down|crash\w*|load\w*|work\w*|error\w*|broken|"
                   r"unavailable|offline|outage|off)\b")
_PICTURE = _rx(r"<url>|https?://")  # a link in the message: a picture, which may show a problem


# emojis VADER reads by their names as negative ("fire", "ghost") where tweets mean praise and Halloween
_UNMOODY = str.maketrans({"\U0001f525": " ", "\U0001f47b": " "})


# faces and signs of dismay, which VADER reads as neutral ("...and no chips😤😔"): a customer to cheer no more than one
# who complains, though not always one with a problem still open ("Not right now 👎" to a feature declined); not 😭,
# also said laughing
_DISMAY = re.compile("[\U0001F494\U0001F614\U0001F61E\U0001F61F\U0001F622\U0001F625\U0001F629\U0001F62B"
                     "\U0001F624\U0001F620\U0001F621\U0001F92C\U0001F44E\u2639\U0001F641\U0001F612\U0001F623"
                     "\U0001F616]")

# idioms VADER reads as negated praise
_IDIOMS = _rx(r"\bcould(?:n'?t| not) (?:be|have been) (?:happier|better)\b")


@lru_cache(maxsize=4096)  # a message is checked against each of its candidates
def _mood(message: str) -> dict:
    return _sentiment().polarity_scores(_IDIOMS.sub("am very happy", message.translate(_UNMOODY)))


def _resolved(message: str) -> bool:
    return bool(_RESOLVED.search(message)) and not re.search(r"\bstill\b", message, re.IGNORECASE)


def _troubled(ctx: Context) -> bool:
    """The message reports a problem (a harm the rules found, a negative mood or problem words) it does not call
    solved."""
    return ctx.harm or (_mood(ctx.message)["compound"] <= -0.3 or bool(_PROBLEM.search(ctx.message))) \
        and not _resolved(ctx.message)


def mood_mismatch(reply: str, ctx: Context) -> str | None:
    message = ctx.message
    mood = _mood(message)
    resolved = _resolved(message)
    troubled = _troubled(ctx)
    dismayed = bool(_DISMAY.search(message))
    cheer = _first(_CHEER, reply)
    if (troubled or dismayed) and cheer:
        return f"cheers ({cheer!r}) a message that reports a problem"
    negated = re.search(r"\?|\b(still|not|never|no|nothing|cannot|unable)\b|n't", message, re.IGNORECASE)
    # no negative word, problem, negation or face of dismay: a message that is pleased (or praises), or at least glad
    calm = mood["neg"] == 0 and not _PROBLEM.search(message) and not negated and not dismayed
    praise = ctx.intent == "praise"
    pleased = (mood["compound"] >= 0.5 or praise) and calm
    sorry = _first(_APOLOGY, reply)
    if pleased and sorry:
        return f"apologises ({sorry!r}) to a customer who is pleased"
    reopened = _first(_OPEN_PROBLEM_APOLOGY, reply) or _first(_FIX, reply) or _first(_DETAILS, reply) \
        or _first(_INVESTIGATING, reply) or _invites(reply)
    if resolved and reopened:
        return f"treats a problem the message says is solved as open ({reopened!r})"
    # the previous turn called it solved ("We're glad it's working now"), and the message raises nothing new
    closed = _resolved(ctx.previous) and not troubled and not _ASKS.search(message)
    if closed and reopened:
        return f"treats a problem the previous turn calls solved as open ({reopened!r}), though the message raises none"
    glad = (mood["compound"] >= 0.3 or praise) and calm
    invented = _first(_OPEN_PROBLEM_APOLOGY, reply)
    if glad and invented:
        return f"apologises for a problem ({invented!r}) the message does not report"
    # a first message that asks something, with no problem, negation, dismay or picture (which may show a problem):
    # nothing to be sorry or concerned about ("can I still get double meat for $3?")
    question = _HOW_TO.search(message) or _asks(message) \
        and not re.search(r"\b(?:not|never|cannot|no)\b|n't", message, re.IGNORECASE)
    asking = not ctx.previous and question and not troubled and not dismayed \
        and not _PICTURE.search(message)
    uncaused = _first(_UNCAUSED_APOLOGY, reply) or _first(_CONCERN, reply) if asking else None
    if uncaused:
        return f"treats a question that reports no problem as one ({uncaused!r})"
    case = _first(_CASE, reply) if pleased and not ctx.previous and "help" not in message.lower() else None
    if case:
        return f"treats a first message that reports no problem as a support case ({case!r})"
    # after a wish passed on, a message that asks or reports nothing new ("Not right now 👎" to a feature declined)
    settled = _PASSED_ON.search(ctx.previous) and not _ASKS.search(message) and mood["neg"] == 0 \
        and not re.search(r"\b(?:issue|error|problem|bug|same thing)s?\b", message, re.IGNORECASE)
    wish = _WISH.search(message) or settled
    case = _first(_LOOK_INTO, reply) if wish and not ctx.harm and not _PROBLEM.search(message) else None
    if case:
        return f"treats a wish for a feature as a problem on the customer's account ({case!r})"
    hit = _first(_BLAME, reply)
    if hit:
        return f"blames the customer ({hit!r}) for not writing to the brand"
    said = ctx.said
    for problem, (apology, reported) in _UNREPORTED.items():
        hit = _first(apology, reply)
        if hit and not reported.search(said):
            return f"apologises for {problem} ({hit!r}) the message does not speak of"
    hit = _first(_OUTAGE, reply)
    if hit and not _OUTAGE_SAID.search(said) and not _PICTURE.search(ctx.message):  # not the previous turn's link
        return f"explains an outage ({hit!r}) the message does not report"
    return None


# --- the conversation closed while the problem is open, or thanks answered that were never given
_SIGN_OFF = _rx(r"\b(?:if|when) you (?:ever )?need (?:us|anything|help)\b", r"\bneed (?:us|you) again\b",
                r"\bif you (?:ever )?need (?:any )?(?:further|more|additional|other) (?:help|assistance|support)\b",
                r"\b(?:don'?t|do not) hesitate to (?:reach out|contact us|get in touch|let us know)\b",
                r"\b(?:if|whenever) (?:we|you) (?:can|need to) (?:help|assist)[^.!?]{0,25}\b(?:again|else)\b",
                r"\bif (?:we|you) need anything\b", r"\bif there'?s anything else\b",
                r"\blet us know if (?:we|there'?s anything we) can (?:help|assist|do)\b",
                r"\bif you (?:do )?have any (?:other |more |further )?(?:issues|questions|problems)\b",
                r"\bif (?:the|this|that|your) (?:problem|issue)s? (?:persists?|continues?|comes? back|returns?)\b")
_HELP = _rx(r"\?", r"\b(?:info|information|steps|details)\b[^.!?]{0,50}\bhere\b",  # a page to read, linked
            # "don't hesitate to reach out", "feel free to contact us": a sign-off, no help
            r"(?<!for )(?<!hesitate to )(?<!free to )\b(try|check|head|go to|visit|reach (?:us|out)|contact|dm|"
            r"send|tap|open|update|restart|reinstall|log (?:out|in)|sign (?:out|in)|call|chat|follow|look into|"
            r"recommend\w*|suggest\w*|"
            r"investigat\w*|escalat\w*|pass\w* (?:this|it|your))")


# waiting for news of a step the reply never gives, where the customer does not say they will act
_AWAIT = _rx(r"\blet us know how (?:it|that|this|things) (?:goes|go|went|plays out|turns out)\b",
             r"\bkeep us (?:posted|in the loop)\b")
_WILL_ACT = _rx(r"\b(?:i'?ll|i will|shall|i'?m going to|gonna|will (?:try|do|check|let you know|contact))\b")


# a sign-off for a later need ("If you ever need us again, just reach out and we'll be right there"): the rest of its
# sentence belongs to it, and its "reach out" is no help with the problem at hand
_LATER_NEED = _rx(r"\b(?:if|when|whenever) you ever need\b[^.!?]*",
                  r"\b(?:if|when|whenever) you need (?:us|anything|help)\b(?=[^.!?]*\b(?:again|else)\b)[^.!?]*",
                  r"\bif (?:we|you) need anything\b[^.!?]*")


def signs_off_open_problem(reply: str, ctx: Context) -> str | None:
    if not _troubled(ctx):
        return None
    # a link alone is no help, nor "check out <link>"
    rest = re.sub(r"\b(?:check (?:out|in at|with us at|us out at) )?https?://\S+", " ",
                  _AWAIT.sub(" ", _SIGN_OFF.sub(" ", _LATER_NEED.sub(" ", reply))), flags=re.IGNORECASE)
    if _HELP.search(rest):
        return None
    hit = _first(_SIGN_OFF, reply)
    if hit:
        return f"closes the conversation ({hit!r}) on a problem the message says is still open"
    hit = None if _WILL_ACT.search(ctx.message) else _first(_AWAIT, reply)
    if hit:
        return f"waits for news ({hit!r}) of a step it never gives, on a problem the message says is still open"
    return None


_WELCOME = _rx(r"^\W*(?:(?:hey|hi|hello)(?: there)?)?\W*"
               r"(?:(?:you'?re|you are) (?:very |so |most )?welcome|no problem|my pleasure|anytime)\b",
               r"[,.!?]\s+(?:you'?re|you are) (?:very |so |most )?welcome\b")
_THANKS = _rx(r"\b(thank\w*|thx|thnx|ty(?:ty)*|tysm|cheers|appreciate\w*|grateful|gracias|danke|merci|obrigad[oa]|"
              r"grazie)\b")


# thanks for a thing given ("Thanks for the coffee"), where the message and its previous turn never speak of it
_GIVEN = _rx(r"\b(?:thanks?|thank you) (?:so much |very much )?for (?:the|your|this|that|these|those|all the) "
             r"(?:(?:delicious|kind|great|lovely|nice|awesome|quick) )?(coffee|tea|coupons?|offers?|gifts?|"
             r"treats?|food|meals?|drinks?|cookies?|pizza|burritos?|directions|tips?|help|assistance|"
             r"recommendations?|invite|invitation|pics?|photos?|pictures?|videos?|orders?)\b")
_SHOWN = _rx(r"https?://|<url>|\b(pic|photo|picture|video|look|see|here'?s)\w*")
# thanks for a visit ("Thanks for stopping by") to a customer who has not come: one who only means to, or who
# spoke of the app, a delivery or a support case, never of a restaurant or store
_VISIT = _rx(r"\b(?:for|appreciate you) (?:stopping|coming|swinging|dropping) (?:by|in|through)\b",
             r"\bthanks? for visiting\b")
_TO_COME = _rx(r"\b(?:gonna|going to|i'?ll be|we'?ll be|(?:i|we) will be|can'?t wait|planning (?:to|on)|plan to|"
               r"about to|on my way|first in line|looking to|considering|thinking (?:of|about)|hope to|want to)\b")
_BEEN = _rx(r"\b(?:went|got|had|ate|picked up|scored|came|stopped|enjoy\w*|tried|just|made|gave|was|were)\b")
_NO_VISIT = _rx(r"\b(?:could(?:n'?t| not)|can'?t|cannot|did(?:n'?t| not)|never) "
                r"(?:get out|make it|made it|go|come|get there|get in)\b")
_ELSEWHERE = _rx(r"\b(?:app|online|website|deliver\w*|resolv\w*|issues?|customer service|support|refund\w*)\b")
_IN_PERSON = _rx(r"\b(?:went|go|going|visit\w*|store|restaurant|location|line|in person|stopped|came|come|walk\w*)\b")
# thanks for an update or a follow-up, said to a first message: nothing came before it
_UPDATE = _rx(r"\bthanks? (?:you )?(?:so much )?(?:for )?(?:the|your) "
              r"(?:update|follow[- ]?up|reply|response|quick reply)\b",
              r"\bthanks? (?:you )?(?:so much )?for (?:getting|coming) back\b", r"\bthanks? for following up\b")
# thanks for patience, said to a first message that reports neither a problem nor a wait
_PATIENCE = _rx(r"\b(?:thanks?|thank you|appreciate)\b[^.!?]{0,20}\bpatience\b")
_KIND_WORDS = _rx(r"\b(?:thanks?|thank you|appreciate) (?:so much |very much )?(?:for )?(?:the|your) "
                 r"(?:kind words|compliment|praise)\b")


def welcome_without_thanks(reply: str, ctx: Context) -> str | None:
    hit = _first(_WELCOME, reply)
    if hit and not _THANKS.search(ctx.message):
        return f"answers thanks ({hit.strip()!r}) the message does not give"
    hit = _first(_KIND_WORDS, reply)  # said to a complaint, it is mood_mismatch's
    if hit and ctx.intent != "praise" and _mood(ctx.message)["compound"] < 0.3 and not _troubled(ctx):
        return f"thanks the customer for praise ({hit!r}) the message does not give"
    hit = None if ctx.previous else _first(_UPDATE, reply)
    if hit:
        return f"thanks the customer for an update ({hit!r}) on a first message"
    hit = None if ctx.previous or _troubled(ctx) or _WAITING.search(ctx.message) else _first(_PATIENCE, reply)
    if hit:
        return f"thanks the customer for patience ({hit!r}) a first message that reports no problem never shows"
    said = ctx.said
    hit = _first(_VISIT, reply)
    if hit and (_TO_COME.search(said) and not _BEEN.search(said)
                or _ELSEWHERE.search(said) and not _IN_PERSON.search(said)):
        return f"thanks the customer for a visit ({hit!r}) the message does not speak of"
    if hit and _NO_VISIT.search(said):
        return f"thanks the customer for a visit ({hit!r}) the message says did not happen"
    if hit and _ASKS.search(ctx.message) and not _BEEN.search(said):  # "can i do double meat for $3?"
        return f"thanks the customer for a visit ({hit!r}) in answer to a question"
    for m in _GIVEN.finditer(reply):
        thing = m.group(1).lower().rstrip("s")
        shown = thing in ("pic", "photo", "picture", "video") and _SHOWN.search(said)
        if not shown and not re.search(r"\b" + re.escape(thing), said, re.IGNORECASE):
            return f"thanks the customer for a {thing} ({m.group(0)!r}) the message does not speak of"
    return None


# --- asking for what the message already says, or telling the customer otherwise
_SLOTS = {
    "device": (_rx(r"\b(what|which) (device|phone|kind of (?:phone|device))\b", r"device (are you|you're) using"),
               _rx(r"\b(iphone|ipad|ipod|macbook|imac|mac|android|samsung|galaxy|pixel|echo|kindle|fire ?tv|roku|"
                   r"xbox|playstation|ps4|chromecast|apple ?watch|huawei|oneplus|laptop)\b",
                   r"\b(?:on|my|an?|the|with) (?:[4-8]s|[678] ?plus)\b")),  # "ios 11.0.3 on 6s"
    "model": (_rx(r"\b(what|which) (model|iphone|ipad|mac)\b", r"model (are you|you're|do you)"),
              _rx(r"\biphone ?(x|se|\d+)( ?plus| ?pro| ?s)?\b", r"\bipad (pro|air|mini)\b", r"\bmacbook (air|pro)\b",
                  r"\bgalaxy (s|note) ?\d+", r"\bpixel ?\d", r"\becho (dot|show|plus)\b")),
    "software version": (_rx(r"\b(what|which)(?:'s| is)? (?:the )?(?:exact |current )?(?:(?:device|model|phone) "
                             r"(?:and|&) )?(ios|version|os|software|app version)", r"version (of|are you)",
                             r"(tell|let|dm|send|share|give|provide|confirm) us[^.?!]{0,30}\b(ios|version)\b",
                             r"\b(?:verify|confirm|check)\b[^.?!]{0,20}\b(?:your|the) (?:exact |current )?"
                             r"(?:ios |software |os )?version\b"),
                         _rx(r"\bios ?\d+\.\d+", r"\bversion \d+\.\d+", r"\b\d+\.\d+\.\d+\b",
                             r"\b(android|macos) ?\d+(\.\d+)?",
                             r"\b(?:updated|upgraded|updating|upgrading)\b[^.!?]{0,25}\bto \d+(?:\.\d+)+")),
    "carrier": (_rx(r"\bcarrier\b"),
                _rx(r"\b(verizon|at&t|att|t-?mobile|sprint|vodafone|o2|ee|three|orange|telstra|rogers|bell)\b")),
    "order number": (_rx(r"\border (?:number|id|#)"), _rx(r"\border ?(number|#|no\.?|id)? ?#?\d{3,}", r"#\d{3,}")),
    "restaurant or store": (_rx(r"\b(which|what) (location|restaurant|store|branch)\b",
                                r"\baddress of (?:the|that|this) (?:restaurant|store|location)\b"),
                            _rx(r"\b\d{2,5}\s+(?:[nsew]\.?\s+)?\w+(?:\s+(?:st|street|ave|avenue|rd|road|blvd|dr|drive))?\.?"
                                r"\s+(?:location|restaurant|store)\b",
                                r"\b(?:location|restaurant|store) (?:in|on|at) (?!(?:my|the|your|our|a|an|this|that|"
                                r"their)\b)\w{3,}")),
    "country": (_rx(r"\b(which|what) country\b", r"where are you (located|based)"),
                _rx(r"\b(usa|uk|canada|mexico|germany|france|spain|india|brazil|australia|ireland)\b")),
}


# fixes a customer says were tried, and the reply's suggestion of the same
def _tried(*gerunds: str) -> str:
    """'tried' followed, within a short list, by one of `gerunds` ("Tried resetting my settings .. restarting")."""
    return r"tried\b[^!?\n]{0,40}\b(?:" + "|".join(gerunds) + ")"


_TRIED = {  # what the customer says was done (past tense, or "tried ...ing"), and the reply's suggestion of it
    "restarting": (rf"(restarted|rebooted|turned (?:it )?off and on|{_tried('restarting', 'rebooting')})",
                   r"(restart|reboot|power cycle|turn it off)"),
    "resetting": (rf"((?:i|i've|i have|already|we've) (?:already )?reset (?:my|the|it|all|everything)|"
                  rf"(?:did|done|tried|after) (?:a )?factory reset|{_tried('resetting')})", r"(reset\w*)"),
    "reinstalling": (rf"(reinstalled|re-installed|uninstalled|deleted and re|"
                     rf"{_tried('reinstalling', 're-installing')})",
                     r"(reinstall|re-install|uninstall)"),
    "logging out": (rf"(logged out|signed out|{_tried('logging out', 'signing out')})",
                    r"(log(?:ging)? out|sign(?:ing)? out)"),
    "updating": (rf"(updated|already up to date|on the latest version|{_tried('updating')})",
                 r"(updat\w*|latest version)"),
    "clearing the cache": (rf"(cleared (?:the )?cache|{_tried('clearing')})", r"(clear\w*[^.!?]{0,25}\bcache)"),
}
# a fix offered: the reply's "could you try restarting", the previous turn's "does logging out ... help?"
_OFFER = (r"\b(?:try|trying|tried|please|could you|can you|would you|does|did|have you|we can|let's|you can)\b"
          r"[^.!?]{0,30}?")
_OFFERED = {fix: re.compile(_OFFER + suggest, re.IGNORECASE) for fix, (_, suggest) in _TRIED.items()}
# the message's answer to the previous turn's fix: it did not help
_FAILED = _rx(r"\b(?:didn'?t|did not|doesn'?t|does not|hasn'?t|has not|won'?t|not)\b[^.!?]{0,20}"
              r"\b(?:help|work|fix|change|do anything|make a difference)", r"\bstill\b",
              r"\bno (?:luck|change|difference|dice)\b", r"\bsame (?:thing|issue|problem|error)\b", r"\bnope\b")
# an apology for an order that never came, or an offer to find it, to a message (or its previous turn) that says
# it came
_LOST_ORDER = _rx(_UNREPORTED["a delivery"][0].pattern,
                  r"\b(?:find|locate|track down|trace)\b[^.!?]{0,15}\b(?:your|the|this) (?:order|package|parcel|item)")
_ARRIVED = _rx(r"(?<!not )(?<!never )(?<!n't )\b(?:arrived|came|received|delivered|showed up|turned up)\b")
_NOT_ARRIVED = _rx(r"(?:\bnot|\bnever|n't|\byet to)\s+(?:\w+\s+){0,2}?(?:arriv|deliver|receiv|c[oa]me|got|get|"
                   r"show\w* up|turn\w* up)", r"\b(?:missing|lost|stolen|where'?s|where is|still waiting)\b",
                   r"\b(?:says|said|shows?|showing|marked|scanned)(?: as| it was| it's)? delivered\b",
                   r"\bnothing (?:at|here|came|arrived|in)\b")

_VERSION = re.compile(r"\b\d+(?:\.\d+)+\b")
# the reply says which version the customer has ("We can see you have iOS 11.1", "you're on 11.0.3")
_STATED_VERSION = _rx(r"\byou(?:'re| are|'ve| have)? (?:have|on|running|using|updated to)\s+(?:ios |version |android |"
                      r"macos |watchos )?\d+(?:\.\d+)+\b")


# the kind of device a word names ("my 7 plus", "your iPhone": a phone; "your Apple Watch": a watch)
_KINDS = {"phone": r"i?phones?|device|mobile|cell|handset|android|galaxy|pixel|\d+s?|plus|x|se",
          "watch": r"watch(?:es)?", "tablet": r"ipad|tablet", "computer": r"mac|macbook|imac|laptop|computer|pc",
          "router": r"router|modem", "tv": r"tv|television|roku|fire ?tv|chromecast", "speaker": r"echo|dot|sonos"}
_THING = re.compile(r"^\w*\s+(?:my|the|our|your)\s+((?:[\w-]+\s*){1,2})", re.IGNORECASE)


def _kinds(text: str) -> set[str]:
    thing = _THING.match(text)
    words = thing.group(1).lower().split() if thing else []
    return {k for k, p in _KINDS.items() for w in words if re.fullmatch(p, w)}


def _other_thing(done: str, suggested: str) -> bool:
    """Whether a fix is suggested for another device than the one the customer did it to ("updated my 7 plus" and
    "Have you updated your Apple Watch?"); `done`, `suggested`: the texts right after each."""
    a, b = _kinds(done), _kinds(suggested)
    return bool(a and b) and not a & b


# the platform a reply puts the customer on, where the message names only the other ("Is iOS 11.1 on your Android
# device?" to "ios 11.0.3 on 6s")
_PLATFORMS = {"iOS": _rx(r"\b(?:ios|iphones?|ipads?|ipod)\b"),
              "Android": _rx(r"\b(?:androids?|samsungs?|galaxy|pixels?)\b")}


def _platform_contradicted(reply: str, said: str) -> str | None:
    named = {p for p, rx in _PLATFORMS.items() if rx.search(said)}
    if len(named) != 1:
        return None
    for platform, rx in _PLATFORMS.items():
        hit = _first(rx, reply)
        if hit and platform not in named:
            return f"puts the customer on {platform} ({hit!r}), where the message says {next(iter(named))}"
    return None


def asks_known(reply: str, ctx: Context) -> str | None:
    said = ctx.said
    contradicted = _platform_contradicted(reply, said)
    if contradicted:
        return contradicted
    for slot, (ask, given) in _SLOTS.items():
        if ask.search(reply) and given.search(said):
            return f"asks for the {slot}, which the message gives ({_first(given, said)!r})"
    failed = bool(ctx.previous) and _FAILED.search(ctx.message) and not _resolved(ctx.message)
    for fix, (done, suggest) in _TRIED.items():
        tried = re.search(r"\b" + done, said, re.IGNORECASE)
        offer = tried and re.search(r"\b(try|tried|please|could you|can you|have you)\b[^.!?]{0,25}" + suggest, reply,
                                    re.IGNORECASE)
        if offer and not _other_thing(said[tried.end():], reply[offer.end():]):
            return f"suggests {fix}, which the message says was tried ({tried.group(0)!r})"
        if failed and _OFFERED[fix].search(ctx.previous) and _OFFERED[fix].search(reply):
            return f"suggests {fix} again: the previous turn did, and the message says it did not help"
    lost = _first(_LOST_ORDER, reply)
    came = _first(_ARRIVED, said)
    if lost and came and not _NOT_ARRIVED.search(said):
        return f"speaks of an order not received ({lost!r}), which the message says {came}"
    stated, versions = _first(_STATED_VERSION, reply), set(_VERSION.findall(said))
    if stated and versions and _VERSION.search(stated).group(0) not in versions:
        return f"tells the customer a version ({stated!r}) the message contradicts ({', '.join(sorted(versions))})"
    return None


# --- a question answered with pleasantries alone
_ASKS = _rx(r"\?",
            r"^\W*(?:@\w+\s+)*(how|what|when|where|why|which|who|can|could|is|are|do|does|will|would|any word)\b")
_PLEASANTRY = set("""thanks thank you for so much stopping by the a an shout out we i appreciate love that this it glad
    happy to help hear our us enjoy have great nice day awesome anytime welcome cheers and always here hi hey hello
    there kind words compliment made my your too of in all right what be will see soon again heck yeah yes listening
    best year ever
    reaching out shopping eating riding contacting letting know look looking forward seeing got ok okay noted
    s ll re ve just you to good cool idea deal thing consider question suggestion point sounds
    info information update updates feedback patience sharing details""".split())


_EXCLAIMED = re.compile(r"[?!]*(?:\?!|!\?)[?!]*")  # "...isn't charging for double meat?!": excitement, no question


def _asks(message: str) -> bool:
    """The message asks something: a question mark or a question's opening word, a "?!" read as excitement."""
    return bool(_ASKS.search(_EXCLAIMED.sub(".", message)))


# agreement that answers banter ("Right? Best day of the year."), sent to a question as if it were banter
_BANTER = _rx(r"^\W*(?:right\?|(?:that'?s )?(?:so )?true(?: story)?\b|(?:that'?s the )?truth\b|that'?s the thing\b|"
              r"totally\b|agreed\b|same\b|"
              r"yeah,? buddy\b|heck yeah\b)")


def _content(text: str, also: set[str] = frozenset()) -> list[str]:
    """The words of `text` that are neither pleasantries nor in `also`: what a reply says beyond courtesy."""
    return [w for w in (w.lower() for w in re.findall(r"[^\W\d_]+", text)) if w not in _PLEASANTRY and w not in also]


def no_answer(reply: str, ctx: Context) -> str | None:
    if not _asks(ctx.message):
        return None
    hit = _first(_BANTER, reply)
    if hit:
        return f"answers a question with banter ({hit.strip()!r})"
    if not _content(reply):
        return f"answers a question with pleasantries alone ({reply.strip()!r})"
    # a sign-off for later and the brand's contact link are no answer either ("Awesome. Let us know if you ever need
    # us again. <link>" to "how do you set a display name?")
    rest = _SIGN_OFF.sub(" ", _LATER_NEED.sub(" ", reply))
    if ctx.support_url:
        rest = rest.replace(ctx.support_url, " ")
    asked = "?" in _EXCLAIMED.sub(".", ctx.message)  # not "Will check and let you know. Thanks :)"
    if rest == reply or not asked or _resolved(ctx.message):  # "Works now. Looks like version 1.0.68?": it fits
        return None
    return None if _content(rest, {"let"}) else f"answers a question with a sign-off ({reply.strip()!r})"


# --- a name the customer never gave: real agents read it from the profile, which the agent never sees
_NAME = re.compile(r"^\W*(?:hi|hey|hello|thanks|thank you|sorry|oh no)(?: there)?,? ([A-Z][a-z]{1,15})\b"
                   r"|\b(?:Mr|Mrs|Ms|Miss|Dr)\.? ([A-Z][a-z]{1,15})\b|, ([A-Z][a-z]{1,15})[!.?]", re.IGNORECASE)
_NOT_NAMES = set("""there team all again everyone folks friend friends guys everybody yall y'all please sorry thanks
    thank prime premium twitter amazon apple spotify uber chipotle iphone ipad mac itunes music today tomorrow
    monday tuesday wednesday thursday friday saturday sunday pm am dm support""".split())


def invented_name(reply: str, ctx: Context) -> str | None:
    said = ctx.said.lower()
    for m in _NAME.finditer(reply):
        name = next(g for g in m.groups() if g)
        if name[0].isupper() and name.lower() not in _NOT_NAMES and name.lower() not in said:
            return f"calls the customer {name!r}, a name the message does not give"
    return None


# --- a DM or an earlier time the conversation never mentions, or news the agent cannot give: real agents see their
# inbox and the customer's history, which the agent never sees
_DM_SAID = _rx(r"\b(dm|dms|dm'?d|dm'?ed|direct message|message|messaged|pm|inbox|sent|wrote|emailed|e-mailed|check)\b")


# an earlier time ("Again?"), said to a first message that speaks of none
_AGAIN = _rx(r"^\W*again\b", r"\b(?:happen(?:ed|ing|s)?|going on) again\b", r"\bonce again\b")
_HISTORY = _rx(r"\b(?:again|another|twice|second|2nd|third|3rd|keeps?|kept|every ?time|still|always|repeatedly|"
               r"\d+ times|before|last time|anymore|no longer)\b")


# a DM the agent says it sent: it sends none (its replies are public), so the customer would wait for nothing
_DM_SENT = _rx(r"\b(?:we'?ve|we have|i'?ve|i have|we|i) (?:just |already )?(?:sent|dropped|shot) you\b[^.!?]{0,30}?"
               r"\b(?:dms?|direct message|private message)\b")  # "sent you another DM", "sent you more info over DM"


# news the agent promises of a step only the customer takes ("Can you try restarting your device? We'll let you know
# if it helps"): no one would send it, so the customer waits for nothing
_REPORT_BACK = _rx(r"\b(?:we'?ll|we will|i'?ll|i will) (?:let you know|keep you posted|update you|get back to you) "
                   r"(?:if|whether) (?:it|that|this|things?) (?:\w+ )?(?:helps?|works?|worked|works? out|"
                   r"makes? a difference|fix(?:es|ed)?|does the trick|did the trick|solves?)\b")

# the customer asked to say when the brand needs something ("Let us know if we need anything else")
_ROLES_TURNED = _rx(r"\b(?:let us know|tell us) (?:if|when|whether) (?:we|i) (?:ever )?need (?:you|anything|more|any|"
                    r"help|something)\b")


def claims_dm(reply: str, ctx: Context) -> str | None:
    hit = _first(_DM_SENT, reply)
    if hit:
        return f"says it sent a DM ({hit!r}): the agent sends none"
    hit = _first(_REPORT_BACK, reply)
    if hit:
        return f"promises news ({hit!r}) of a step only the customer takes: the customer would wait for nothing"
    hit = _first(_ROLES_TURNED, reply)
    if hit:
        return f"turns the roles round ({hit!r}): the brand offers help, the customer gives none"
    hit = _first(_DM_CLAIM, reply)
    if hit and not _DM_SAID.search(ctx.said):
        return f"speaks of a DM ({hit!r}) the conversation never mentions"
    hit = None if ctx.previous else _first(_AGAIN, reply)
    if hit and not _HISTORY.search(ctx.message):
        return f"speaks of an earlier time ({hit!r}) a first message never mentions"
    return None


# --- an assistant disclaiming itself
_AI = _rx(r"\bas an ai\b", r"\bi'?m (?:just |only )?an ai\b", r"\b(?:i am|i'm) (?:a |an )?(?:chat)?bot\b",
          r"\blanguage model\b", r"\bas a (?:chat)?bot\b", r"\bai assistant\b",
          # a refusal: real agents point somewhere instead (tests/data/reply_checks.jsonl)
          r"\b(?:i|we)(?:'m|'re| am| are)?(?: afraid)?(?: that)?(?: we| i)? (?:can ?not|can't|am not able to|"
          r"are not able to|not able to|unable to|aren't able to) (?:help|assist)\b")


def ai_disclaimer(reply: str, ctx: Context) -> str | None:
    hit = _first(_AI, reply)
    return f"an AI disclaimer or refusal: {hit!r}" if hit else None


# --- escalated messages: acknowledge and hand over, never promise an outcome or breeze past it
_PROMISE = _rx(r"\b(we'll|we will|i'll|i will|we're going to) (refund|reimburse|credit|replace|fix|resolve|compensate|"
               r"send you a (?:new|replacement))", r"\byou('ll| will) (receive|get) (?:a |your |the )?(full )?"
               r"(refund|credit|replacement|compensation|money back)",
               r"\b(?:provide|issue|give|process|offer) (?:you )?(?:with )?(?:a |your |the )?(?:full )?"
               r"(?:refund|credit|replacement|reimbursement|compensation)\b",
               r"\b(has|have) been (refunded|resolved|fixed|credited|reimbursed)\b", r"\bguarantee")
_BREEZY = _rx(r"^\W*(?:(?:we'?re |we are |i'?m )?(?:here to help|happy to help)|no worries|no problem)\b",
              r"^\W*(?:thanks|thank you)\W*(?:[.!]|$)",  # a bare "Thanks." for the report
              r"\b(awesome|yay+|great news|enjoy)\b")
# what a reply to a report of harm says first: that it was heard (sorry, concern, hoping they are safe) or that it is
# urgent; the brands' real replies to such messages do one or the other (tests/data/reply_checks.jsonl)
_HEARD = _rx(_APOLOGY.pattern, r"\bconcern\w*", r"\bserious(?:ly)?\b", r"\bworr(?:y|ying|ied)\b",
             r"\b(?:terrible|awful|horrible|alarming|upsetting|disturbing|unacceptable|scary|frightening)\b",
             r"\bhope (?:you|everyone|all|your)\b", r"\bglad (?:you(?:'re| are)|everyone(?:'s| is)) (?:safe|ok)",
             r"\b(?:shouldn'?t|should not) (?:be|have|happen)", r"\bnot (?:ok|okay|acceptable|what we)\b",
             r"\btroubl(?:esome|ing)\b", r"\b(?:escalat|investigat)\w*",
             r"\b(?:right away|immediately|urgent\w*|asap|as soon as possible)\b")


def escalation_tone(reply: str, ctx: Context) -> str | None:
    if not ctx.escalate:
        return None
    hit = _first(_PROMISE, reply)
    if hit:
        return f"promises an outcome ({hit!r}) on a message a person must see"
    if not ctx.harm:
        return None
    hit = _first(_BREEZY, reply)
    if hit:
        return f"a breezy reply ({hit!r}) to a report of harm"
    if not _HEARD.search(reply):
        return "hands a report of harm over without a word of concern or urgency (sorry, hope you're safe, right away)"
    return None


# --- the previous turn said again: the customer has read it (and, answering it, often tried what it suggests)
REPEAT_ROUGE_L = 0.6  # ROUGE-L F1 with the previous turn, chosen on the train split's real follow-up replies
REPEAT_MIN_TOKENS = 4


def repeats_previous(reply: str, ctx: Context) -> str | None:
    previous = rouge_tokens(ctx.previous) if ctx.previous else ()
    if len(previous) < REPEAT_MIN_TOKENS:
        return None
    overlap = lcs_f1(rouge_tokens(reply), previous)
    if overlap < REPEAT_ROUGE_L:
        return None
    return (f"says the previous turn again (ROUGE-L {overlap:.2f} with {ctx.previous[:60]!r}): answer what the "
            "customer says now")


def empty(reply: str, ctx: Context) -> str | None:
    return None if _WORD.search(reply or "") else "the reply has no words: nothing to send"


RUN: dict[str, Callable[[str, Context], str | None]] = {
    "empty": empty, "leaked_prompt": leaked_prompt, "unfinished": unfinished, "looping": looping,
    "sensitive_request": sensitive_request, "public_contact_request": public_contact_request,
    "unknown_contact": unknown_contact, "invented_name": invented_name, "claims_dm": claims_dm,
    "language_mismatch": language_mismatch,
    "mood_mismatch": mood_mismatch, "asks_known": asks_known, "repeats_previous": repeats_previous,
    "no_answer": no_answer, "ai_disclaimer": ai_disclaimer, "escalation_tone": escalation_tone,
    "signs_off_open_problem": signs_off_open_problem, "welcome_without_thanks": welcome_without_thanks,
}
CHECKS = tuple(RUN)


_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})


def check_reply(reply: str, ctx: Context) -> list[Flag]:
    """Every check's flag on `reply` (empty: it may be sent). A check that cannot run flags the reply. Typographic
    apostrophes and quotes (tweets' "didn’t") are read as plain ones."""
    if not isinstance(reply, str) or not _WORD.search(reply):
        return [Flag("empty", "the reply has no words: nothing to send")]
    reply = reply.translate(_QUOTES)
    ctx = replace(ctx, message=ctx.message.translate(_QUOTES), previous=ctx.previous.translate(_QUOTES))
    flags = []
    for name, check in RUN.items():
        try:
            reason = check(reply, ctx)
        except CheckUnavailable as err:
            reason = f"could not run: {err}"
        if reason:
            flags.append(Flag(name, reason))
    return flags
