"""The one prompt contract: the model input for training, evaluation and serving is built here only."""
from __future__ import annotations

from dataclasses import dataclass

from .retrieval import NO_EXAMPLES, Examples
from .rules import RuleResult, sanitise


def examples_block(brand: str, examples: Examples) -> list[str]:
    """The retrieved past pairs as prompt lines, nearest first, under a header that says where they come from."""
    if not examples.pairs:
        return []
    header = (f"Replies {brand} sent to similar messages:" if examples.source == "same_brand"
              else f"Replies other brands sent to similar messages ({brand} has none yet):")
    return [header, *(f'- Customer: "{sanitise(c)}" Reply: "{sanitise(r)}"' if c else f'- "{sanitise(r)}"'
                      for c, r in examples.pairs)]


def build_messages(system_prompt: str, brand: str, customer: str, tags: RuleResult | str,
                   context: str = "", reply: str | None = None, examples: Examples = NO_EXAMPLES) -> list[dict]:
    """Chat messages: system (brand), user (rule tags, retrieved past pairs, optional previous turn,
    customer text), and the assistant turn when a reference reply is given (training)."""
    tag_line = tags.tag_line() if isinstance(tags, RuleResult) else tags
    user = [tag_line, *examples_block(brand, examples)]
    if context:
        user.append(f"Previous turn: {sanitise(context)}")
    user.append(f"Customer: {sanitise(customer)}")
    messages = [
        {"role": "system", "content": system_prompt.format(brand=brand)},
        {"role": "user", "content": "\n".join(user)},
    ]
    if reply is not None:
        messages.append({"role": "assistant", "content": reply})
    return messages


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The model's own chat template, ending where the assistant starts to write."""
    prompt = [m for m in messages if m["role"] != "assistant"]
    try:
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - templates without a system role (e.g. Mistral v0.1)
        merged = [{"role": "user", "content": prompt[0]["content"] + "\n\n" + prompt[1]["content"]}]
        return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # -100 on prompt tokens; the reply and its end token are learned
    prompt_len: int
    prompt_truncated: bool


def encode(tokenizer, messages: list[dict], max_prompt_tokens: int, max_reply_tokens: int) -> Encoded:
    """Token ids of one example. Serving uses the prompt part only (`input_ids[:prompt_len]`).

    Labels come from the prompt length, not from the pad id: the pad token of SmolLM2 is its end
    token, and masking by pad id would hide the end-of-reply target so the model never stops.
    Over-long prompts keep their end (the customer text), cutting the system text's tail.
    """
    text = render_prompt(tokenizer, messages)
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    truncated = len(prompt_ids) > max_prompt_tokens
    if truncated:
        head = tokenizer(render_prompt(tokenizer, messages[:1] + [{"role": "user", "content": ""}]),
                         add_special_tokens=False)["input_ids"][:8]
        prompt_ids = head + prompt_ids[-(max_prompt_tokens - len(head)):]
    reply_ids: list[int] = []
    if messages[-1]["role"] == "assistant":
        reply_ids = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"][: max_reply_tokens - 1]
        reply_ids.append(tokenizer.eos_token_id)
    return Encoded(prompt_ids + reply_ids, [-100] * len(prompt_ids) + reply_ids, len(prompt_ids), truncated)
