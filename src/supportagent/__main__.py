"""Command line: `python -m supportagent {rules,reply,serve,readme,pr-report,plots,vendor-vega}`."""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

VLLM_IN_FLIGHT = 16  # `serve --engine vllm`: batches in flight, e.g. one per concurrent client of a busy desk


def _read_items(path: str | None, stdin) -> list[dict]:
    """JSON lines (`text`, optional `brand`, `context`, `id`) or a CSV with those columns; '-' or none = stdin.
    A line that is not JSON, or whose `text` is not a string, is skipped with a warning naming the line:
    give each item an `id` to match outputs to inputs (it is echoed in every result)."""
    if path and path != "-" and not Path(path).exists():
        sys.exit(f"error: {path} not found")
    source = stdin if not path or path == "-" else open(path, encoding="utf-8")
    if path and path.endswith(".csv"):
        return [dict(r) for r in csv.DictReader(source)]
    items = []
    for n, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            print(f"warning: line {n} is not JSON ({err.msg}); skipped", file=sys.stderr)
            continue
        obj = obj if isinstance(obj, dict) else {"text": obj}
        bad = [
            k for k, v in (("text", obj.get("text")), ("context", obj.get("context") or "")) if not isinstance(v, str)
        ]
        if bad:
            print(f"warning: line {n}: `{bad[0]}` must be a string, got {type(obj.get(bad[0])).__name__}; skipped",
                  file=sys.stderr)
            continue
        items.append(obj)
    return items


def _with_id(item: dict, result: dict) -> dict:
    return {"id": item["id"], **result} if "id" in item else result


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", type=Path, help="prepared base (default: dvc.yaml's paths.base)")
    p.add_argument("--adapter", type=Path, help="adapter folder (default: <dvc.yaml's paths.adapters>/<method>)")
    p.add_argument("--index", type=Path, help="embedding index of the train split, for the retrieved examples "
                   "(default: dvc.yaml's paths.index)")


def _with_pipeline_paths(args, *names: str):
    """Options left out take their path from dvc.yaml (`vars: paths`), where the pipeline wrote the files."""
    missing = [n for n in names if getattr(args, n, None) is None]
    if missing:
        from .paths import pipeline_paths

        paths = pipeline_paths()
        for name in missing:
            setattr(args, name, paths[name])
    return args


def _agent(params, args):
    """The served method (or --method) with its base, adapter and index."""
    from .inference.agent import SupportAgent

    method = args.method or params.method
    if args.engine:
        params = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"engine": args.engine})})
    if args.adapter is None and method != "zero_shot":
        args.adapter = _with_pipeline_paths(args, "adapters").adapters / method
    _with_pipeline_paths(args, "base", "index")
    return SupportAgent(params, base_dir=args.base, index_dir=args.index, method=method, adapter_dir=args.adapter)


def cmd_rules(args) -> None:
    from .config import load_params
    from .data.rules import apply_rules

    params = load_params(args.params).rules
    for item in _read_items(args.file, sys.stdin):
        result = apply_rules(item.get("text", ""), params, item.get("context", "") or "")
        print(json.dumps(_with_id(item, {"brand": item.get("brand"), **result.to_dict()}), ensure_ascii=False))


def cmd_reply(args) -> None:
    from .config import load_params

    params = load_params(args.params)
    if args.message is not None:
        items = [{"brand": args.brand, "text": args.message, "context": args.context or ""}]
    else:
        items = _read_items(args.file, sys.stdin)
        for it in items:
            it.setdefault("brand", args.brand)
    if not items:
        sys.exit("error: nothing to answer: give --message, or --file with JSON lines / CSV rows (brand, text)")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per model file is noise in a CLI
    start = time.perf_counter()
    agent = _agent(params, args)
    print(f"loaded {agent.method} in {time.perf_counter() - start:.1f} s (once per call: pass many messages with "
          "--file to pay it once)", file=sys.stderr)
    responses = [agent.reply(it["brand"] or "", it.get("text", ""), it.get("context", "") or "") for it in items] \
        if args.batch_size == 1 else agent.reply_many(items, args.batch_size)
    for it, r in zip(items, responses):
        if args.json:
            print(json.dumps(_with_id(it, r.to_dict()), ensure_ascii=False))
        else:
            print(f"{r.tags}\nescalate: {'YES' if r.escalate else 'no'}   method: {r.method}   "
                  f"latency: {r.latency_ms:.0f} ms{'   (input truncated)' if r.input_truncated else ''}"
                  f"   sent: {r.path}{' (' + '; '.join(r.flags) + ')' if r.flags else ''}\n{r.brand}: {r.reply}\n")


def cmd_readme(args) -> None:
    from .reporting.readme import update_readme

    if args.check:
        ok = update_readme(args.readme, check=True)
        if not ok:
            sys.exit("README results or reports/benchmarks.md differ from the metrics files: run `make readme`")
        print("README results are current")
    else:
        update_readme(args.readme)
        print(f"updated {args.readme}")


def cmd_pr_report(args) -> None:
    from .reporting.prreport import render

    text = render(args.base, all_metrics=args.all, plots_url=args.plots_url)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


def cmd_serve(args) -> None:
    import os

    import uvicorn

    from .config import load_params
    from .evaluation.review import ReviewSet
    from .app.server import Limits, create_app, is_loopback, model_thread

    token = args.token or os.environ.get("SUPPORTAGENT_TOKEN") or None
    if not is_loopback(args.host) and not token:
        sys.exit(f"error: binding to {args.host} exposes the API beyond this machine: set a bearer token "
                 "(--token or SUPPORTAGENT_TOKEN), or bind to 127.0.0.1")
    params = load_params(args.params)
    _with_pipeline_paths(args, "predictions", "ratings")
    try:
        review = ReviewSet(args.predictions, args.review_systems or params.review.systems, params.review.samples,
                           params.seed)
    except FileNotFoundError as err:
        print(f"review page disabled: {err}", file=sys.stderr)
        review = None
    if args.in_flight is not None and args.in_flight < 1:
        sys.exit("error: --in-flight must be at least 1 (batches answered at once)")
    limits = Limits(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    answer = method = executor = loop = None
    if not args.no_model:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        start = time.perf_counter()
        executor, agent = model_thread(lambda: _agent(params, args))  # loaded, and later answering, in one thread
        method = agent.method
        answer = lambda items: agent.reply_many(items, batch_size=limits.max_batch)  # noqa: E731
        print(f"loaded {method} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        if (warm := executor.submit(agent.warm_up, limits.max_batch).result()):
            print(f"warmed up in {warm:.1f} s (the decoding engine compiled, one message answered)", file=sys.stderr)
        if loop := getattr(getattr(agent, "generator", None), "serve_forever", None):  # vLLM: continuous batching
            executor.submit(loop)  # the model thread steps the engine from now on; in_flight batches feed it at once
            limits = replace(limits, in_flight=args.in_flight or VLLM_IN_FLIGHT)
            executor = ThreadPoolExecutor(limits.in_flight, thread_name_prefix="answer")
    app = create_app(answer, method, review, args.ratings, token=token, limits=limits, executor=executor)
    print(f"serving on http://{args.host}:{args.port} (reply API: POST /v1/reply; review page: /review)",
          file=sys.stderr)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        if loop:
            agent.generator.stop()


def cmd_plots(args) -> None:
    from .reporting.plots import check_page

    marks = check_page(Path(args.out), Path(args.png) if args.png else None, args.diff)
    for plot, n in marks.items():
        print(f"{plot:>20}: {n} marks")
    print(
        f"{args.out}/index.html: {len(marks)} plots, no network resources"
        + (f"; screenshot {args.png}" if args.png else "")
    )


def cmd_exp_args(args) -> None:
    from .config import exp_run_args

    print(exp_run_args(args.overrides))


def cmd_vendor_vega(args) -> None:
    from .reporting.plots import PAGE, VEGA, vendor

    vendor(Path(args.packages))
    print(f"wrote {PAGE} ({PAGE.stat().st_size / 1e6:.2f} MB) with " + ", ".join(f"{n}@{v}" for n, v in VEGA.items()))


def cmd_make_standin(args) -> None:
    from .model.standin import make_standin

    info = make_standin(
        args.out, layers=args.layers, tiny=args.tiny, seed=args.seed, tokenizer_from=args.tokenizer_from
    )
    print(f"wrote {args.out}: {info['params']:,} parameters, {info['layers']} layers, random weights "
          f"({info['what']}). Use it with: dvc exp run -S model.base={args.out}")


def main(argv: list[str] | None = None) -> None:
    from .config import METHODS, SYSTEMS  # the schema's: pydantic alone, no model library

    parser = argparse.ArgumentParser(prog="supportagent", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("rules", help="triage JSON lines (text, brand) with the rule layer only; no model")
    p.add_argument("file", nargs="?", help="JSON lines or CSV file; default stdin")
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("reply", help="answer customer messages with the served method")
    p.add_argument("--brand", default="")
    p.add_argument("--message", help="one customer message")
    p.add_argument("--context", help="the previous turn of the thread, if any")
    p.add_argument("--file", help="JSON lines or CSV (brand, text[, context]); '-' = stdin")
    p.add_argument("--method", choices=[*METHODS, "zero_shot"], help="override params.method")
    p.add_argument("--engine", choices=["auto", "eager", "compiled", "vllm"],
                   help="override evaluate.engine (vllm: installed apart, `make vllm`)")
    _model_options(p)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--json", action="store_true", help="one JSON object per reply")
    p.set_defaults(func=cmd_reply)

    p = sub.add_parser(
        "readme", help="render the README's results block and reports/benchmarks.md from metrics/ and benchmarks/"
    )
    p.add_argument("--readme", default="README.md")
    p.add_argument(
        "--check", action="store_true", help="fail if the README or reports/benchmarks.md differ from the metrics"
    )
    p.set_defaults(func=cmd_readme)

    p = sub.add_parser("pr-report", help="markdown of `dvc params diff` and `dvc metrics diff` against a base rev")
    p.add_argument("--base", default="main", help="git rev to compare with (default main)")
    p.add_argument("--out", help="also write the markdown to this file")
    p.add_argument("--all", action="store_true", help="every metric, not only the key ones")
    p.add_argument("--plots-url", help="link to the rendered plots, added to the report")
    p.set_defaults(func=cmd_pr_report)

    p = sub.add_parser("serve", help="HTTP reply API (POST /v1/reply) and the blind review page (/review)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; wider needs --token)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", help="bearer token required on the API (or SUPPORTAGENT_TOKEN)")
    p.add_argument("--method", choices=[*METHODS, "zero_shot"], help="override params.method")
    p.add_argument("--engine", choices=["auto", "eager", "compiled", "vllm"],
                   help="override evaluate.engine (vllm: installed apart, `make vllm`)")
    _model_options(p)
    p.add_argument("--predictions", type=Path, help="folder of the predictions the review page shows (default: "
                   "dvc.yaml's paths.predictions)")
    p.add_argument("--ratings", type=Path, help="where review ratings are appended (default: dvc.yaml's paths.ratings)")
    p.add_argument("--review-systems", nargs="+", choices=SYSTEMS, metavar="SYSTEM",
                   help="systems the review page shows (default: params review.systems), e.g. `qlora retrieval` for "
                        "the full configuration's metrics/full/predictions")
    p.add_argument("--max-batch", type=int, default=16, help="messages answered at once")
    p.add_argument("--max-wait-ms", type=float, default=50.0,
                   help="under concurrent traffic, how long a batch waits for more messages (one at a time: ~1 ms)")
    p.add_argument("--in-flight", type=int, help="with --engine vllm, batches answered at once, whose requests "
                   f"vLLM batches continuously (default {VLLM_IN_FLIGHT}); other engines answer one batch at a time")
    p.add_argument("--no-model", action="store_true", help="the review page only: no model is loaded")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("plots", help="render the `dvc plots` page offline in headless Chromium and check every plot")
    p.add_argument("--diff", nargs="+", metavar="REV", help="`dvc plots diff REV...` instead of `dvc plots show`")
    p.add_argument("--out", default="dvc_plots", help="folder of the rendered page (default dvc_plots)")
    p.add_argument("--png", default="plots/png/comparison.png", help="screenshot of the page ('' = none)")
    p.set_defaults(func=cmd_plots)

    p = sub.add_parser("exp-args", help="the `dvc exp run -S ...` arguments of an overrides file (configs/full.yaml)")
    p.add_argument("overrides")
    p.set_defaults(func=cmd_exp_args)

    p = sub.add_parser(
        "vendor-vega",
        help="replace the scripts inlined in .dvc/plots/page.html with the builds of unpacked npm packages "
        "(`make vendor-vega`)",
    )
    p.add_argument("packages", help="folder holding vega/, vega-lite/ and vega-embed/ as unpacked by npm")
    p.set_defaults(func=cmd_vendor_vega)

    p = sub.add_parser(
        "make-standin",
        help="write a local Mistral-7B-Instruct-v0.3 stand-in: its real tokenizer and chat "
        "format, its architecture, random weights (timing and code-path checks only: it writes nonsense)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write (then model.base: <folder>)")
    p.add_argument("--layers", type=int, help="decoder layers (default: the real 32)")
    p.add_argument("--tiny", action="store_true", help="width 64 and 2 layers, for tests on a CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer-from", type=Path, help="copy the tokenizer of a stand-in made before (on a machine "
                   "without mistral-common)")
    p.set_defaults(func=cmd_make_standin)

    args = parser.parse_args(argv)
    from .errors import UserError
    try:
        args.func(args)
    except (UserError, FileNotFoundError, ValueError, RuntimeError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
