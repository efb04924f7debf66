"""Command line: `python -m supportagent {rules,reply,serve,readme,pr-report,plots,vendor-vega}`."""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path


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
        bad = [k for k, v in (("text", obj.get("text")), ("context", obj.get("context") or "")) if not isinstance(v, str)]
        if bad:
            print(f"warning: line {n}: `{bad[0]}` must be a string, got {type(obj.get(bad[0])).__name__}; skipped",
                  file=sys.stderr)
            continue
        items.append(obj)
    return items


def _with_id(item: dict, result: dict) -> dict:
    return {"id": item["id"], **result} if "id" in item else result


def cmd_rules(args) -> None:
    from .config import load_params
    from .rules import apply_rules

    params = load_params(args.params).rules
    for item in _read_items(args.file, sys.stdin):
        result = apply_rules(item.get("text", ""), params, item.get("context", "") or "")
        print(json.dumps(_with_id(item, {"brand": item.get("brand"), **result.to_dict()}), ensure_ascii=False))


def cmd_reply(args) -> None:
    from .agent import SupportAgent
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
    agent = SupportAgent(params, base_dir=args.base, index_dir=args.index, method=args.method, adapter_dir=args.adapter)
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
                  f"{'   (reply hit the token limit)' if r.reply_truncated else ''}\n{r.brand}: {r.reply}\n")


def cmd_readme(args) -> None:
    from .report import update_readme

    if args.check:
        ok = update_readme(args.readme, check=True)
        if not ok:
            sys.exit("README results differ from the metrics files: run `make readme`")
        print("README results are current")
    else:
        update_readme(args.readme)
        print(f"updated {args.readme}")


def cmd_pr_report(args) -> None:
    from .prreport import render

    text = render(args.base, all_metrics=args.all, plots_url=args.plots_url)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


def cmd_serve(args) -> None:
    import os

    import uvicorn

    from .config import load_params
    from .review import ReviewSet
    from .server import Limits, create_app, is_loopback

    token = args.token or os.environ.get("SUPPORTAGENT_TOKEN") or None
    if not is_loopback(args.host) and not token:
        sys.exit(f"error: binding to {args.host} exposes the API beyond this machine: set a bearer token "
                 "(--token or SUPPORTAGENT_TOKEN), or bind to 127.0.0.1")
    params = load_params(args.params)
    try:
        review = ReviewSet(args.predictions, params.review.systems, params.review.samples, params.seed)
    except FileNotFoundError as err:
        print(f"review page disabled: {err}", file=sys.stderr)
        review = None
    limits = Limits(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    answer = method = None
    if not args.no_model:
        from transformers.utils import logging as hf_logging

        from .agent import SupportAgent

        hf_logging.disable_progress_bar()
        start = time.perf_counter()
        agent = SupportAgent(params, base_dir=args.base, index_dir=args.index, method=args.method,
                             adapter_dir=args.adapter)
        method = agent.method
        answer = lambda items: agent.reply_many(items, batch_size=limits.max_batch)  # noqa: E731
        print(f"loaded {method} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    app = create_app(answer, method, review, args.ratings, token=token, limits=limits)
    print(f"serving on http://{args.host}:{args.port} (reply API: POST /v1/reply; review page: /review)",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def cmd_plots(args) -> None:
    """`dvc plots show` (or `dvc plots diff REV...`) into --out, then the page rendered in headless Chromium:
    it must load nothing from the network and every plot must draw marks; the screenshot goes to --png."""
    import subprocess

    from .plots import drawn_marks, remote_resources, render

    dvc = Path(sys.executable).parent / "dvc"
    cmd = [str(dvc) if dvc.exists() else "dvc", "plots", *(["diff", *args.diff] if args.diff else ["show"]), "-o", args.out]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed: {proc.stderr.strip()[-1500:]}")
    page = Path(args.out) / "index.html"
    remote = remote_resources(page.read_text())
    if remote:
        raise RuntimeError(f"{page} loads from the network: {remote[:3]} (is plots.html_template set in .dvc/config?)")
    marks = drawn_marks(render(page, Path(args.png) if args.png else None))
    for plot, n in marks.items():
        print(f"{plot:>20}: {n} marks")
    blank = [p for p, n in marks.items() if n == 0]
    if blank or not marks:
        raise RuntimeError(f"blank plots in {page}: {blank or 'all'}")
    print(f"{page}: {len(marks)} plots, no network resources" + (f"; screenshot {args.png}" if args.png else ""))


def cmd_exp_args(args) -> None:
    """`-S key=value` for every key of an overrides file (e.g. configs/full.yaml), for `dvc exp run`."""
    import shlex

    import yaml

    def flat(d: dict, prefix: str = ""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    overrides = yaml.safe_load(Path(args.overrides).read_text()) or {}
    print(" ".join(f"-S {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in flat(overrides)))


def cmd_vendor_vega(args) -> None:
    from .plots import PAGE, VEGA, build_page, without_scripts

    folder = Path(args.packages)
    scripts = {}
    for name, version in VEGA.items():
        built = folder / name / "build" / f"{name}.min.js"
        meta = json.loads((folder / name / "package.json").read_text())
        if meta["version"] != version:
            raise ValueError(f"{folder / name} is {name}@{meta['version']}, expected {version} (plots.VEGA)")
        scripts[name] = built.read_text(encoding="utf-8")
    PAGE.write_text(build_page(without_scripts(PAGE.read_text()), scripts))
    print(f"wrote {PAGE} ({PAGE.stat().st_size / 1e6:.2f} MB) with " + ", ".join(f"{n}@{v}" for n, v in VEGA.items()))


def main(argv: list[str] | None = None) -> None:
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
    p.add_argument("--method", choices=["qlora", "prompt_tuning", "zero_shot"], help="override params.method")
    p.add_argument("--base", default="models/base")
    p.add_argument("--adapter", help="adapter folder (default models/<method>)")
    p.add_argument("--index", default="models/index", help="embedding index of the train split (retrieved examples)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--json", action="store_true", help="one JSON object per reply")
    p.set_defaults(func=cmd_reply)

    p = sub.add_parser("readme", help="render the README's results tables from metrics/")
    p.add_argument("--readme", default="README.md")
    p.add_argument("--check", action="store_true", help="fail if the README differs from the metrics")
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
    p.add_argument("--method", choices=["qlora", "prompt_tuning", "zero_shot"], help="override params.method")
    p.add_argument("--base", default="models/base")
    p.add_argument("--adapter", help="adapter folder (default models/<method>)")
    p.add_argument("--index", default="models/index")
    p.add_argument("--predictions", default="reports/predictions", help="predictions the review page shows")
    p.add_argument("--ratings", default="reports/review/ratings.csv", help="where review ratings are appended")
    p.add_argument("--max-batch", type=int, default=16, help="messages answered at once")
    p.add_argument("--max-wait-ms", type=float, default=50.0,
                   help="under concurrent traffic, how long a batch waits for more messages (one at a time: ~1 ms)")
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

    p = sub.add_parser("vendor-vega", help="replace the scripts inlined in .dvc/plots/page.html with the builds of unpacked npm packages (`make vendor-vega`)")
    p.add_argument("packages", help="folder holding vega/, vega-lite/ and vega-embed/ as unpacked by npm")
    p.set_defaults(func=cmd_vendor_vega)

    args = parser.parse_args(argv)
    from .errors import UserError
    try:
        args.func(args)
    except (UserError, FileNotFoundError, ValueError, RuntimeError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
