"""Attention for sampled candidates that share a prompt: the prompt's KV cache is held and read once per prompt,
not once per candidate.

`Generator.sample` writes n candidates per prompt. Copying each prompt's KV cache n times (transformers'
`batch_repeat_interleave`) makes every decoding step read n copies of it: with 16 candidates of a few hundred
prompt tokens, gigabytes per step for SmolLM2, and on a CPU the step is bound by that memory traffic,
not by the matmuls. Here the candidates' queries are grouped by prompt and attend to the one prompt cache in a
single batched matmul, then to their own generated tokens (a small per-candidate cache); one softmax spans
both, so the result is exact attention over prompt + reply. Plain scaled-dot-product attention only (Llama,
Mistral, Qwen2 and the like): no logit soft-capping, no sliding window shorter than prompt + reply.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

NAME = "shared_prompt"


@dataclass
class SharedPrompt:
    """The prompts' KV cache, one copy per prompt, and which candidate each batch row writes."""
    keys: list[torch.Tensor]  # per layer: (prompts, key/value heads, prompt width, head dim)
    values: list[torch.Tensor]
    mask: torch.Tensor  # (prompts, prompt width) bool: real tokens (False: left padding)
    n: int  # candidates per prompt: candidate j of prompt i is row i * n + j
    rows: torch.Tensor  # (batch,) the candidate each batch row writes (rows of finished candidates leave)

    @classmethod
    def from_cache(cls, cache, mask: torch.Tensor, n: int) -> SharedPrompt:
        """From the DynamicCache of the prompts' forward (before any candidate token)."""
        return cls([layer.keys for layer in cache.layers], [layer.values for layer in cache.layers], mask.bool(), n,
                   torch.arange(mask.shape[0] * n, device=mask.device))


def _by_prompt(x: torch.Tensor, sp: SharedPrompt) -> torch.Tensor:
    """(rows, kv heads, g, ...) -> (prompts, kv heads, n * g, ...): each prompt's candidates side by side (zeros for
    the candidates that have left the batch)."""
    full = x.new_zeros((sp.mask.shape[0] * sp.n, *x.shape[1:]))
    full[sp.rows] = x
    b, h, g = sp.mask.shape[0], x.shape[1], x.shape[2]
    return full.view(b, sp.n, h, g, *x.shape[3:]).transpose(1, 2).reshape(b, h, sp.n * g, *x.shape[3:])


def _by_row(x: torch.Tensor, sp: SharedPrompt, g: int) -> torch.Tensor:
    """The inverse of `_by_prompt`, for the rows still in the batch."""
    b, h = x.shape[:2]
    return x.view(b, h, sp.n, g, *x.shape[3:]).transpose(1, 2).reshape(b * sp.n, h, g, *x.shape[3:])[sp.rows]


def attention(module, query, key, value, attention_mask=None, dropout=0.0, scaling=None, shared_prompt=None,
              **kwargs):
    """One decoding step's attention (query length 1): `query` (rows, heads, 1, d) over the shared prompt cache
    and the row's own generated `key`/`value` (rows, kv heads, t, d). Returns (rows, 1, heads, d) as transformers'
    attention functions do."""
    sp: SharedPrompt = shared_prompt
    if sp is None or query.shape[2] != 1:
        raise ValueError("shared-prompt attention decodes one token per step after the prompt's forward "
                         "(pass shared_prompt=SharedPrompt.from_cache(...))")
    rows, heads, _, d = query.shape
    kv_heads = key.shape[1]
    g = heads // kv_heads  # query heads per key/value head (grouped-query attention)
    scale = scaling if scaling is not None else d ** -0.5
    q = query.reshape(rows, kv_heads, g, d)
    k_prompt, v_prompt = sp.keys[module.layer_idx], sp.values[module.layer_idx]
    on_prompt = (_by_prompt(q, sp) @ k_prompt.transpose(-1, -2)) * scale  # (prompts, kv heads, n * g, width)
    on_prompt = on_prompt.masked_fill(~sp.mask[:, None, None, :], float("-inf"))
    on_prompt = _by_row(on_prompt, sp, g)  # (rows, kv heads, g, width)
    on_own = (q @ key.transpose(-1, -2)) * scale  # (rows, kv heads, g, t)
    weights = torch.softmax(torch.cat([on_prompt, on_own], -1).float(), -1).to(query.dtype)
    width = on_prompt.shape[-1]
    out = _by_row(_by_prompt(weights[..., :width], sp) @ v_prompt, sp, g) + weights[..., width:] @ value
    return out.reshape(rows, heads, 1, d).transpose(1, 2).contiguous(), None


def _no_mask(*args, **kwargs):
    """Decoding steps need no mask: the prompt's padding is in SharedPrompt.mask, and a row's own tokens are all
    real (finished rows leave the batch)."""
    return None


def check_supported(config) -> None:
    """Refuses architectures whose attention is not plain scaled dot products over every position."""
    if getattr(config, "attn_logit_softcapping", None) or getattr(config, "final_logit_softcapping", None):
        raise NotImplementedError(f"{config.model_type}: logit soft-capping is not supported by sampled candidates")
    if getattr(config, "layer_types", None) and any(t != "full_attention" for t in config.layer_types):
        raise NotImplementedError(f"{config.model_type}: sliding-window layers are not supported by sampled "
                                  "candidates")


@contextmanager
def shared_prompt_attention(config):
    """The model of `config` attends with `attention` inside the block (decoding steps given `shared_prompt=`),
    with its own attention again after it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    check_supported(config)
    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, _no_mask)
    before = config._attn_implementation
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = before
