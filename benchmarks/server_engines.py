"""The project's server on each engine against llama.cpp's own server, side by side in one run on this machine:
p50 per reply one request at a time, and replies/s at 1 and at 16 concurrent requests, for the same prompts and
reply lengths.

For the test split's first N messages (the served method, `dvc repro` first):
    eager       `python -m supportagent serve` with evaluate.candidates 0: the greedy reply, batched across the
                requests that arrive together (static batches)
    vllm        the same with `--engine vllm`, from .venv-vllm (`make vllm`), where it exists: vLLM's continuous
                batching
    llama.cpp   llama.cpp's `llama-server` on the embedded SmolLM2 GGUF (Q4_1) the base is converted from,
                continuous batching over 16 slots: the same prompt token ids, exactly as many new tokens as the
                eager greedy reply to that prompt (its base carries no adapter, so only the speed compares)
    served      the project's server as deployed (params as they are: candidates reranked, the guard), eager
The reply lengths come from the greedy path run here first, one message at a time (`in_process`, batch 1).

llama-server is not on PyPI as a program: build it once from the llama.cpp that llama-cpp-python's source
archive carries (about 20 minutes on 2 cores), then pass its path:

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 && tar xzf llama_cpp_python-0.3.36.tar.gz
    cd llama_cpp_python-0.3.36/vendor/llama.cpp && cmake -B build -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF \\
        -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF && cmake --build build --target llama-server -j
    python benchmarks/server_engines.py --llama-server .../build/bin/llama-server   # -> results/server_engines/
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from cpu_serving import Greedy, source_gguf, timed  # benchmarks/, the script's own folder
from serve_load import free_port, load, start_server, stop_server

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm/bin/python"
SLOTS = 16  # llama-server's parallel sequences: as many as the most concurrent requests


def greedy_lengths(params, p: dict, test) -> tuple[list[list[int]], list[int], dict]:
    """The served method's prompt ids for each message, its greedy reply's length in tokens (the end token
    included), and the batch-1 latency of that greedy path in this process."""
    import pandas as pd

    from supportagent.data.retrieval import ExampleIndex
    from supportagent.inference.agent import prepare
    from supportagent.inference.generation import load_system
    from supportagent.inference.serving import ready_to_serve
    from supportagent.model import models

    index = ExampleIndex(p["index"], pd.read_parquet(f"{p['splits']}/train.parquet"), models.embedder_id())
    examples, _ = index.examples_and_references(models.load_embedder(), test["customer"].tolist(),
                                                test["brand"].tolist(), params.retrieval, 0)
    model, tok = load_system(params.method, p["base"], f"{p['adapters']}/{params.method}")
    prompts = [prepare(params, tok, r.brand, r.customer, r.context, ex)[0]
               for r, ex in zip(test.itertuples(), examples)]
    gen = ready_to_serve(model, tok, params.evaluate.model_copy(update={"candidates": 0}))
    latency, ids = timed(Greedy(gen), prompts)
    return prompts, [len(r) + 1 for r in ids], latency


def measure(url: str, bodies: list[dict], levels: list[int], path: str = "/v1/reply", check=None) -> dict:
    httpx.post(f"{url}{path}", json=bodies[0], timeout=600).raise_for_status()  # warm, untimed
    out = {f"c{c}": load(url, bodies, c, path, check) for c in levels}
    first = out[f"c{levels[0]}"]
    out["p50_ms_one_at_a_time"] = first["p50_ms"]
    out["speedup"] = {f"c{c}": round(out[f"c{c}"]["replies_per_s"] / first["replies_per_s"], 2) for c in levels}
    return out


def run_server(server: dict, port: int, bodies, levels, **kw) -> dict:
    """Start a server (`serve_load.start_server`'s arguments), measure it, stop it."""
    started = time.perf_counter()
    proc = start_server(port, SLOTS, **server)
    try:
        return {"startup_seconds": round(time.perf_counter() - started, 1),
                **measure(f"http://127.0.0.1:{port}", bodies, levels, **kw)}
    finally:
        stop_server(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-server", required=True, help="path of llama.cpp's llama-server program (see above)")
    ap.add_argument("--requests", type=int, default=48, help="test messages, one per request, at each level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--engines", nargs="+", default=["eager", "vllm", "llama.cpp", "served"])
    args = ap.parse_args()
    if not os.access(args.llama_server, os.X_OK):
        raise SystemExit(f"{args.llama_server} is not a program: build llama-server as this script's docstring says")
    import pandas as pd

    from supportagent import paths
    from supportagent.config import read_raw, load_params
    from supportagent.evaluation.evaluate import test_sample
    os.chdir(ROOT)
    p = {k: str(v) for k, v in paths.pipeline_paths().items()}
    params = load_params("params.yaml")
    test = test_sample(pd.read_parquet(f"{p['splits']}/test.parquet"), params.evaluate.test_size, params.seed)
    test = test.head(args.requests)
    gguf = source_gguf(p["base"])

    prompts, lengths, in_process = greedy_lengths(params, p, test)
    greedy_params = ROOT / "benchmarks/tmp/server_engines/params.yaml"  # params and policy merged, candidates 0
    greedy_params.parent.mkdir(parents=True, exist_ok=True)
    raw = read_raw("params.yaml")
    raw["evaluate"]["candidates"] = 0
    greedy_params.write_text(yaml.safe_dump(raw, sort_keys=False))

    messages = [{"brand": r.brand, "text": r.customer, "context": r.context or ""} for r in test.itertuples()]
    completions = [{"prompt": ids, "n_predict": n, "ignore_eos": True, "temperature": 0, "top_k": 1,
                    "cache_prompt": False} for ids, n in zip(prompts, lengths)]
    engines, port = {}, free_port()
    for engine in args.engines:
        print(f"{engine} ...", flush=True)
        if engine == "eager":
            engines[engine] = run_server({"engine": "eager", "params": str(greedy_params)}, port, messages,
                                         args.concurrency)
        elif engine == "vllm" and VLLM_PYTHON.exists():
            engines[engine] = run_server({"engine": "vllm", "params": str(greedy_params),
                                          "python": str(VLLM_PYTHON)}, port, messages, args.concurrency)
        elif engine == "llama.cpp":
            command = [args.llama_server, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
                       "-t", str(os.cpu_count()), "--parallel", str(SLOTS), "-c", str(SLOTS * 1024)]
            engines[engine] = run_server({"command": command, "health": "/health"}, port, completions,
                                         args.concurrency, path="/completion",
                                         check=lambda body, out: out.get("tokens_predicted") == body["n_predict"])
        elif engine == "served":
            engines[engine] = run_server({"engine": "eager"}, port, messages, args.concurrency)
        print(engine, json.dumps(engines.get(engine)), flush=True)

    version = subprocess.run([args.llama_server, "--version"], capture_output=True, text=True)
    top = max(args.concurrency)
    record = {
        "notes": f"the test split's first {len(test)} messages, one per request, greedy replies of the same lengths "
                 "on every engine but `served` (the project's server as deployed); llama.cpp runs the base GGUF "
                 f"with {SLOTS} slots; `in_process` is the greedy path one message at a time in the benchmark itself",
        "n_messages": len(test), "mean_prompt_tokens": round(float(np.mean([len(x) for x in prompts])), 1),
        "mean_new_tokens": round(float(np.mean(lengths)), 1), "in_process": in_process, "engines": engines,
        "targets": [records.target(f"{name}: replies/s at {top} requests / at 1", e["speedup"][f"c{top}"], ">= 2.5")
                    for name, e in engines.items() if name in ("served", "eager")],
        "machine": records.cpu_facts(),
        "versions": {**records.versions(), "llama-server": (version.stdout + version.stderr).strip()[:120]},
    }
    print(records.save("server_engines", record))


if __name__ == "__main__":
    main()
