"""The trained QLoRA adapter served two ways through vLLM, on the test split's prompts as the evaluate stage builds
them, greedy, fp32:
    folded        the adapter folded into its dequantised 4-bit base (what `evaluate.engine: vllm` serves)
    LoRARequest   the adapter on the 16-bit base, applied by vLLM's LoRA kernels (`enable_lora`), the way vLLM
                  serves several adapters on one base (multi-LoRA)
It counts the greedy replies the two share and scores each against the brand's real reply (ROUGE-L), to say what
serving the adapter on the 16-bit base costs.

    make vllm && .venv-vllm/bin/python benchmarks/vllm_lora.py [--n 96]    # -> benchmarks/results/vllm_lora/"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=96, help="test prompts (96: the whole test split)")
    args = ap.parse_args()
    from vllm import LLM
    from vllm.lora.request import LoRARequest
    from vllm_engine import served_test_split  # benchmarks/, the script's own folder

    from supportagent.inference.agent import prepare
    from supportagent.inference.generation import load_system
    from supportagent.evaluation.metrics import rouge_l
    from supportagent.inference.serving import ready_to_serve

    p, params, test, examples, _, _ = served_test_split(args.n, 0)
    ev = params.evaluate.model_copy(update={"engine": "vllm", "candidates": 0})
    model, tok = load_system("qlora", p["base"], f"{p['adapters']}/qlora")
    prompts = [prepare(params, tok, r.brand, r.customer, r.context, ex)[0]
               for r, ex in zip(test.itertuples(), examples)]
    start = time.perf_counter()
    folded = ready_to_serve(model, tok, ev, None, params.seed, params.model.max_prompt_tokens)
    folded_replies = folded.generate(prompts)
    folded_seconds = time.perf_counter() - start
    greedy = folded._greedy_params()
    del folded, model

    adapter = Path(p["adapters"]) / "qlora"
    rank = json.loads((adapter / "adapter_config.json").read_text())["r"]
    start = time.perf_counter()
    llm = LLM(model=str(Path(p["base"]) / "hf"), dtype=torch.float32, enable_lora=True, max_lora_rank=rank,
              max_model_len=params.model.max_prompt_tokens + ev.max_new_tokens, enforce_eager=True,
              enable_chunked_prefill=False, seed=params.seed)
    outs = llm.generate([{"prompt_token_ids": ids} for ids in prompts], greedy, use_tqdm=False,
                        lora_request=LoRARequest("qlora", 1, str(adapter)))
    lora_seconds = time.perf_counter() - start
    eos = tok.eos_token_id  # each reply cut at its end token and decoded as the project's engines do
    lora_texts = [tok.decode(ids[:ids.index(eos)] if eos in ids else ids, skip_special_tokens=True).strip()
                  for ids in (list(o.outputs[0].token_ids) for o in outs)]
    folded_texts = [r.text for r in folded_replies]
    refs = test["reply"].tolist()
    mean = lambda xs: round(sum(xs) / len(xs), 2)  # noqa: E731
    import vllm

    record = {
        "notes": "the trained QLoRA adapter through vLLM, folded into its dequantised 4-bit base against LoRA on the "
                 "16-bit base (LoRARequest), greedy replies of the test split's prompts (tags, retrieved examples), "
                 "fp32; ROUGE-L of the raw greedy reply against the brand's reply (no reranker, no guard)",
        "prompts": len(prompts), "lora_rank": rank,
        "same_greedy_replies": sum(a == b for a, b in zip(folded_texts, lora_texts)),
        "rouge_l": {"folded": mean(rouge_l(folded_texts, refs)), "lora_request": mean(rouge_l(lora_texts, refs))},
        "seconds": {"folded": round(folded_seconds, 1), "lora_request": round(lora_seconds, 1)},
        "machine": records.cpu_facts(), "versions": {**records.versions(), "vllm": vllm.__version__},
    }
    print(json.dumps({k: record[k] for k in ("prompts", "same_greedy_replies", "rouge_l", "seconds")}, indent=1))
    records.save("vllm_lora", record)


if __name__ == "__main__":
    with torch.no_grad():
        main()
