"""QLoRA and prompt-tuning training with the Hugging Face Trainer: data, model set-up, resume, metrics."""
from __future__ import annotations

import hashlib
import json
import resource
import shutil
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset

from . import bases, models
from .. import runtime
from ..config import ModelParams, RetrievalParams, RulesParams, TrainParams
from ..data.prompts import build_messages, encode
from ..data.retrieval import NO_EXAMPLES, ExampleIndex, Examples
from ..data.rules import apply_rules
from .adapters import build_model, count_params
from .methods import get
from .trainlog import LossBar, StepLive


class EncodedPairs(Dataset):
    """Tokenised training examples (prompt from the shared contract + reference reply + end token);
    `examples`: the retrieved past pairs of each prompt (none by default)."""

    def __init__(self, pairs: pd.DataFrame, tokenizer, model_params: ModelParams, rules_params: RulesParams,
                 examples: list[Examples] | None = None):
        self.items = []
        for row, ex in zip(pairs.itertuples(index=False), examples or [NO_EXAMPLES] * len(pairs)):
            tags = apply_rules(row.customer, rules_params, row.context)
            msgs = build_messages(model_params.system_prompt, row.brand, row.customer, tags, row.context, row.reply, ex)
            enc = encode(tokenizer, msgs, model_params.max_prompt_tokens, model_params.max_reply_tokens)
            self.items.append({"input_ids": enc.input_ids, "labels": enc.labels})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class PadCollator:
    """Dynamic right padding to the longest example of the batch; padded labels are -100."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict:
        width = max(len(x["input_ids"]) for x in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, x in enumerate(batch):
            n = len(x["input_ids"])
            ids[i, :n] = torch.tensor(x["input_ids"])
            labels[i, :n] = torch.tensor(x["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def reply_loss(model, inputs: dict, n_virtual: int = 0) -> torch.Tensor:
    """Causal-LM loss computing logits only at the positions that predict reply tokens.

    The vocabulary projection (49k x hidden) is about a fifth of the model's work; prompts are ~3/4
    of each example, so most of it would be spent on logits that the loss ignores."""
    labels = inputs["labels"]
    target = labels[:, 1:]
    cols = (target != -100).any(dim=0).nonzero().squeeze(1)  # positions t whose next token is learned
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                logits_to_keep=cols + n_virtual)
    logits = out.logits.float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target[:, cols].reshape(-1),
                                             ignore_index=-100)


def _trainer_class():
    from transformers import Trainer

    class ReplyLossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # under DDP `model` is the DistributedDataParallel wrapper, which hides the peft attributes:
            # read the soft prompt's length from the model inside it
            peft_config = getattr(self.accelerator.unwrap_model(model), "active_peft_config", None)
            n_virtual = (
                peft_config.num_virtual_tokens if peft_config is not None and peft_config.is_prompt_learning else 0
            )
            loss = reply_loss(model, inputs, n_virtual)
            return (loss, {}) if return_outputs else loss

    return ReplyLossTrainer


def intervals(train_pairs: int, params: TrainParams) -> dict[str, int]:
    """Optimizer steps between validations, loss logs and checkpoints, from the counts per epoch in params
    (one process's share of the data under DDP: `WORLD_SIZE` processes split each epoch)."""
    import math
    import os

    world = int(os.environ.get("WORLD_SIZE", 1))
    per_epoch = max(1, math.ceil(train_pairs / (params.batch_size * params.grad_accum * world)))
    return {name: max(1, round(per_epoch / count)) for name, count in
            (("eval", params.evals_per_epoch), ("log", params.logs_per_epoch), ("save", params.saves_per_epoch))}


def run_fingerprint(method: str, params: TrainParams, frames: list[pd.DataFrame], base_dir: Path,
                    retrieval: RetrievalParams) -> str:
    """Checkpoints are resumed only by a run with the same params, examples, data and base."""
    h = hashlib.sha256(method.encode() + params.model_dump_json().encode() + retrieval.model_dump_json().encode())
    h.update((Path(base_dir) / bases.MANIFEST).read_bytes())
    for df in frames:
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def final_val_loss(trainer) -> float:
    """Validation loss after the last step: the Trainer's own evaluation at that step when it made one
    (it evaluates at the end of training), else a new pass. Decided from `log_history`, which every
    process of a DDP run holds, so all of them take the same branch."""
    last = [x for x in trainer.state.log_history if "eval_loss" in x]
    if last and last[-1].get("step") == trainer.state.global_step:
        return last[-1]["eval_loss"]
    return trainer.evaluate()["eval_loss"]


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def retrieved_examples(index: ExampleIndex, retrieval: RetrievalParams, train_df: pd.DataFrame,
                       val_df: pd.DataFrame) -> tuple[list[Examples], list[Examples]]:
    """Examples for the train pairs (never from their own conversation) and the validation pairs (from the
    train split, as at test time)."""
    if not retrieval.k:
        return [NO_EXAMPLES] * len(train_df), [NO_EXAMPLES] * len(val_df)
    val_ex = index.examples(models.load_embedder(), val_df["customer"].tolist(), val_df["brand"].tolist(), retrieval,
                            val_df["conversation_id"].tolist()) if len(val_df) else []
    return index.examples_for_train(train_df, retrieval), val_ex


# facts of one run, not of the adapter it trained: they go to the stage's metrics only, so that the adapter's folder
# (a DVC output) hashes the same whenever the weights are the same
RUN_FACTS = ("train_seconds", "tokens_per_second", "peak_memory_mb", "resumed_from")


def save_adapter(model, out_dir: Path) -> None:
    """Save the adapter so that the same weights give the same bytes: peft keeps LoRA's target modules as a set and
    writes them in an order that changes with each process's string hashing."""
    for config in model.peft_config.values():
        if isinstance(getattr(config, "target_modules", None), set):
            config.target_modules = sorted(config.target_modules)
    model.save_pretrained(out_dir, safe_serialization=True)


def train(method: str, train_df: pd.DataFrame, val_df: pd.DataFrame, base_dir: str | Path, index_dir: str | Path,
          out_dir: str | Path, params: TrainParams, model_params: ModelParams, rules_params: RulesParams,
          retrieval: RetrievalParams, seed: int, log_dir: str | Path, checkpoint_root: str | Path,
          callbacks: tuple = ()) -> dict | None:
    """Train one method, save its adapter to `out_dir` and return the training metrics (None on the
    non-main processes of a multi-GPU run under `accelerate launch`). Loss curves go to `log_dir` through
    DVCLive (`trainlog.py`); checkpoints to `checkpoint_root/<method>`, from which an interrupted run resumes."""
    from transformers import ProgressCallback, TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    set_seed(seed)
    if train_df.empty:
        raise ValueError("the train split is empty: run `dvc repro split` and check metrics/split.json")
    index = ExampleIndex(index_dir, train_df, models.embedder_id()) if retrieval.k else None  # the whole split
    if params.max_train_pairs:
        train_df = train_df.sample(n=min(params.max_train_pairs, len(train_df)), random_state=seed)
    if params.max_val_pairs:
        val_df = val_df.sample(n=min(params.max_val_pairs, len(val_df)), random_state=seed)
    train_ex, val_ex = retrieved_examples(index, retrieval, train_df, val_df)
    tokenizer = models.load_tokenizer(base_dir)
    train_ds = EncodedPairs(train_df, tokenizer, model_params, rules_params, train_ex)
    val_ds = EncodedPairs(val_df, tokenizer, model_params, rules_params, val_ex) if len(val_df) else None
    model = build_model(method, base_dir, params)
    trainable, total = count_params(model)

    out_dir = Path(out_dir)
    ckpt_dir = Path(checkpoint_root) / method
    cuda = torch.cuda.is_available()
    every = intervals(len(train_ds), params)
    args = TrainingArguments(
        output_dir=str(ckpt_dir), seed=seed, data_seed=seed,
        num_train_epochs=params.epochs, max_steps=params.max_steps,
        per_device_train_batch_size=params.batch_size, per_device_eval_batch_size=params.batch_size * 2,
        gradient_accumulation_steps=params.grad_accum, learning_rate=params.lr,
        neftune_noise_alpha=params.neftune_noise_alpha or None,
        warmup_steps=params.warmup_ratio, weight_decay=params.weight_decay, lr_scheduler_type="cosine",
        optim=get(method).cuda_optimizer if cuda else "adamw_torch",
        bf16=runtime.compute_dtype(training=True) == torch.bfloat16, use_cpu=not cuda,
        train_sampling_strategy="group_by_length",
        eval_strategy="steps" if val_ds is not None else "no", eval_steps=every["eval"],
        logging_steps=every["log"], logging_first_step=True,
        save_strategy="steps", save_steps=every["save"], save_total_limit=2,
        report_to="none",  # DVCLive through StepLive below, set up for a DVC stage
        remove_unused_columns=False, dataloader_num_workers=0, prediction_loss_only=True,
        ddp_find_unused_parameters=False,
        include_num_input_tokens_seen="non_padding",
    )
    fingerprint_file = ckpt_dir / "fingerprint"
    fingerprint = run_fingerprint(method, params, [train_df, val_df], base_dir, retrieval)
    resume = None
    if ckpt_dir.exists():
        if fingerprint_file.exists() and fingerprint_file.read_text() == fingerprint:
            resume = get_last_checkpoint(str(ckpt_dir))
        else:
            shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    fingerprint_file.write_text(fingerprint)
    if resume:
        print(f"[{method}] resuming from {resume}")
    log = StepLive(log_dir, resume=bool(resume))
    trainer = _trainer_class()(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                               data_collator=PadCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                               callbacks=[log, *callbacks])
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LossBar())

    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    final_val = final_val_loss(trainer) if val_ds is not None else None
    if not trainer.is_world_process_zero():  # DDP: the main process alone writes the adapter and metrics
        return None

    out_dir.mkdir(parents=True, exist_ok=True)
    save_adapter(model, out_dir)
    manifest, _ = bases.read_manifest(base_dir)
    tokens_seen = int(trainer.state.num_input_tokens_seen)
    metrics = {
        "method": method,
        "train_pairs": len(train_ds),
        "steps": int(trainer.state.global_step),
        "epochs": round(float(trainer.state.epoch or 0), 3),
        "train_seconds": round(seconds, 1),
        "tokens_per_second": round(log.steady_tokens_per_second() or tokens_seen / max(seconds, 1e-9), 1),
        "peak_memory_mb": peak_memory_mb(),
        "trainable_params": trainable,
        "trainable_percent": round(100 * trainable / total, 4),
        "base_params": total,
        "adapter_mb": models.folder_mb(out_dir),
        "final_train_loss": round(log.last_loss, 4) if log.last_loss is not None else None,
        "final_val_loss": round(final_val, 4) if final_val is not None else None,
        "resumed_from": Path(resume).name if resume else None,
        "device": "cuda" if cuda else "cpu",
        "dtype": str(runtime.compute_dtype(training=True)).removeprefix("torch."),
    }
    adapter_facts = {k: v for k, v in metrics.items() if k not in RUN_FACTS}
    (out_dir / "training_info.json").write_text(json.dumps({"base_manifest": manifest, "metrics": adapter_facts},
                                                           indent=2))
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # finished: nothing left to resume
    return metrics
