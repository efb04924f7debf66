"""Candidates that share their prompt's KV cache (prefix_sharing.py) must attend exactly as if each had its own
copy: every decoding step's logits equal those of a full forward over the left-padded prompt and the reply so far."""
import pytest
import torch
from transformers import DynamicCache

from supportagent.inference.prefix_sharing import SharedPrompt, check_supported, shared_prompt_attention
from supportagent.model import models

pytestmark = pytest.mark.numeric  # run again under the other dtype by `make test-dtypes`

MESSAGES = ["hi", "where is my order, it is very late now", "my playlist vanished after the update"]


def _left_padded(tokenizer, messages):
    prompts = [tokenizer(m)["input_ids"] for m in messages]
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = torch.tensor(p), 1
    return ids, mask


def test_decoding_over_a_shared_prompt_cache_gives_the_logits_of_a_full_forward(tiny_base, tokenizer, fp32):
    model = models.load_base(tiny_base)
    torch.manual_seed(0)
    for p in model.parameters():  # a random model at init barely attends; larger weights make every position count
        p.data.mul_(8.0)
    n, steps = 3, 5
    ids, mask = _left_padded(tokenizer, MESSAGES)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
    shared, own = SharedPrompt.from_cache(cache, mask, n), DynamicCache(config=model.config)
    replies = torch.randint(0, len(tokenizer), (len(MESSAGES) * n, steps))  # each candidate's tokens
    rows, last = shared.rows, positions[:, -1:].repeat_interleave(n, 0)
    checked = 0
    for t in range(steps):
        if t == 2:  # candidates 1, 4 and 5 finish: their rows leave the batch
            keep = torch.tensor([i for i, r in enumerate(rows.tolist()) if r not in (1, 4, 5)])
            own.batch_select_indices(keep)
            rows, last = rows[keep], last[keep]
            shared.rows = rows
        last = last + 1
        with torch.no_grad(), shared_prompt_attention(model.config):
            got = model(input_ids=replies[rows, t][:, None], position_ids=last, past_key_values=own, use_cache=True,
                        shared_prompt=shared).logits[:, -1]
        prompt_of = rows // n
        full_ids = torch.cat([ids[prompt_of], replies[rows, : t + 1]], 1)
        full_mask = torch.cat([mask[prompt_of], torch.ones(len(rows), t + 1, dtype=mask.dtype)], 1)
        with torch.no_grad():
            want = model(input_ids=full_ids, attention_mask=full_mask,
                         position_ids=(full_mask.cumsum(-1) - 1).clamp(min=0)).logits[:, -1]
        # logits reach ~50: fp32 rounding ~2e-4 here; a wrong row or mask is off by units
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)
        checked += len(rows)
    assert checked == 9 + 9 + 6 * 3
    assert model.config._attn_implementation != "shared_prompt"  # the model's own attention is back


def test_architectures_the_shared_attention_does_not_cover_are_refused(tiny_base):
    config = models.load_base(tiny_base).config
    config.attn_logit_softcapping = 50.0
    with pytest.raises(NotImplementedError, match="soft-capping"):
        check_supported(config)
