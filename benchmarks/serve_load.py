"""Load test of `python -m supportagent serve` with the real served model: replies/s and latency of one request
at a time against 16 at once (the server batches concurrent requests), plus a burst of bad requests; every
status code is counted (the target is zero 5xx).

    python benchmarks/serve_load.py [--concurrency 1 16] [--requests 48]
    .venv-vllm/bin/python benchmarks/serve_load.py --engine vllm     # the server over vLLM (`make vllm` first)
    python benchmarks/serve_load.py --set evaluate.rerank_likelihood_weight=0     # with a param changed

Writes a record to benchmarks/results/serve_load/.
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
BAD = [b"{not json", b'{"text": 123}', b'{"text": null}', b"[]", b'"just a string"', b'{"text": "hi", "x": 1}',
       b'{"text": "hi", "method": "nope"}', b'[' + b'{"text": "a"},' * 200 + b'{"text": "a"}]',
       b'{"text": "' + b"a" * 300_000 + b'"}']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, max_batch: int, engine: str | None = None, *, python: str = sys.executable,
                 params: str | None = None, command: list[str] | None = None, health: str = "/healthz"
                 ) -> subprocess.Popen:
    """The project's server (or `command`, another server) on `port`, once `health` answers 200."""
    command = command or [python, "-m", "supportagent", *(["--params", params] if params else []), "serve",
                          "--port", str(port), "--max-batch", str(max_batch), *(["--engine", engine] if engine else [])]
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty server never blocks on a full pipe
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}{health}", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the server exited: {log.read()[-2000:]}")
    stop_server(proc)
    raise RuntimeError("the server did not come up in 5 minutes")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load(url: str, messages: list[dict], concurrency: int, path: str = "/v1/reply", check=None) -> dict:
    """`concurrency` clients, each on its own keep-alive connection, sending the next message (a JSON body for
    `path`) as soon as the last is answered; `check(body, response JSON)` counts the answers it rejects."""
    import threading

    todo, lock, results, rejected = iter(messages), threading.Lock(), [], []

    def client():
        with httpx.Client(base_url=url, timeout=600) as http:
            while True:
                with lock:
                    msg = next(todo, None)
                if msg is None:
                    return
                t = time.perf_counter()
                r = http.post(path, json=msg)
                results.append((r.status_code, (time.perf_counter() - t) * 1000))
                if check and r.status_code == 200 and not check(msg, r.json()):
                    rejected.append(msg)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = pd.Series([m for _, m in results])
    return {"concurrency": concurrency, "requests": len(messages), "wall_seconds": round(wall, 2),
            "replies_per_s": round(len(messages) / wall, 3), "p50_ms": round(ms.quantile(0.5), 1),
            "p95_ms": round(ms.quantile(0.95), 1), "status": dict(Counter(str(c) for c, _ in results)),
            **({"rejected": len(rejected)} if check else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--requests", type=int, default=48, help="requests per concurrency level (one message each)")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--engine", choices=["eager", "compiled", "auto", "vllm"],
                    help="the server's decoding engine (default: params' evaluate.engine)")
    ap.add_argument(
        "--url", help="load a server already running there (its --max-batch as given) instead of starting one"
    )
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="serve with this param changed (a dotted key and a YAML value, as `dvc exp run -S`), e.g. "
                         "evaluate.rerank_likelihood_weight=0; the record names the changes")
    args = ap.parse_args()
    from supportagent.reporting import records

    overrides = {key: yaml.safe_load(value) for key, value in (s.split("=", 1) for s in args.set)}
    folder = tempfile.TemporaryDirectory() if overrides else None
    params = None
    if folder:  # one merged params file (params.yaml, policy.yaml, the changes): the server's --params
        from supportagent.config import merge, read_raw

        params = str(Path(folder.name) / "params.yaml")
        merged = merge(read_raw(ROOT / "params.yaml"), records.unflatten(overrides))
        Path(params).write_text(yaml.safe_dump(merged, sort_keys=False))

    test = pd.read_parquet(ROOT / "data/processed/test.parquet")
    messages = [{"brand": r.brand, "text": r.customer, "context": r.context or ""}
                for r in test.head(args.requests).itertuples()]
    port = free_port()
    url = args.url or f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = None if args.url else start_server(port, args.max_batch, args.engine, params=params)
    try:
        record = {"notes": "POST /v1/reply on the real served model, one message per request, the test split's first "
                          f"{args.requests} messages; the server batches requests that arrive together",
                  "machine": {**records.cpu_facts(), **records.gpu_facts()},
                  "startup_seconds": None if args.url else round(time.perf_counter() - started, 1),
                  "max_batch": args.max_batch, "engine": args.engine or "params", "overrides": overrides}
        first = time.perf_counter()  # the first request after the health check: what the first customer waits
        httpx.post(f"{url}/v1/reply", json=messages[0], timeout=600).raise_for_status()
        record["first_request_ms"] = round((time.perf_counter() - first) * 1000, 1)
        record["levels"] = [load(url, messages, c) for c in args.concurrency]
        health = httpx.get(f"{url}/healthz").json()
        record["batches"] = {"count": health["batches"], "messages": health["messages"]}
        bad = [httpx.post(f"{url}/v1/reply", content=b, headers={"content-type": "application/json"}, timeout=60)
               for b in BAD]
        record["bad_requests"] = dict(Counter(str(r.status_code) for r in bad))
    finally:
        if proc:
            stop_server(proc)
        if folder:
            folder.cleanup()
    base = record["levels"][0]["replies_per_s"]
    record["speedup"] = {str(lv["concurrency"]): round(lv["replies_per_s"] / base, 2) for lv in record["levels"]}
    record["server_errors"] = sum(int(n) for lv in record["levels"] for c, n in lv["status"].items() if c >= "500") + \
        sum(int(n) for c, n in record["bad_requests"].items() if c >= "500")
    record["targets"] = [records.target("5xx responses", record["server_errors"], "<= 0")]
    records.save("serve_load", record, label="-".join(filter(None, [args.engine, "set" if overrides else ""])))
    print(json.dumps({k: record[k] for k in ("levels", "speedup", "bad_requests", "server_errors")}, indent=1))


if __name__ == "__main__":
    main()
