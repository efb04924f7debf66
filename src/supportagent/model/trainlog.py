"""What a training run reports: DVCLive files per optimizer step, and a console progress bar.

`dvclive/<method>/` (the train stage's output, written by `StepLive`):
    metrics.json                      the last value of each metric and the step
    plots/metrics/train/loss.tsv      mean reply-token loss since the previous log
    plots/metrics/eval/loss.tsv       validation loss
    plots/metrics/train/learning_rate.tsv, grad_norm.tsv
The `compare` stage puts both methods' curves on one epoch axis for `dvc plots show`.
"""
from __future__ import annotations

import time
from pathlib import Path

from transformers.integrations import DVCLiveCallback
from transformers.trainer_callback import ProgressCallback

# Trainer log key -> DVCLive metric (plots/metrics/<metric>.tsv)
METRICS = {"loss": "train/loss", "learning_rate": "train/learning_rate", "grad_norm": "train/grad_norm",
           "eval_loss": "eval/loss"}


def log_file(log_dir: str | Path, metric: str) -> Path:
    """The history file DVCLive writes for `metric` (e.g. "train/loss") under `log_dir`."""
    return Path(log_dir) / "plots" / "metrics" / f"{metric}.tsv"


class StepLive(DVCLiveCallback):
    """transformers' DVCLive callback (what `report_to="dvclive"` adds), with three changes for a DVC stage:
    every value is logged at its optimizer step (the stock callback counts `on_log` calls, so a step's train
    and validation logs land on different steps); no TrainingArguments dump (the run's params are params.yaml);
    and the log folder is the stage's output, neither a DVC experiment nor a dvc.yaml of its own.
    Only the main process of a multi-GPU run writes. It also keeps what the training metrics need: the last
    train loss and the throughput between logs."""

    def __init__(self, log_dir: str | Path, resume: bool = False):
        super().__init__()
        self.log_dir, self.resume = Path(log_dir), resume
        self.marks: list[tuple[float, int]] = []  # (time, tokens seen) at each train-loss log
        self.last_loss: float | None = None

    def setup(self, args, state, model):
        self._initialized = True
        if state.is_world_process_zero:
            from dvclive import Live

            self.live = Live(dir=str(self.log_dir), resume=self.resume, dvcyaml=None, save_dvc_exp=False)

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.live is None:
            self.setup(args, state, model)
        logs = logs or {}
        self.live.step = state.global_step
        for key, metric in METRICS.items():
            if key in logs:
                self.live.log_metric(metric, round(float(logs[key]), 6))
        if "loss" in logs:
            self.last_loss = float(logs["loss"])
            self.marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))
        self.live.make_summary()

    def steady_tokens_per_second(self) -> float | None:
        """Throughput after the first logging interval (skips warm-up), between logs."""
        if len(self.marks) < 3:
            return None
        (t0, n0), (t1, n1) = self.marks[1], self.marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


class LossBar(ProgressCallback):
    """The Trainer's progress bar with the latest train loss in its postfix (instead of a printed dict per
    log) and one line per validation."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None:
            return
        logs = logs or {}
        if "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)
        if "eval_loss" in logs:
            self.training_bar.write(f"step {state.global_step}/{state.max_steps} (epoch {state.epoch:.2f}): "
                                    f"validation loss {logs['eval_loss']:.4f}")
