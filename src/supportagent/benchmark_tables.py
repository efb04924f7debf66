"""Sections of reports/benchmarks.md from the GPU and server benchmark records in benchmarks/."""
from __future__ import annotations

from pathlib import Path

from .comparison import LEAD, load_all, load_json
from .config import METHODS, SYSTEMS, load_params
from .markdown import span, table


def earlier_lines(runs: list[dict], describe, lead: str = "Earlier") -> list[str]:
    """A paragraph per earlier run a benchmark record keeps (`earlier_runs`): lead + ", " + describe(run) + "."
    ("Also" for the runs of another setting it keeps beside the headline one: `other_runs`)."""
    return [line for e in runs for line in ("", f"{lead}, {describe(e)}.")]


def serve_tables(r: dict, name: str) -> list[str]:
    """reports/benchmarks.md section from a `benchmarks/serve_load.py` record: the HTTP server one request at a time against many."""
    m = r["machine"]
    where = m.get("gpu") or f"{m['cores']} cores, {m['cpu']}, AVX512-BF16: {m.get('avx512_bf16')}"
    rows = [[lv["concurrency"], lv["requests"], lv["replies_per_s"], r["speedup"][str(lv["concurrency"])], lv["p50_ms"],
             lv["p95_ms"], ", ".join(f"{k}: {v}" for k, v in sorted(lv["status"].items()))] for lv in r["levels"]]
    top = r["levels"][-1]
    return [f"### The HTTP server under load on {where} (`benchmarks/{name}`)", "",
            f"`{r['command']}` on {r['date']}" + (f" (commit {r['commit']})" if r.get("commit") else "")
            + f": {r['what']}; batches of at most {r['max_batch']}."
            + (f" Set-up: {r['setup']}." if r.get("setup") else "")
            + (f" The server answered its health check {r['startup_seconds']:,.1f} s after it was launched."
               if r.get("startup_seconds") is not None else "")
            + (f" Its first request took {r['first_request_ms']:,.0f} ms (the levels below follow it)."
               if r.get("first_request_ms") is not None else ""), "",
            table(["concurrent requests", "requests", "replies/s", "x one at a time", "p50 ms", "p95 ms", "HTTP status"],
                   rows), "",
            f"At concurrency {top['concurrency']}: {r['speedup'][str(top['concurrency'])]}x the replies/s of one request "
            f"at a time (target >= 3x: {'met' if r['speedup'][str(top['concurrency'])] >= 3 else '**not met**'}). "
            f"Bad requests sent during the run: " + ", ".join(f"{v} x {k}" for k, v in sorted(r["bad_requests"].items()))
            + f"; 5xx responses in all: {r['server_errors']}." + (f" On this path {r['note']}." if r.get("note") else ""),
            *earlier_lines(r.get("other_runs", []), _serve_run, "Also"),
            *earlier_lines(r.get("earlier_runs", []), _serve_run)]


def _serve_run(e: dict) -> str:
    """Another run a serve_load record keeps, in a sentence: its setting, date, commit, start-up and levels."""
    top = e["levels"][-1]["concurrency"]
    speedup = e.get("speedup", {}).get(str(top)) if top > 1 else None
    return (f"{e['what']} ({e['date']}" + (f", commit {e['commit']}" if e.get("commit") else "")
            + (f", started in {e['startup_seconds']:,.1f} s" if e.get("startup_seconds") is not None else "") + "): p50 "
            f"{e['levels'][0]['p50_ms']:,.0f} ms one request at a time"
            + (f", first request {e['first_request_ms']:,.0f} ms" if e.get("first_request_ms") is not None else "") + ", "
            + ", ".join(f"{lv['replies_per_s']} replies/s at concurrency {lv['concurrency']}" for lv in e["levels"])
            + (f" ({speedup}x one request at a time at {top})" if speedup is not None else ""))


def _rouge_semantic(systems: dict[str, dict]) -> str:
    """"name ROUGE-L / semantic sim." for each system's metrics, comma-separated."""
    return ", ".join(f"{name} {m['rouge_l']:.2f} / {m['semantic_similarity']:.2f}" for name, m in systems.items())


def _concurrent(c: dict) -> tuple[int | None, float | None]:
    """(jobs, wall seconds) of a GPU run with several stages at once: a run made so, or its `concurrent` record."""
    if c.get("jobs", 1) > 1:
        return c["jobs"], c["wall_seconds"]
    return (c["concurrent"]["jobs"], c["concurrent"]["wall_seconds"]) if "concurrent" in c else (None, None)


def _earlier_default(e: dict) -> str:
    """An earlier GPU run of the default params, as the stage table would show it (its code named by commit)."""
    llm = [s for k, s in e["stage_seconds"].items() if k.startswith("evaluate@") and k != "evaluate@retrieval"]
    return (f"the default params at commit {e['commit']} ({e['date']}, {e['machine'].get('gpu')}): "
            f"{e['model_stages_seconds']:,} s one stage after another"
            + (f", {e['concurrent']['wall_seconds']:,} s with --jobs {e['concurrent']['jobs']}"
               if "concurrent" in e else "")
            + f"; its LLM evaluate stages {min(llm):,}-{max(llm):,} s")


def _one_at_a_time(default: dict) -> str:
    """The default's run of the same code one stage after another that ended early (`one_stage_at_a_time`): the
    stages it ran, and those of the whole pipeline it did not."""
    s = default["one_stage_at_a_time"]["stage_seconds"]
    missing = [k for k in default["stage_seconds"] if k not in s]
    return (f"The same commit one stage after another, as `dvc repro` runs them (a run that ended before "
            f"{', '.join(missing)}): " + ", ".join(f"{k} {v:,} s" for k, v in s.items())
            + f"; {sum(s.values()):,.1f} s for these {len(s)} stages.")


def gpu_tables(g: dict, evals: dict, root: Path) -> list[str]:
    """reports/benchmarks.md sections from benchmarks/gpu_h100.json: stage times, the full configuration, the 7B benchmark."""
    conf = g["configurations"]
    default, full, big = conf["default"], conf["full"], conf["mistral_7b"]
    params = load_params(root / "params.yaml") if (root / "params.yaml").exists() else None
    stages = list(default["stage_seconds"])
    earlier = [e for e in default.get("earlier_runs", []) if e.get("commit")]  # runs of code named by its commit
    out = [f"### The pipeline on one {g['machine'].get('gpu')} (`benchmarks/gpu_h100.json`)", "",
           *([f"Default params as {default['params_note']}.", ""] if default.get("params_note") else []),
           table(["stage", *(f"{name}, s" + (f" ({c['machine']['gpu']})" if c.get("machine", {}).get("gpu") not in
                                                  (None, g["machine"].get("gpu")) else "")
                             for name, c in (("default params", default), ("configs/full.yaml", full)))],
                  [[k, default["stage_seconds"][k], full["stage_seconds"].get(k, "–")] for k in stages]
                  + [["whole pipeline, one stage after another, as `dvc repro` runs them",
                      *(c["model_stages_seconds"] if c.get("jobs", 1) == 1 else "–" for c in (default, full))]]
                  + [["whole pipeline, wall clock with `--jobs N` (independent stages side by side; target for "
                      "default: <= 180)",
                      *(f"**{w}** (N={j})" if w else "–" for j, w in (_concurrent(default), _concurrent(full)))]]), "",
           *(["A column whose run had several stages at once (N above) has stage seconds that overlap.", ""]
             if max(default.get("jobs", 1), full.get("jobs", 1)) > 1 else []),
           *([_one_at_a_time(default), ""] if "one_stage_at_a_time" in default else []),
           *earlier_lines(earlier, _earlier_default)[1:], *([""] if earlier else []),
           table(["training on the GPU", "tokens/s", "peak GPU MB", "train s", "final val loss"],
                  [[f"{m} ({name})", *(c["metrics"][f"train/{m}"][x] for x in
                                       ["tokens_per_second", "peak_memory_mb", "train_seconds", "final_val_loss"])]
                   for name, c in (("default", default), ("full", full)) for m in METHODS])]
    if default.get("seed_runs"):
        b = default["seed_runs"]["baselines"]
        out += ["", "### Training seeds of the default configuration on the GPU", "",
                *seed_run_lines(default["seed_runs"], b["retrieval"], "The default params' QLoRA, served with its "
                                "reranked candidates, trained and tested on the test split with five seeds, the five "
                                "pipelines side by side on one GPU"), "",
                "The other systems of the first run, on the GPU (ROUGE-L / semantic sim.): "
                + _rouge_semantic(b) + ". GPU decoding draws other candidates than a CPU from the same seed, so "
                "these are not the committed CPU run's figures."]
        evals_run = {s: default["metrics"][f"eval/{s}"] for s in SYSTEMS if f"eval/{s}" in default["metrics"]}
        if default.get("commit") and evals_run:  # the stage table's run, of the current code
            how = "one stage at a time" if default.get("jobs", 1) == 1 else f"--jobs {default['jobs']}"
            out += ["", f"The same seed in the stage table's run ({default['machine'].get('gpu')}, {how}, "
                        f"commit {default['commit']}; ROUGE-L / semantic sim.): " + _rouge_semantic(evals_run)
                    + ". GPU training and decoding are not bitwise repeatable, so a seed is no promise of the same "
                      "replies on another card or run."]
    if (root / "metrics/full/eval").exists():
        fe, ft = load_all(root / "metrics/full")
        fd = load_json(root / "metrics/full/data.json")
        lead = load_json(root / "metrics/full/comparison.json").get("lead_over_retrieval", {}).get("qlora", {})
        vs = lambda k: f"{fe['qlora'][k]} vs {fe['retrieval'][k]}" + (  # noqa: E731  (with the lead's interval)
            f" (per-message lead {lead[k]['mean']:+.2f}, 95% interval {span(lead[k])})" if span(lead.get(k)) else "")
        out += ["", "### What more data and compute buy: `configs/full.yaml` on the GPU (`metrics/full/`)", "",
                f"All {fd['pairs']:,} pairs of the top-5 brands (no per-brand cap, so SpotifyCares is "
                f"{100 * fd['pairs_per_brand'].get('SpotifyCares', 0) / fd['pairs']:.0f}% of them), longer context, "
                f"{ft['qlora']['epochs']:g} epochs ({ft['qlora']['steps']} QLoRA steps); its own test split (n={fe['qlora']['n']}).", "",
                table(["system", "ROUGE-L full", "ROUGE-L default (CPU)", "semantic sim. full", "semantic sim. default",
                        "BLEU full", "chrF full"],
                       [[s, fe[s]["rouge_l"], evals[s]["rouge_l"], fe[s]["semantic_similarity"],
                         evals[s]["semantic_similarity"], fe[s]["bleu"], fe[s]["chrf"]] for s in SYSTEMS]), "",
                table(["target (full configuration)", "measured", "met"],
                       [["qlora ROUGE-L >= 30 (Hardalov et al. 2018: 24.5, seq2seq on all of TWCS)", fe["qlora"]["rouge_l"],
                         "yes" if fe["qlora"]["rouge_l"] >= 30 else "**no**"],
                        ["qlora ROUGE-L above retrieval", vs("rouge_l"),
                         "yes" if fe["qlora"]["rouge_l"] > fe["retrieval"]["rouge_l"] else "**no**"],
                        ["qlora semantic similarity above retrieval", vs("semantic_similarity"),
                         "yes" if fe["qlora"]["semantic_similarity"] > fe["retrieval"]["semantic_similarity"] else "**no**"]])]
        if full.get("seed_runs"):
            main = {"seed": params.seed if params else "params'", **fe["qlora"],
                    "final_val_loss": ft["qlora"]["final_val_loss"]}
            out += ["", *seed_run_lines(full["seed_runs"], fe["retrieval"], "The same QLoRA trained and tested with "
                                        "other seeds", (main,), target=30)]
    if (root / "benchmarks/full_sweep.json").exists():
        chosen = ""  # the reranker setting params.yaml holds, as a key of the selection grid
        if params:
            ev = params.evaluate
            chosen = selection_key(ev.rerank_references, ev.rerank_word_weight, ev.rerank_reference_weight)
        out += ["", *full_sweep_tables(load_json(root / "benchmarks/full_sweep.json"), full, chosen)]
    rows = [[v["method"], v["batch"], v["checkpoint_every_n_layers"], v.get("lora_dropout", "–"),
             "oom" if v.get("oom") else v["tokens_per_second"], v.get("peak_memory_gib", "–"),
             v.get("mfu", "–"), v.get("hfu", "–")]
            for k, v in big["results"].items() if not k.startswith("serve")]
    q = g["qlora_7b"]
    seq = next(iter(big["results"].values()))["seq"]
    out += ["", f"### Mistral-7B architecture, random weights, sequence length {seq} "
                f"(`benchmarks/gpu_7b.py`)", "",
            "Checkpoint = gradient checkpointing of every n-th decoder layer (0 = off). MFU counts forward + "
            f"input-gradient FLOPs of the frozen base against {big['peak_tflops_bf16']:.0f} TFLOP/s bf16; HFU adds the recompute.", "",
            table(["method", "batch", "checkpoint", "LoRA dropout", "tokens/s", "peak GiB", "MFU", "HFU"], rows), "",
            f"Chosen QLoRA configuration ({q['chosen_as']}): **{q['tokens_per_second']:,.0f} tokens/s at "
            f"{q['peak_memory_gib']} GiB** (target >= 7,239 tokens/s at <= 10 GiB: "
            f"{'met' if q['tokens_per_second'] >= 7239 and q['peak_memory_gib'] <= 10 else '**not met**'}).", "",
            table(["serving (64 new tokens, 128-token prompt)", "p50 ms (batch 1)", "p95 ms (batch 1)", "batch",
                    "replies/s batched"],
                   [[k.removeprefix("serve_"), v["latency_p50_ms"], v["latency_p95_ms"], v["batch"], v["replies_per_s"]]
                    for k, v in big["results"].items() if k.startswith("serve") and not v.get("oom")])]
    return out


def seed_run_lines(r: dict, retrieval: dict, intro: str, lead: tuple[dict, ...] = (),
                   target: float | None = None, source: str = "`benchmarks/gpu_h100.json`, `seed_runs`") -> list[str]:
    """QLoRA trained and tested again with other seeds (gpu_h100.json's `<configuration>.seed_runs`, or
    cpu_seeds.json): a row per run (`lead`: runs recorded elsewhere, e.g. the configuration's pipeline run, first),
    the spread, the runs at or above `target` ROUGE-L and the runs ahead of `retrieval` (the baseline's metrics on
    the same split) on each metric; where the runs carry their per-message lead over retrieval, its 95% intervals."""
    keys = ["rouge_l", "semantic_similarity", "bleu", "distinct_replies", "placeholder_rate"]
    runs = [*lead, *r["runs"]]
    n, scores = len(runs), [x["rouge_l"] for x in runs]
    sems = [x["semantic_similarity"] for x in runs]
    ahead = {k: sum(x[k] > retrieval[k] for x in runs) for k in ("rouge_l", "semantic_similarity")}
    mean_gap = sum(sems) / n - retrieval["semantic_similarity"]
    m = r["machine"]
    where = m.get("gpu") or f"{m.get('cores')} cores, {m.get('cpu')}, training in {m.get('training_dtype')}"
    leads = [x.get("lead_over_retrieval") for x in runs]
    sure = {k: sum(x[k]["ci95_low"] > 0 for x in leads) for k in LEAD} if all(leads) else {}
    cols = ["ROUGE-L lead, 95% interval", "semantic lead, 95% interval"] if sure else []
    rows = []
    for x, lead_of in zip(runs, leads):
        rows.append([x["seed"], *(x[k] for k in keys), f"{x['final_val_loss']:.4f}"])
        if sure:
            rows[-1] += [span(lead_of[k]) for k in LEAD]
    return [f"{intro} (`seed` draws the training order, the validation-loss sample and the candidates' draws; data "
            f"and split unchanged; {where}, {r['date']}, commit {r['commit']}; {source}):", "",
            table(["seed", "ROUGE-L", "semantic sim.", "BLEU", "distinct %", "placeholders %", "final val loss", *cols],
                  rows), "",
            f"Test ROUGE-L from {min(scores):.2f} to {max(scores):.2f} over {n} seeds"
            + (f"; {sum(x >= target for x in scores)} of {n} at or above {target:g}" if target is not None else "")
            + f"; semantic similarity from {min(sems):.2f} to {max(sems):.2f}. Against retrieval's "
            f"{retrieval['rouge_l']:.2f} ROUGE-L and {retrieval['semantic_similarity']:.2f} semantic similarity: ahead "
            f"on ROUGE-L in {ahead['rouge_l']} of {n} runs, on semantic similarity in {ahead['semantic_similarity']} "
            f"of {n} (by {mean_gap:+.2f} on average)."
            + (f" The whole 95% interval of the per-message lead lies above 0 on ROUGE-L in {sure['rouge_l']} of {n} "
               f"runs, on semantic similarity in {sure['semantic_similarity']} of {n}." if sure else "")]


def full_sweep_tables(s: dict, full: dict, chosen: str = "") -> list[str]:
    """reports/benchmarks.md section from benchmarks/full_sweep.json: the full configuration's QLoRA settings on the validation
    split, the numbers of candidates compared on the same draws, and seeds and their soups; `full`: the
    configuration's GPU pipeline run (benchmarks/gpu_h100.json), whose latency is set beside its earlier runs'."""
    keys = [("rouge_l", "ROUGE-L"), ("semantic_similarity", "semantic sim."), ("distinct_replies", "distinct %")]
    rows, twice, subsets = [], [], {}
    for i, run in enumerate(s["runs"], 1):
        b = run["retrieval_val"]
        rows.append([i, "retrieval (baseline)", "–", "–", "–", *(b[k] for k, _ in keys)])
        for r in run["results"]:
            changes = (f"mean of the LoRA updates of {', '.join(r['soup_of'])}" if "soup_of" in r else
                       ", ".join(f"`{k}: {v}`" for k, v in r["changes"].items()) or "as configs/full.yaml")
            loss = r["val_loss"][-1][1] if r.get("val_loss") else "–"
            rows += [[i, r["variant"], changes, loss, n, *(v[k] for k, _ in keys)] for n, v in r["val"].items()]
            twice += [v["rouge_l"] for n, v in r["val"].items() if r["variant"] == "as_is" and n == "16"]
        subsets |= {f"run {i}: {k}": v for k, v in run.get("candidate_subsets", {}).items()
                    if not k.startswith("pooled/") and len(v) > 3}
    runs = "; ".join(f"run {i}: {r['machine'].get('gpu')}, {r['date']}, commit {r['commit']}"
                     for i, r in enumerate(s["runs"], 1))
    out = ["#### How the full configuration was chosen (`benchmarks/full_sweep.json`, validation split)", "",
           f"`{s['command']}` ({runs}): each variant trained anew and its served reply evaluated on the validation "
           f"split (n={s['runs'][-1]['retrieval_val']['n']}) with the given number of reranked candidates; the test "
           "split above is the pipeline run of the configuration chosen.", "",
           table(["run", "variant", "changes", "last val loss", "candidates", *(name for _, name in keys)], rows)]
    if len(twice) > 1:
        out += ["", f"The unchanged configuration trained twice scored {' and '.join(f'{x:.2f}' for x in twice)} ROUGE-L with 16 "
                    "candidates: differences between variants smaller than that are noise of training and draws."]
    if subsets:
        counts = sorted({c for v in subsets.values() for c in v}, key=int)
        out += ["", "The same draws chosen from again with only their first m sampled candidates (m = 0: the greedy "
                    "reply; `--rescore`), so the numbers of candidates are compared without new draws or new training "
                    "(ROUGE-L / semantic sim.):", "",
                table(["variant (kept candidates)", *(f"m = {c}" for c in counts)],
                      [[k.replace("/candidates_", " (") + ")",
                        *(f"{v[c]['rouge_l']:.2f} / {v[c]['semantic_similarity']:.2f}" if c in v else "–" for c in counts)]
                       for k, v in subsets.items()])]
        both = [v for v in subsets.values() if {"16", "32", "48"} <= set(v)]
        if both:
            gain = [v["32"]["rouge_l"] - v["16"]["rouge_l"] for v in both]
            to48 = [abs(v["48"]["rouge_l"] - v["32"]["rouge_l"]) for v in both]
            out += ["", f"On the same draws 32 candidates beat 16 by {min(gain):+.2f} to {max(gain):+.2f} ROUGE-L and came "
                        f"within {max(to48):.2f} of 48, so configs/full.yaml samples {full['evaluate_candidates']}."]
    out += soup_lines(s) + (selection_lines(s, chosen) if chosen else [])
    latency = [(r.get("commit") or r["date"], r["evaluate_candidates"], r["latency_p50_ms"]["qlora"])
               for r in full.get("earlier_runs", []) if "latency_p50_ms" in r]
    if latency:
        out += ["", f"The price is latency: the served QLoRA's p50 in the pipeline run is "
                f"{full['metrics']['eval/qlora']['latency_p50_ms']:,.0f} ms, against "
                + ", ".join(f"{ms:,.0f} ms in the run of {run} ({n} candidates)" for run, n, ms in latency)
                + " (other stages sharing the GPU in every run"
                + (f"; candidates sampled by {full['candidates_sampled_by']}, before the compiled engine sampled them: "
                   "*Reranked candidates on a GPU*" if full.get("candidates_sampled_by") else "") + ")."]
    return out


def selection_key(references: int, word_weight: float, reference_weight: float) -> str:
    """A setting's key in `full_sweep.py --selection`'s grid: `R<references>_w<word weight>_x<reference weight>`."""
    return f"R{references}_w{float(word_weight)}_x{float(reference_weight)}"


def selection_lines(s: dict, chosen: str, former: str = selection_key(2, 0.5, 1.0)) -> list[str]:
    """The reranker's paragraph: the last run with a `selection` grid (`full_sweep.py --selection`), its former
    setting, the one chosen (`chosen`: params.yaml's `evaluate.rerank_*` as a grid key, `R<n>_w<w>_x<x>`) and the
    best of the grid on each metric."""
    i, run = next(((i, r) for i, r in reversed(list(enumerate(s["runs"], 1))) if r.get("selection")), (0, None))
    if run is None:
        return []
    name, grid = next(iter(run["selection"].items()))
    keys = [("rouge_l", "ROUGE-L"), ("semantic_similarity", "semantic sim."), ("distinct_replies", "distinct %")]
    label = lambda k: "R={} references, w={} ROUGE-L, each x{} a candidate".format(
        *(part[1:] for part in k.split("_")))
    best: dict[str, list[str]] = {}  # the best setting of each metric, and the metrics it is best on
    for k, title in keys:
        best.setdefault(max(grid, key=lambda g: grid[g][k]), []).append(title)
    top = max(grid, key=lambda g: grid[g]["rouge_l"])
    rows = [[f"{what}: {label(g)}", *(grid[g][k] for k, _ in keys)]
            for what, g in [("before", former), ("chosen", chosen),
                            *((f"best {' and '.join(titles)}", g) for g, titles in best.items())]]
    return ["", f"Choosing among the same candidates (run {i}, {name.replace('/candidates_', ', ')} candidates; "
                f"`--selection`, {len(grid)} settings): the candidates compared with the replies of the R nearest past "
                "pairs of the brand, each weighing x candidates, agreement w x ROUGE-L + (1 - w) x MiniLM cosine:", "",
            table(["selection", *(title for _, title in keys)], rows), "",
            f"params.yaml takes the chosen row: against the former setting "
            + ", ".join(f"{title} {grid[chosen][k] - grid[former][k]:+.2f}" for k, title in keys)
            + ". The best ROUGE-L of the grid gives up semantic similarity and distinct replies for it "
            + f"({grid[top]['semantic_similarity']} and {grid[top]['distinct_replies']})."]


def soup_lines(s: dict) -> list[str]:
    """The seeds paragraph of the full sweep's section: the configuration trained with several seeds, the mean of
    their LoRA updates (a soup) and their candidates pooled, from the last run of benchmarks/full_sweep.json with
    soups (none: no paragraph)."""
    run = next((r for r in reversed(s["runs"]) if any("soup_of" in x for x in r["results"])), None)
    if run is None:
        return []
    results = {r["variant"]: r for r in run["results"]}
    soup = max((r for r in run["results"] if "soup_of" in r), key=lambda r: len(r["soup_of"]))
    (n, val), = soup["val"].items()
    members = [results[m] for m in soup["soup_of"]]
    singles = [m["val"][n]["rouge_l"] for m in members]
    seeds = ", ".join(f"`seed: {m['changes']['seed']}`" if "seed" in m["changes"] else "params' seed" for m in members)
    pooled = run.get("candidate_subsets", {}).get(f"pooled/{soup['variant']}/{n}")
    best = max(singles)
    line = (f"Seeds ({seeds}; {n} candidates): the unchanged configuration scored "
            f"{', '.join(f'{x:.2f}' for x in singles)} ROUGE-L, a spread of {best - min(singles):.2f} (their last val "
            "losses are on different 128-pair samples, which the seed draws). The mean of their "
            f"LoRA updates, one adapter of their summed rank (`{soup['variant']}`, a model soup), scored "
            f"{val['rouge_l']:.2f}")
    if pooled:
        line += (f"; their candidates pooled ({pooled['per_variant']} sampled and the greedy reply of each, "
                 f"{pooled['pool']} in all) {pooled['rouge_l']:.2f}")
    verdict = max(val["rouge_l"], pooled["rouge_l"] if pooled else 0) > best
    line += (". Averaging or pooling beat the best single seed, so it is worth its cost." if verdict else
             ". Neither beat the best single seed, so configs/full.yaml serves one adapter: what separates the "
             "seeds is the luck of one training run, not a setting.")
    return ["", line]


def ddp_tables(d: dict) -> list[str]:
    """reports/benchmarks.md section from benchmarks/gpu_2x_h200.json: DDP scaling on two GPUs, and what it does to quality."""
    big, full, n = d["mistral_7b"]["results"], d["full"]["methods"], d["machine"]["gpu_count"]
    rows = [[f"7B architecture, {v['method']}", v["batch_per_gpu"], v["one_gpu"]["tokens_per_second"],
             v["n_gpus"]["tokens_per_second"], v["speedup"], v["scaling_efficiency"],
             f"{v['one_gpu']['peak_memory_gib']} / {v['n_gpus']['peak_memory_gib']}"] for v in big.values()]
    rows += [[f"full configuration, {m}", v["global_batch"] // n, v["one_gpu"]["tokens_per_second"],
              v["n_gpus"]["tokens_per_second"], v["speedup"], v["scaling_efficiency"],
              f"{v['one_gpu']['peak_memory_mb'] / 1024:.2f} / {v['n_gpus']['peak_memory_mb'] / 1024:.2f}"]
             for m, v in full.items()]
    q = d["qlora_7b_scaling"]
    quality = lambda v, k: v[k]["rouge_l"] if v.get(k) else "not evaluated"
    return [f"### Several GPUs: DDP on {n} x {d['machine']['gpu']}, {d['interconnect']} "
            "(`benchmarks/gpu_2x_h200.json`)", "",
            "Each row against one GPU of the same machine; the batch is per GPU (the full configuration keeps its "
            "global batch, so each GPU takes half).", "",
            table(["workload", "batch per GPU", "tokens/s, 1 GPU", f"tokens/s, {n} GPUs", "speed-up", "efficiency",
                    f"peak GiB per GPU (1 / {n})"], rows), "",
            f"7B QLoRA speed-up on {n} GPUs: **{q['speedup']}x** (target >= {q['target_speedup']}x: "
            f"{'met' if q['speedup'] >= q['target_speedup'] else '**not met**'}).", "",
            table(["full configuration, same seed", "val loss, 1 GPU", f"val loss, {n} GPUs", "ROUGE-L, 1 GPU",
                    f"ROUGE-L, {n} GPUs"],
                   [[m, v["one_gpu"]["final_val_loss"], v["n_gpus"]["final_val_loss"], quality(v, "quality_one_gpu"),
                     quality(v, "quality_n_gpus")] for m, v in full.items()])]


def pipeline_7b_tables(p: dict, fmt: dict | None = None) -> list[str]:
    """reports/benchmarks.md section from benchmarks/pipeline_7b.json: every stage at the seed's model size on one GPU; `fmt`:
    benchmarks/standin_format.json, the prompts' token ids against mistral_common."""
    t, s = p["training"], p["serving"]
    rows = [[stage, sec] for stage, sec in p["stage_seconds"].items()] + [["whole pipeline", p["total_seconds"]]]
    peak = p["qlora_peak_gib"]
    return [f"### The seed's model size, end to end: Mistral-7B-Instruct-v0.3 stand-in on one {p['machine'].get('gpu')} "
            "(`benchmarks/pipeline_7b.json`)", "",
            f"`{p['command']}` on {p['date']} (commit {p['commit']}): {p['what']}. The stand-in "
            f"({p['standin']['params'] / 1e9:.2f}B parameters) took {p['standin_seconds']} s to write. Its replies are "
            "nonsense, so only time and memory are recorded.", "",
            table(["stage", "seconds"], rows), "",
            table(["training", "pairs", "steps", "seconds", "tokens/s", "peak GPU MB"],
                  [[m, *(t[m][k] for k in ("train_pairs", "steps", "train_seconds", "tokens_per_second", "peak_memory_mb"))]
                   for m in t if t[m]]), "",
            table(["serving (batch 1, up to 48 new tokens)", "p50 ms", "p95 ms", "replies/s batched", "avg words",
                   "hit the token limit %"],
                  [[m, *(s[m][k] for k in ("latency_p50_ms", "latency_p95_ms", "replies_per_s", "avg_words",
                                           "truncated_share"))] for m in s if s[m]]), "",
            "With random weights the reply length decides these latencies: the base writes until the 48-token "
            "limit, while both adapters learned in one epoch to end early. Per-token serving speed at 7B is the "
            "table of `benchmarks/gpu_7b.py` above.", "",
            *([f"Format (`{fmt['command']}`, commit {fmt['commit']}): {fmt['ids_equal']} of {fmt['examples']} test-split "
                f"training examples ({fmt['with_previous_turn']} with a previous turn, all with tags and "
                f"{fmt['retrieval']['k']} retrieved examples) encode to the same token ids as mistral_common "
                f"{fmt['mistral_common']}'s `encode_chat_completion`; the labels cover exactly the reply and its end token "
                f"in {fmt['labels_are_the_reply']}.", ""] if fmt else []),
            f"Targets: whole pipeline <= 900 s: {'met' if p['total_seconds'] <= 900 and p['every_stage_ran'] else '**not met**'} "
            f"({p['total_seconds']} s); QLoRA peak <= 16 GiB: "
            f"{'met' if peak is not None and peak <= 16 else '**not met**'} ({peak} GiB)."]


def serving_7b_tables(s: dict) -> list[str]:
    """reports/benchmarks.md section from benchmarks/serving_7b.json: each method on each serving path at 7B on one GPU."""
    t = s["targets"]
    rows = [[name, p["engine"], p["p50_ms"], p["p95_ms"], p["ms_per_token"], p["replies_per_s"], p["peak_gib"],
             p["warm_up_seconds"]] for name, p in s["paths"].items()]
    best = {m: min((p for n, p in s["paths"].items() if n.startswith(m)), key=lambda p: p["p50_ms"])
            for m in ("qlora", "prompt_tuning")}
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    return [f"### Serving at 7B: the paths of `generation.Generator` on one {s['machine'].get('gpu')} "
            "(`benchmarks/serving_7b.json`)", "",
            f"`{s['command']}` on {s['date']} (commit {s['commit']}): {s['what']}. Warm-up is paid once per process "
            "and shape (for the compiled engine: compilation and CUDA-graph capture at batch 1 and at batch "
            f"{s['batch']}).", "",
            table(["path", "engine", "p50 ms (batch 1)", "p95 ms", "ms/token", f"replies/s (batch {s['batch']})",
                   "peak GiB", "warm-up s"], rows), "",
            "Replies identical between two paths (of 32, 64 tokens each): "
            + "; ".join(f"{k}: {v} (on average the first {s['mean_tokens_before_first_difference'][k]} tokens agree)"
                        for k, v in s["same_replies_of_32"].items())
            + ". With random weights the next-token scores are nearly tied, so one bf16 rounding difference between "
              "kernels changes the rest of a reply; the CPU tests check that the engines decode identical tokens "
              "(tests/test_engine.py), and the fold's function against the 4-bit one (tests/test_training.py).", "",
            *([] if "peak_gib_counts" in s else [
                f"The prompt-tuning peaks of this record ({s['paths']['prompt_tuning_compiled']['peak_gib']:.1f} GiB "
                f"compiled, against {s['paths']['qlora_folded_compiled']['peak_gib']:.1f} for the same bf16 base after "
                "the QLoRA fold) were measured in the same process after the QLoRA paths, whose compiled graphs can "
                "keep that model alive; `benchmarks/serving_7b.py` now counts only what a method adds, and this "
                "record predates that.", ""]),
            "Targets: p50 <= " + f"{t['p50_ms_batch_1'] / 1000:.2f} s at batch 1 for both methods: "
            + met(all(p["p50_ms"] <= t["p50_ms_batch_1"] for p in best.values()))
            + " (fastest: " + ", ".join(f"{m} {p['p50_ms'] / 1000:.2f} s" for m, p in best.items())
            + f"); >= {t['replies_per_s_batch_32']} replies/s at batch {s['batch']} for both: "
            + met(all(p["replies_per_s"] >= t["replies_per_s_batch_32"] for p in best.values()))
            + " (" + ", ".join(f"{m} {p['replies_per_s']}" for m, p in best.items()) + ")."]


def serving_sentences(s: dict, tweets_per_day: int) -> list[str]:
    """Verdict lines on serving at 7B from benchmarks/serving_7b.json: the methods' fastest paths, the 4-bit
    memory trade, and GPU time for a day of tweets."""
    p = s["paths"]
    q, pt, q4 = p["qlora_folded_compiled"], p["prompt_tuning_compiled"], p["qlora_4bit_eager"]
    gpu = s["machine"].get("gpu")
    return [f"- At 7B on one {gpu} (`benchmarks/serving_7b.json`, {s['new_tokens']} tokens a reply), both methods "
            f"serve at about the same speed on the compiled engine: QLoRA folded {q['p50_ms'] / 1000:.2f} s and prompt "
            f"tuning {pt['p50_ms'] / 1000:.2f} s per reply at batch 1, {q['replies_per_s']:.0f} and "
            f"{pt['replies_per_s']:.0f} replies/s at batch {s['batch']}. QLoRA on bitsandbytes' 4-bit kernels "
            f"takes {q4['p50_ms'] / q['p50_ms']:.1f}x as long per reply, for {q4['peak_gib']:.1f} GiB instead of "
            f"{q['peak_gib']:.1f}.",
            f"- {tweets_per_day:,} tweets a day at batch {s['batch']} take about "
            f"{tweets_per_day / q['replies_per_s'] / 60:.0f} GPU-minutes with QLoRA and "
            f"{tweets_per_day / pt['replies_per_s'] / 60:.0f} with prompt tuning."]


def cpu_serving_tables(r: dict) -> list[str]:
    """reports/benchmarks.md section from benchmarks/cpu_serving.json: each CPU serving path against llama.cpp."""
    m = r["machine"]
    rows = [[method, path, p["p50_ms"], p["p95_ms"], p["x_llama_cpp"], p.get("same_replies", "–")]
            for method, res in r["results"].items() for path, p in res["paths"].items()]
    default = {method: next(p for name, p in res["paths"].items() if name.startswith("default"))
               for method, res in r["results"].items()}
    lengths = "; ".join(f"{method}: {res['mean_prompt_tokens']} prompt tokens, {res['mean_new_tokens']} new tokens "
                        "on average" for method, res in r["results"].items())
    return [f"### Serving on a CPU against llama.cpp ({m['cores']} cores, {m['cpu']}, AVX512-BF16: "
            f"{m.get('avx512_bf16')}; `benchmarks/cpu_serving.json`)", "",
            f"`{r['command']}` on {r['date']} (commit {r['commit']}, llama-cpp-python "
            f"{r['versions']['llama-cpp-python']}): {r['what']} ({r['n_prompts']} prompts; {lengths}).", "",
            table(["method", "path", "p50 ms", "p95 ms", "x llama.cpp's p50",
                   f"replies equal to the greedy path's (of {r['n_prompts']})"], rows), "",
            "On this CPU a decoding step reads every weight once: in fp32 here, in 5 bits a weight (4-bit values, a scale"
            " and a minimum per 32) for llama.cpp's Q4_1 "
            "GGUF, and matrix-vector products take most of a step. The static cache "
            "is slower here than transformers' dynamic one, so `evaluate.engine: auto` stays eager on a CPU. "
            "bf16 halves the bytes but rounds the trained fp32 weights, and some replies change "
            "(`SUPPORTAGENT_DTYPE=bfloat16` serves that way)."
            + "".join(f" Not timed: {path}, because {why}." for path, why in r.get("not_timed", {}).items())
            + (" The reranked default decodes the greedy reply and the candidates in one batch until the longest "
               "candidate ends, so a reply waits for more decoding steps than the greedy path, which stops at its "
               "own end; `evaluate.candidates: 0` serves the greedy path."
               if any(k.startswith("default:") for res in r["results"].values() for k in res["paths"]) else ""), "",
            f"Target: each method's default p50 <= 2x llama.cpp's: "
            + ("met" if all(p["x_llama_cpp"] <= 2 for p in default.values()) else "**not met**")
            + " (" + ", ".join(f"{method} {p['x_llama_cpp']}x" for method, p in default.items()) + ").",
            *earlier_lines(r.get("earlier_runs", []), lambda e: (
                f"{e['what']} (commit {e['commit']}, {e['machine']['cpu']}, AVX512-BF16: "
                f"{e['machine'].get('avx512_bf16')}), p50 ms: "
                + "; ".join(f"{method}: " + ", ".join(f"{path} {p['p50_ms']:,.0f}" for path, p in res["paths"].items())
                            for method, res in e["results"].items())))]


def cpu_dtype_sentence(r: dict) -> str:
    """A reports/benchmarks.md line from benchmarks/cpu_dtype.json: each CPU's fp32 and bf16 matrix products and training step, the
    reason one `dvc repro` takes several times as long as another."""
    def one(x: dict) -> str:
        m, f, b = x["machine"], x["results"]["float32"], x["results"]["bfloat16"]
        flags = "AMX" if m.get("amx_bf16") else "AVX512-BF16" if m.get("avx512_bf16") else "AVX2 alone"
        trains = f", trains in {x['chosen_for_training']}" if x.get("chosen_for_training") else ""
        return (f"{m['cpu']} ({m['cores']} cores) with {flags}: {f['matmul_gflops']:,.1f} / {b['matmul_gflops']:,.1f} "
                f"GFLOP/s, a training step {f['train_step_s']:.2f} / {b['train_step_s']:.2f} s{trains}")
    return ("What sets the CPUs apart (`benchmarks/cpu_dtype.json`: fp32 / bf16 matrix products at the model's layer "
            "shapes, and a training step of the base): "
            + "; ".join(one(x) for x in [r, *r.get("other_machines", [])]) + ".")


def engine_check_sentence(r: dict) -> str:
    """A reports/benchmarks.md line from benchmarks/gpu_engine_check.json: the compiled engine's replies on a GPU in fp32."""
    counts = lambda key: "; ".join(f"{case}: " + ", ".join(f"{v} at {k}" for k, v in res.items())
                                   for case, res in r[key].items())
    sampled = (f" Its sampling loop draws the eager loop's candidates from the same seed (4 a prompt, the greedy reply "
               f"first, one prompt at a time), prompts with all candidates equal, of {r['prompts']}: "
               f"{counts('same_candidates_of_32')}." if "same_candidates_of_32" in r else "")
    return (f"In fp32 on the same kind of GPU (`benchmarks/gpu_engine_check.json`, {r['date']}, commit {r['commit']}: "
            f"a tiny Mistral stand-in, {r['prompts']} prompts, {r['new_tokens']} new tokens), the compiled engine's "
            f"CUDA graphs give generate()'s replies, of {r['prompts']}: {counts('same_replies_of_32')}.{sampled}")


def gpu_sampling_tables(r: dict) -> list[str]:
    """reports/benchmarks.md section from benchmarks/gpu_sampling.json: one message at a time with reranked candidates, sampled by
    the eager engine's loop and by the compiled engine's, on the same adapter and GPU."""
    res = r["results"]
    rows = [[engine, x["warm_up_seconds"], x["p50_ms"], x["p95_ms"], x["rouge_l"], x["semantic_similarity"]]
            for engine, x in res.items()]
    return [f"### Reranked candidates on a GPU: the eager and the compiled sampling loop (`benchmarks/gpu_sampling.json`)",
            "", f"`{r['command']}` on {r['date']} (commit {r['commit']}, {r['machine'].get('gpu')}): {r['what']}; "
            f"{r['method']}, {r['candidates']} candidates, the validation split's first {r['n']} messages. "
            f"Set-up: {r['setup']}.", "",
            table(["engine", "warm-up s", "p50 ms", "p95 ms", "ROUGE-L", "semantic sim."], rows), "",
            f"At the median the compiled loop answers one message {res['eager']['p50_ms'] / res['compiled']['p50_ms']:.1f}x "
            "as fast; it pays its compilation once per process (warm-up), which "
            "`serve` does before it takes requests." + _graphs(res["compiled"]) + " The scores differ by the draws "
            "only (the two loops draw from the same distribution: `benchmarks/gpu_engine_check.json`).",
            *earlier_lines(r.get("earlier_runs", []), lambda e: (
                f"{e['what']} (commit {e['commit']}, {e['machine'].get('gpu')}): p50 "
                + ", ".join(_p50_of(engine, x) for engine, x in e["results"].items())))]


def _graphs(compiled: dict) -> str:
    """What the compiled engine's warm-up spent compiling, graph by graph, where the record has it."""
    seconds = compiled.get("graph_compile_seconds")
    if not seconds:
        return ""
    each = " s, ".join(f"{s:,.1f}" for s in seconds)
    return (f" Of its warm-up, torch.compile took {sum(seconds):,.1f} s on {len(seconds)} graph"
            f"{'s' if len(seconds) > 1 else ''} ({each} s).")


def _p50_of(engine: str, x: dict) -> str:
    """An engine's median reply in an earlier sampling run, and the compiled engine's warm-up where recorded."""
    warm = f" (warm-up {x['warm_up_seconds']:,.1f} s)" if engine == "compiled" and "warm_up_seconds" in x else ""
    return f"{x['p50_ms']:,.0f} ms {engine}{warm}"
