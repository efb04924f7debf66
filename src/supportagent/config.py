"""Typed schema of `params.yaml` and `policy.yaml`: loaded once, validated, unknown or mistyped keys fail by name.

params.yaml holds the experiment's knobs; policy.yaml, beside it, the agent's policy (`rules` and `brands`), which
`read_raw` merges in. They are where the values live: a default here equals the value the files set (a test checks
it), and exists for the few keys params.yaml may leave out (`max_steps`, `weight_decay`) and for code that builds
params without the file (benchmarks)."""
from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ParamsError

BASELINES = ("zero_shot", "retrieval")  # the systems that train nothing


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SubsetParams(Strict):
    top_n_brands: int = Field(5, ge=1)
    brands: list[str] = []  # explicit list overrides top_n_brands
    keep_context: bool = True  # keep the turn a follow-up customer tweet answers
    max_context_chars: int = Field(160, ge=0)
    strip_signatures: bool = True
    min_customer_chars: int = Field(8, ge=1)
    min_reply_chars: int = Field(12, ge=1)
    max_customer_chars: int = Field(400, ge=1)
    max_reply_chars: int = Field(280, ge=1)
    min_latin_share: float = Field(0.5, ge=0, le=1)  # drop pairs written mostly in other scripts
    max_pairs_per_brand: int = Field(300, ge=0)  # 0 = no cap
    max_total_bytes: int = Field(0, ge=0)  # 0 = no cap


class SplitParams(Strict):
    train: float = Field(0.8, gt=0, lt=1)
    val: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, gt=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self):
        if abs(self.train + self.val + self.test - 1) > 1e-6:
            raise ValueError(f"split.train + split.val + split.test must be 1, got {self.train + self.val + self.test}")
        return self


class IntentParams(Strict):
    weight: int = Field(ge=0, le=100)
    keywords: list[str]


class HandoffParams(Strict):
    policy: Literal["append", "replace"] = "append"
    note: str = "I'm passing this to a senior member of our team, who will follow up with you directly."


class RulesParams(Strict):
    escalation_keywords: list[str]
    # categories of harm (physical_harm, fraud, food_safety, ...) -> keywords: a hit escalates with the category as
    # its reason
    safety_keywords: dict[str, list[str]]
    intents: dict[str, IntentParams]
    default_intent: str = "other"
    escalation_priority_boost: int = Field(30, ge=0, le=100)
    caps_boost: int = Field(10, ge=0, le=100)
    punctuation_boost: int = Field(5, ge=0, le=100)
    profanity_boost: int = Field(10, ge=0, le=100)
    repeat_contact_boost: int = Field(10, ge=0, le=100)
    profanity: list[str]
    bands: dict[str, int] = {"medium": 40, "high": 70}
    max_message_chars: int = Field(1000, ge=16)
    handoff: HandoffParams = HandoffParams()

    @model_validator(mode="after")
    def _default_intent_known(self):
        if self.default_intent in self.intents:
            raise ValueError(f"rules.default_intent '{self.default_intent}' must not be one of rules.intents")
        return self


class ModelParams(Strict):
    base: str = "smollm2-135m-instruct"
    revision: str | None = None  # pinned hub revision (commit) for hub ids
    system_prompt: str = "You are {brand} customer support. Reply in one short, polite tweet."
    max_prompt_tokens: int = Field(384, ge=16)
    max_reply_tokens: int = Field(64, ge=4)


class TrainParams(Strict):
    """What both methods' trainings share; each method adds its own keys (`QLoraParams`, `PromptTuningParams`), so a
    key of the other method (`train.prompt_tuning.lora_r`) fails by name."""
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(gt=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    # NEFTune (Jain et al. 2023): uniform noise of scale alpha/sqrt(length*hidden) on the input embeddings while
    # training, a regulariser against overfitting a small set of replies; 0 = off
    neftune_noise_alpha: float = Field(0.0, ge=0)
    # intervals as counts per epoch, so that they keep their meaning when the data size changes
    evals_per_epoch: float = Field(2, gt=0)  # validation passes (2: at mid-epoch and at the end)
    logs_per_epoch: float = Field(46, gt=0)  # training-loss points (each the mean loss since the last one)
    saves_per_epoch: float = Field(6, gt=0)  # checkpoints an interrupted run resumes from
    max_steps: int = Field(-1)  # -1 = from epochs
    max_train_pairs: int = Field(0, ge=0)  # 0 = all
    max_val_pairs: int = Field(32, ge=0)  # validation subset used at intervals; 0 = all
    checkpoint_every_n_layers: int = Field(0, ge=0)  # gradient checkpointing: 1 = every layer, 0 = off


class QLoraParams(TrainParams):
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class PromptTuningParams(TrainParams):
    epochs: float = Field(1.5, gt=0)  # more updates for the few vectors, paid for by bf16 training where the CPU has it
    batch_size: int = Field(2, ge=1)  # more updates per epoch: a few vectors learn from the number of updates
    num_virtual_tokens: int = Field(20, ge=1)
    prompt_init: Literal["text", "random"] = "text"
    prompt_init_text: str = "Reply as a helpful, concise customer support agent for the brand."


class TrainGroup(Strict):
    """One field per trainable method (its module: model/methods/<name>.py): the list of methods."""
    qlora: QLoraParams
    prompt_tuning: PromptTuningParams


METHODS = tuple(TrainGroup.model_fields)
SYSTEMS = (*BASELINES, *METHODS)


class EvaluateParams(Strict):
    test_size: int = Field(0, ge=0)  # 0 = whole test split
    batch_size: int = Field(16, ge=1)
    cuda_batch_size: int = Field(128, ge=1)  # on a GPU a decoding step costs about the same for 1 or 128 replies
    max_new_tokens: int = Field(48, ge=1)
    repetition_penalty: float = Field(1.0, ge=1.0)
    latency_samples: int = Field(5, ge=0)
    fold_qlora: bool = True  # serve QLoRA folded into its dequantised 4-bit base; false: bitsandbytes' 4-bit kernels
    # decoding engine: compiled = generation.py's loop over a static KV cache (greedy replies, and each message's
    # sampled candidates, one message at a time), its prompt's chunks and decoding steps compiled with CUDA graphs
    # on a GPU (once per process and batch size: one static cache length fits every prompt of up to
    # model.max_prompt_tokens), uncompiled on a CPU; eager = transformers'
    # generate() with its dynamic cache and the shared-prompt sampling loop; auto = compiled on a GPU, eager on a
    # CPU (where it measured faster); vllm = vLLM's engine (vllm_engine.py; installed apart: `make vllm`)
    engine: Literal["auto", "eager", "compiled", "vllm"] = "auto"
    # reranking (reranking.py): this many sampled replies besides the greedy one, and the one sent is their
    # consensus with the brand's past replies to similar messages (rerank_* below); 0 = the greedy reply alone. On
    # the eager engine the candidates share one read and one KV cache of the prompt (prefix_sharing.py): each costs a
    # decoding of its own tokens only
    candidates: int = Field(16, ge=0, le=64)
    temperature: float = Field(0.7, gt=0.0)  # of the sampled candidates
    top_p: float = Field(0.95, gt=0.0, le=1.0)  # nucleus sampling of the candidates
    # what the candidates are compared with: the replies of this many nearest past pairs of the brand (the prompt's
    # retrieval.k examples first; none when retrieval.k is 0), each weighing this many candidates, and how much of
    # the similarity is ROUGE-L F1 (the rest: MiniLM cosine)
    rerank_references: int = Field(16, ge=0, le=64)
    rerank_reference_weight: float = Field(4.0, ge=0.0)
    rerank_word_weight: float = Field(0.75, ge=0.0, le=1.0)
    # those past replies ranked in one pool with the candidates (reranking.pool_rankings): a reply a person wrote is
    # sent where it fits better than the model's; false: they are only the yardstick, and the guard's fallback
    rerank_past_replies: bool = True
    # a past reply's head start in that pool, on the similarity scale (0-1): the model's own reply is sent only where
    # its agreement beats the best past reply's by this much; 0: none (a base that writes as well as a person)
    rerank_past_reply_bonus: float = Field(0.02, ge=0.0, le=1.0)
    # how much the ranking also weighs how likely the served model finds each reply after the prompt (likelihood.py;
    # a z-score mixed with the agreement's): a judge of fit to the message, for one more read of the past replies
    # (the candidates' come with their sampling); 0: none
    rerank_likelihood_weight: float = Field(0.3, ge=0.0, le=1.0)
    # the languages the base writes well enough to send: a message in another language gets no reply of the model's,
    # but a past reply in its language or the brand's hand-over (guard.py); a small base writes English only
    model_languages: list[str] = Field(["en"], min_length=1)


class RetrievalParams(Strict):
    k: int = Field(2, ge=0, le=8)  # past pairs of the same brand placed in the prompt; 0 = no examples
    fields: Literal["pair", "reply"] = "pair"  # an example shows the customer text and the reply, or the reply only
    max_example_chars: int = Field(100, ge=16)  # each text of an example is cut to this length


class ReviewParams(Strict):
    samples: int = Field(30, ge=1)  # test messages drawn for the blind review (and reports/samples.md)
    systems: list[str] = Field(
        ["qlora", "prompt_tuning", "retrieval"], min_length=2
    )  # whose replies a reviewer rates side by side, names hidden

    @model_validator(mode="after")
    def _distinct(self):
        if unknown := [s for s in self.systems if s not in SYSTEMS]:
            raise ValueError(f"review.systems: {unknown} not among the systems {list(SYSTEMS)}")
        if len(set(self.systems)) != len(self.systems):
            raise ValueError(f"review.systems lists a system twice: {self.systems}")
        return self


_PHONE = re.compile(r"\+?[\d\s().-]{7,}")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_DOMAIN = re.compile(r"(https?://)?([\w-]+\.)+[a-z]{2,}(/\S*)?", re.IGNORECASE)
FALLBACK = "We're sorry for the trouble. A member of our team can help you here: {url}"
FALLBACK_NO_LINK = "We're sorry for the trouble. Please send us a Direct Message so a member of our team can help."


class BrandParams(Strict):
    support_url: str | None = None  # fills the `<url>` mask in served replies; None: the sentence is rewritten
    # fills it instead where the reply points to something to read (steps, an article, more info: placeholders.py);
    # None: support_url
    help_url: str | None = None
    # phone numbers, e-mail addresses and sites a reply may give besides its links (checks.unknown_contact)
    contacts: list[str] = []
    # what is sent when no candidate and no past reply passes the checks (guard.py); `{url}`: support_url
    fallback: str | None = None

    @model_validator(mode="after")
    def _well_formed(self):
        for name, link in (("support_url", self.support_url), ("help_url", self.help_url)):
            parts = urlparse(link or "")
            if link is not None and (parts.scheme not in ("http", "https") or "." not in parts.netloc):
                raise ValueError(f"{name} {link!r} is not an http(s) link with a host, e.g. https://help.example.com")
        if self.help_url is not None and self.support_url is None:
            raise ValueError("help_url is set without support_url: set support_url, the link every other reply gets")
        url = self.support_url
        for c in self.contacts:
            if not (_PHONE.fullmatch(c) and sum(ch.isdigit() for ch in c) >= 7 or _EMAIL.fullmatch(c)
                    or _DOMAIN.fullmatch(c)):
                raise ValueError(f"contacts: {c!r} is no phone number (7+ digits), e-mail address or site")
        text = self.fallback_text()
        names = {f for _, f, _, _ in string.Formatter().parse(self.fallback or "") if f is not None}
        if names - {"url"} or ("url" in names and url is None) or not text.strip() or len(text) > 280:
            raise ValueError(f"fallback {self.fallback!r}: one tweet (at most 280 characters) whose only "
                             "placeholder is {url}, and {url} only where support_url is set")
        return self

    def fallback_text(self) -> str:
        """The brand's fallback reply, its link filled in."""
        template = self.fallback or (FALLBACK if self.support_url else FALLBACK_NO_LINK)
        try:
            return template.format(url=self.support_url)
        except (KeyError, IndexError, ValueError):
            return ""


class Params(Strict):
    seed: int = 42  # training order, validation-loss sample, the candidates' draws, test and review samples
    data_seed: int = 42  # the per-brand cap's sample and the split: another training seed keeps the same data
    method: str = "qlora"  # the method served: one of METHODS
    subset: SubsetParams = SubsetParams()
    split: SplitParams = SplitParams()
    rules: RulesParams
    model: ModelParams = ModelParams()
    train: TrainGroup
    evaluate: EvaluateParams = EvaluateParams()
    retrieval: RetrievalParams = RetrievalParams()
    review: ReviewParams = ReviewParams()
    brands: dict[str, BrandParams]

    @model_validator(mode="after")
    def _known_method(self):
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of the methods {list(METHODS)} (train.<method>)")
        return self


def _describe(err: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid params"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key (typo? see params.yaml)" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` applied key by key (nested groups merge, lists and values replace)."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


POLICY = "policy.yaml"  # beside params.yaml: the keys of POLICY_KEYS
POLICY_KEYS = ("rules", "brands")


def read_raw(path: str | Path = "params.yaml", overrides: str | Path | None = None) -> dict:
    """params.yaml as a dict, with policy.yaml beside it (if there is one) and `overrides` (e.g. configs/full.yaml:
    only the keys that differ) merged in. A file that holds everything (a work folder's merged copy) needs no
    policy.yaml."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run from the project root or pass --params")
    raw = yaml.safe_load(path.read_text()) or {}
    policy = path.parent / POLICY
    if policy.exists():
        extra = yaml.safe_load(policy.read_text()) or {}
        if both := sorted(set(raw) & set(extra)):
            raise ParamsError(f"{', '.join(both)} set in both {path} and {policy}: keep each key in one file")
        raw = {**raw, **extra}
    return merge(raw, yaml.safe_load(Path(overrides).read_text()) or {}) if overrides is not None else raw


def load_params(path: str | Path = "params.yaml", overrides: str | Path | None = None) -> Params:
    """The validated params (see `read_raw` for `overrides`)."""
    raw = read_raw(path, overrides)
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_describe(err, Path(overrides) if overrides else Path(path))) from None


def exp_run_args(overrides: str | Path) -> str:
    """`-S key=value` for every key of an overrides file (e.g. configs/full.yaml): the arguments of `dvc exp run`
    that set exactly the params `load_params(params.yaml, overrides)` merges (tests/test_config.py applies them)."""
    import json
    import shlex

    def flat(d: dict, prefix: str = ""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    raw = yaml.safe_load(Path(overrides).read_text()) or {}
    where = lambda k: f"{POLICY}:" if k.split(".")[0] in POLICY_KEYS else ""  # noqa: E731  (DVC's file prefix)
    return " ".join(f"-S {shlex.quote(f'{where(k)}{k}={json.dumps(v)}')}" for k, v in flat(raw))
