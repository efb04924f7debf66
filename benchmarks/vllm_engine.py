"""vLLM against the project's eager engine on this CPU, for each method's trained adapter (`dvc repro` first), on
the first N test-split prompts as the evaluate stage builds them (tags, retrieved examples):
    same greedy replies   the greedy reply of each prompt through both engines (QLoRA folded into its dequantised
                          4-bit weights, written once as the checkpoint vLLM loads; the soft prompt as prompt
                          embeddings), in fp32
    p50 at batch 1        one reply at a time: the greedy path, and the default path (evaluate.candidates sampled
                          and reranked), each engine's
    replies/s batched     all N prompts' default replies in one call (`generate_all`)

    make vllm && .venv-vllm/bin/python benchmarks/vllm_engine.py [--n 32]     # -> benchmarks/results/vllm_engine/

llama.cpp is the third engine of benchmarks/cpu_serving.py, which times it on the same prompts and lengths."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from cpu_serving import Greedy, timed  # benchmarks/, the script's own folder

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]


def served_test_split(n: int, references: int):
    """The pipeline's paths and params, the first `n` test-split messages in the evaluate stage's order, their
    retrieved examples and `references` past replies, and the embedder that found them (the vLLM benchmarks')."""
    import pandas as pd

    from supportagent.model import models
    from supportagent import paths
    from supportagent.config import load_params
    from supportagent.evaluation.evaluate import test_sample
    from supportagent.data.retrieval import ExampleIndex

    os.environ["SUPPORTAGENT_DTYPE"] = "float32"
    os.chdir(ROOT)
    p = {k: str(v) for k, v in paths.pipeline_paths().items()}
    params = load_params("params.yaml")
    test = test_sample(pd.read_parquet(f"{p['splits']}/test.parquet"), 0, params.seed).head(n)
    index = ExampleIndex(p["index"], pd.read_parquet(f"{p['splits']}/train.parquet"), models.embedder_id())
    embedder = models.load_embedder()
    examples, refs = index.examples_and_references(embedder, test["customer"].tolist(), test["brand"].tolist(),
                                                   params.retrieval, references)
    return p, params, test, examples, refs, embedder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32, help="test prompts")
    args = ap.parse_args()
    from supportagent.inference.agent import prepare
    from supportagent.config import load_params
    from supportagent.inference.generation import load_system
    from supportagent.inference.serving import ready_to_serve

    p, params, test, examples, references, embedder = served_test_split(
        args.n, load_params(ROOT / "params.yaml").evaluate.rerank_references)
    ev = {"eager": params.evaluate.model_copy(update={"engine": "eager"}),
          "vllm": params.evaluate.model_copy(update={"engine": "vllm"})}
    results = {}
    for method in ("qlora", "prompt_tuning"):
        out = {}
        ids = {}
        for engine, e in ev.items():
            model, tok = load_system(method, p["base"], f"{p['adapters']}/{method}")
            prompts = [prepare(params, tok, r.brand, r.customer, r.context, ex)[0]
                       for r, ex in zip(test.itertuples(), examples)]
            start = time.perf_counter()
            default = ready_to_serve(model, tok, e, embedder, params.seed, params.model.max_prompt_tokens)
            ready = round(time.perf_counter() - start, 1)
            greedy = default.generate(prompts)  # the greedy replies, in one batch
            ids[engine] = [r.token_ids for r in greedy]
            g1, _ = timed(Greedy(default), prompts)
            d1, _ = timed(default, prompts, references)
            _, per_s = default.generate_all(prompts, params.evaluate.batch_size, progress=False, references=references)
            out[engine] = {"ready_seconds": ready, "greedy_batch_1": g1, "default_batch_1": d1,
                           "default_replies_per_s_batched": round(per_s, 2)}
            print(method, engine, out[engine], flush=True)
            del default, model
        out["same_greedy_replies"] = sum(a == b for a, b in zip(ids["eager"], ids["vllm"]))
        out["prompts"] = len(ids["eager"])
        results[method] = out
        print(method, "same greedy replies:", out["same_greedy_replies"], "of", out["prompts"], flush=True)
    import vllm

    record = {
        "notes": "the project's eager engine and vLLM's, side by side on the first test-split prompts, fp32; "
                 f"evaluate.candidates {params.evaluate.candidates} on the default path",
        "results": results, "machine": records.cpu_facts(),
        "versions": {**records.versions(), "vllm": vllm.__version__},
        "targets": [records.target(f"{m}: greedy replies equal to the eager engine's, of {r['prompts']}",
                                   r["same_greedy_replies"], f">= {round(r['prompts'] * 30 / 32)}")
                    for m, r in results.items()],
    }
    records.save("vllm_engine", record)


if __name__ == "__main__":
    with torch.no_grad():
        main()
