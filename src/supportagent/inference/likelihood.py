"""How likely the served model finds each reply after its message's prompt: a term of fit the reranker can weigh
(`evaluate.rerank_likelihood_weight`). A past reply sent to another message earlier can read well and still not fit
this one; the model that reads the prompt tells, where the embeddings of message and reply did not
(benchmarks/results/reply_pool/, the `likelihood` variants). It costs one more read of every reply after the prompt."""
from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def likelihoods(model, tokenizer, ids, mask, embeds, texts: list[str], max_tokens: int) -> np.ndarray:
    """Each text's mean token log-probability (its end token included, at most `max_tokens` tokens) after one prompt
    (`ids`, `mask`, `embeds`: decoding.batch_inputs of it, a soft prompt included): the prompt read once, its cache
    repeated for the texts, which are read together."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    first = model(input_ids=ids if embeds is None else None, inputs_embeds=embeds, attention_mask=mask,
                  past_key_values=cache, use_cache=True, logits_to_keep=1).logits[0, -1].float().log_softmax(-1)
    eos = tokenizer.eos_token_id
    seqs = [tokenizer(t, add_special_tokens=False)["input_ids"][: max_tokens - 1] + [eos] for t in texts]
    k, width, length = len(seqs), mask.shape[1], max(map(len, seqs))
    cache.batch_repeat_interleave(k)
    tokens = torch.full((k, length), eos, device=ids.device)
    own = torch.zeros((k, length), dtype=mask.dtype, device=ids.device)
    for j, seq in enumerate(seqs):
        tokens[j, :len(seq)], own[j, :len(seq)] = torch.tensor(seq), 1
    logits = model(input_ids=tokens, attention_mask=torch.cat([mask.expand(k, -1), own], 1),
                   position_ids=torch.arange(width, width + length, device=ids.device).expand(k, -1),
                   past_key_values=cache, use_cache=True).logits.float()
    steps = logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]
    return np.array([(float(first[seq[0]]) + float(steps[j, :len(seq) - 1].sum())) / len(seq)
                     for j, seq in enumerate(seqs)])
