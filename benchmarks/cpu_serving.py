"""Serving on this CPU, side by side with llama.cpp on the same base, prompts and reply lengths.

For each method's trained adapter (`dvc repro` first), on the first N test-split prompts as the evaluate stage
builds them (tags, retrieved examples), one reply at a time (batch 1):
    default        what the evaluate stage and `reply` serve: with evaluate.candidates > 0 the reply chosen among
                   the greedy one and the sampled candidates (reranking.py), with 0 the greedy path below
    greedy         the greedy reply alone (evaluate.candidates: 0): evaluate.engine auto (eager here) in the
                   compute dtype (runtime.compute_dtype), QLoRA folded into the dequantised 4-bit weights
    compiled       the greedy path on the compiled engine's loop (static KV cache; a CPU does not compile it)
    bfloat16       the greedy path with the model in bf16 (SUPPORTAGENT_DTYPE=bfloat16): half the bytes per
                   weight; its replies are the fp32 ones rounded, so some part from them (timed only where the CPU
                   multiplies bf16 fast, runtime.compute_dtype's training dtype; the record names it when skipped)
    vLLM           where vLLM is installed (`make vllm`, then this script in .venv-vllm): the greedy and the
                   default path through `evaluate.engine: vllm` (vllm_engine.py), in fp32
    llama.cpp      llama-cpp-python on the embedded SmolLM2 GGUF (Q4_1) the base is converted from: the same
                   prompt token ids (prompt tuning's 20 soft-prompt vectors have no GGUF form: its text prompt
                   only), and exactly as many new tokens as the greedy path's reply to that prompt
Records p50/p95 ms, the ratio of each path's p50 to llama.cpp's, and how many replies equal the greedy path's.

    pip install llama-cpp-python==0.3.36    # builds from PyPI's source archive (about 5 minutes on 2 cores)
    python benchmarks/cpu_serving.py        # -> benchmarks/results/cpu_serving/
    .venv-vllm/bin/python benchmarks/cpu_serving.py     # the same, vLLM's paths included (llama-cpp-python there too)
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]


def percentiles(times: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(times, 50)), 1), "p95_ms": round(float(np.percentile(times, 95)), 1)}


def timed(gen, prompts: list[list[int]], references: list[list[str]] | None = None) -> tuple[dict, list[list[int]]]:
    """Batch-1 replies (`Generator.reply`, with each prompt's references), each timed, after one untimed reply."""
    refs = references or [[] for _ in prompts]
    gen.reply([prompts[0]], [refs[0]])
    times, ids = [], []
    for p, r in zip(prompts, refs):
        start = time.perf_counter()
        ids.append(gen.reply([p], [r])[0].token_ids)
        times.append((time.perf_counter() - start) * 1000)
    return percentiles(times), ids


class Greedy:
    """A generator's greedy path alone, with `reply`'s signature (for `timed`)."""

    def __init__(self, gen):
        self.gen = gen

    def reply(self, prompts, references=None):
        return self.gen.generate(prompts)


def source_gguf(base_dir: str) -> Path:
    """The embedded GGUF the prepared base was converted from, which llama.cpp runs as the same base."""
    from supportagent.model import bases

    manifest, _ = bases.read_manifest(base_dir)
    gguf = bases.package_dir(bases.EMBEDDED_PACKAGE) / bases.EMBEDDED_GGUF
    if manifest["source"] != "gguf" or bases.sha256(gguf) != manifest["gguf_sha256"]:
        sys.exit(f"{base_dir} is not converted from {gguf}: llama.cpp would not run the same base")
    return gguf


def llama_cpp_timed(llm, prompts: list[list[int]], lengths: list[int]) -> dict:
    """llama.cpp's greedy decoding of exactly `lengths[i]` tokens after prompt i, from an empty KV cache."""
    times = []
    for i, (p, n) in enumerate([(prompts[0], lengths[0])] + list(zip(prompts, lengths))):
        llm.reset()  # no prefix reuse between prompts: the torch paths have none either
        start = time.perf_counter()
        for k, _ in enumerate(llm.generate(p, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True), 1):
            if k >= max(n, 1):
                break
        if i:  # the first one warms up
            times.append((time.perf_counter() - start) * 1000)
    return percentiles(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32, help="test prompts (batch 1 each)")
    args = ap.parse_args()
    try:
        from llama_cpp import Llama
    except ImportError:
        sys.exit("llama.cpp is the yardstick here: pip install llama-cpp-python==0.3.36 (builds from source)")
    import pandas as pd

    from supportagent.model import models
    from supportagent import paths, runtime
    from supportagent.inference.agent import prepare
    from supportagent.config import load_params
    from supportagent.evaluation.evaluate import test_sample
    from supportagent.inference.generation import Generator, load_system
    from supportagent.data.retrieval import ExampleIndex
    from supportagent.inference.serving import ready_to_serve

    os.chdir(ROOT)
    p = {k: str(v) for k, v in paths.pipeline_paths().items()}
    params = load_params("params.yaml")
    test = test_sample(pd.read_parquet(f"{p['splits']}/test.parquet"), params.evaluate.test_size, params.seed).head(
        args.n
    )
    index = ExampleIndex(p["index"], pd.read_parquet(f"{p['splits']}/train.parquet"), models.embedder_id())
    embedder = models.load_embedder()
    examples, references = index.examples_and_references(embedder, test["customer"].tolist(), test["brand"].tolist(),
                                                         params.retrieval, params.evaluate.rerank_references)
    greedy_ev = params.evaluate.model_copy(update={"candidates": 0})
    gguf = source_gguf(p["base"])
    llm = Llama(str(gguf), n_ctx=2048, n_threads=torch.get_num_threads(), n_batch=512, verbose=False)

    # the bf16 path only where the CPU multiplies bf16 fast (runtime's training dtype); elsewhere bf16 matrix
    # products run many times slower than fp32 (benchmarks/results/cpu_dtype/) and the path would take hours
    bf16_worth_timing = runtime.compute_dtype(training=True) == torch.bfloat16
    has_vllm = importlib.util.find_spec("vllm") is not None
    results = {}
    for method in ("qlora", "prompt_tuning"):
        model, tok = load_system(method, p["base"], f"{p['adapters']}/{method}")
        prompts = [prepare(params, tok, r.brand, r.customer, r.context, ex)[0]
                   for r, ex in zip(test.itertuples(), examples)]
        gen = ready_to_serve(model, tok, greedy_ev)
        greedy, reference = timed(gen, prompts)
        lengths = [len(r) + 1 for r in reference]  # the end token is decoded too
        # the same (folded) model: the Generator takes the soft prompt from it again
        compiled, ids = timed(Generator(model, tok, gen.max_new_tokens, gen.repetition_penalty, "compiled"), prompts)
        compiled["same_replies"] = sum(a == b for a, b in zip(ids, reference))
        bf16 = None
        if bf16_worth_timing:
            os.environ["SUPPORTAGENT_DTYPE"] = "bfloat16"
            model16, _ = load_system(method, p["base"], f"{p['adapters']}/{method}")
            bf16, ids = timed(ready_to_serve(model16, tok, greedy_ev), prompts)
            del os.environ["SUPPORTAGENT_DTYPE"]
            bf16["same_replies"] = sum(a == b for a, b in zip(ids, reference))
        llama = llama_cpp_timed(llm, prompts, lengths)
        dtype = lambda g: str(next(g.parameters()).dtype).removeprefix("torch.")
        greedy_name = f"greedy ({gen.engine}, {dtype(gen.model)})"
        paths_ = {}
        n = params.evaluate.candidates
        if n:
            reranked = ready_to_serve(model, tok, params.evaluate, embedder, params.seed)
            default, ids = timed(reranked, prompts, references)
            default["same_replies"] = sum(a == b for a, b in zip(ids, reference))
            paths_[f"default: {n} candidates, reranked (sampled in {dtype(reranked.sampler)})"] = default
        paths_ |= {("default, " if not n else "") + greedy_name: greedy, "compiled engine": compiled,
                   **({"bfloat16": bf16} if bf16 else {}), "llama.cpp (base GGUF)": llama}
        if has_vllm:  # one engine for both paths; the model is folded already, as vLLM serves it
            engine = ready_to_serve(model, tok, params.evaluate.model_copy(update={"engine": "vllm"}), embedder,
                                    params.seed, params.model.max_prompt_tokens)
            paths_["greedy (vLLM, float32)"], ids = timed(Greedy(engine), prompts)
            paths_["greedy (vLLM, float32)"]["same_replies"] = sum(a == b for a, b in zip(ids, reference))
            if n:
                paths_[f"default (vLLM): {n} candidates, reranked"], _ = timed(engine, prompts, references)
            del engine
        for r in paths_.values():
            r["x_llama_cpp"] = round(r["p50_ms"] / llama["p50_ms"], 2)
        results[method] = {"mean_prompt_tokens": round(float(np.mean([len(x) for x in prompts])), 1),
                           "mean_new_tokens": round(float(np.mean(lengths)), 1), "paths": paths_}
        print(method, json.dumps(results[method]), flush=True)

    import llama_cpp

    record = {
        "notes": "batch-1 replies on this CPU to the first test-split prompts, each path against llama.cpp's greedy "
        "replies on the same base (the GGUF it is converted from), prompt ids and the greedy path's reply "
        "lengths",
        "n_prompts": len(test),
        "results": results,
        **(
            {}
            if bf16_worth_timing
            else {
                "not_timed": {
                    "bfloat16": "this CPU does not multiply bf16 faster than fp32 "
                    "(runtime.compute_dtype: fp32 here), and on plain AVX2 "
                    "bf16 matrix products run many times slower"
                }
            }
        ),
        "targets": [
            records.target(
                f"{m}: default p50 / llama.cpp's",
                next(v for k, v in r["paths"].items() if k.startswith("default"))["x_llama_cpp"],
                "<= 2",
            )
            for m, r in results.items()
        ],
        "machine": records.cpu_facts(),
        "versions": {**records.versions(), "llama-cpp-python": llama_cpp.__version__,
                     **({"vllm": importlib.import_module("vllm").__version__} if has_vllm else {})},
    }
    records.save("cpu_serving", record)


if __name__ == "__main__":
    main()
