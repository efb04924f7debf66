"""Same replies on a GPU: the compiled engine (its loop compiled and replayed as CUDA graphs) against
transformers' generate() (the eager engine), on 32 prompts of 5-150 random tokens, 12 new tokens, in fp32 (in
bf16 the kernels' rounding differs between the two paths, and random weights give near-tied scores), with a
repetition penalty of 1.3 on the base and with a 4-vector soft prompt, at batch sizes 1, 5 (padded to 8, the
last batch of 2) and 32. And the same sampled candidates (4 a prompt, the greedy reply first, temperature 1.0,
top-p 0.95) from the eager engine's sampling loop and the compiled one's on the same seed, one prompt at a time
(the compiled engine's own loop samples single prompts; while no candidate ends early, both draw alike:
tests/test_reranking.py). Model: a tiny Mistral stand-in
(`make-standin --tiny`: Mistral's tokenizer, 2 narrow layers, random weights).

    python -m supportagent make-standin --out build/tiny --tiny
    python benchmarks/gpu_engine_check.py --standin build/tiny
"""
import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

os.environ["SUPPORTAGENT_DTYPE"] = "float32"
from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from supportagent.model import bases, models
    from supportagent.model.methods.prompt_tuning import add_soft_prompt
    from supportagent.config import PromptTuningParams
    from supportagent.inference.generation import Generator

    ap = argparse.ArgumentParser()
    ap.add_argument("--standin", required=True)
    args = ap.parse_args()
    base_dir = Path(tempfile.mkdtemp()) / "base"
    bases.prepare_base(str(Path(args.standin).resolve()), None, base_dir)
    tok = models.load_tokenizer(base_dir)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1000, 32000, (int(n),), generator=g).tolist()
               for n in torch.randint(5, 150, (32,), generator=g)]
    out, candidates = {}, {}
    for system in ("base", "soft_prompt"):
        model = models.load_base(base_dir)
        if system == "soft_prompt":
            torch.manual_seed(0)
            model = add_soft_prompt(model, PromptTuningParams(lr=0.01, prompt_init="random", num_virtual_tokens=4))
        for penalty in ((1.3,) if system == "base" else (1.0,)):
            eager = Generator(model, tok, max_new_tokens=12, repetition_penalty=penalty, engine="eager")
            comp = Generator(model, tok, max_new_tokens=12, repetition_penalty=penalty, engine="compiled")
            ref = [r.token_ids for r in eager.generate(prompts)]
            res = {}
            for bs in (1, 5, 32):
                got, _ = comp.generate_all(prompts, bs, progress=False)
                res[f"batch {bs}"] = sum(a.token_ids == b for a, b in zip(got, ref))
            out[f"{system} penalty {penalty}"] = res
            same = {}
            for bs in (1,):  # 4 candidates a prompt, the greedy one first, each prompt on the same seed
                pools = lambda gen: [c.token_ids for lo in range(0, len(prompts), bs) for pool in gen.sample(
                    prompts[lo: lo + bs], 4, 1.0, 0.95, torch.Generator(comp.device).manual_seed(lo), greedy_first=True)
                    for c in pool]
                a, b = pools(eager), pools(comp)
                same[f"batch {bs}"] = sum(a[i: i + 4] == b[i: i + 4] for i in range(0, len(a), 4))
            candidates[f"{system} penalty {penalty}"] = same
            print(system, penalty, res, same, flush=True)
    record = {"notes": __doc__.split("\n\n")[0].replace("\n", " "), "prompts": len(prompts), "new_tokens": 12,
              "same_replies_of_32": out, "same_candidates_of_32": candidates, "machine": records.gpu_facts(),
              "versions": records.versions()}
    records.save("gpu_engine_check", record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
