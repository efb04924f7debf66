"""Training logs: DVCLive files at optimizer steps, written by the main process only; a quiet console."""
import io
import json
from types import SimpleNamespace

from tqdm import tqdm

from supportagent.model.trainlog import LossBar, StepLive, log_file


def _state(step, main=True):
    return SimpleNamespace(is_world_process_zero=main, global_step=step, num_input_tokens_seen=10 * step,
                           max_steps=4, epoch=step / 4)


def test_only_the_main_process_writes_and_values_land_on_their_optimizer_step(tmp_path):
    log = StepLive(tmp_path / "qlora")
    log.on_log(None, _state(1, main=False), None, logs={"loss": 9.0})
    assert not (tmp_path / "qlora").exists()
    for step, logs in [(1, {"loss": 2.0, "learning_rate": 1e-3}), (2, {"loss": 1.5}), (2, {"eval_loss": 1.75})]:
        log.on_log(None, _state(step), None, logs=logs)
    assert log_file(tmp_path / "qlora", "train/loss").read_text().splitlines() == ["step\tloss", "1\t2.0", "2\t1.5"]
    # the stock callback would have put the validation on step 3 (one step per on_log call)
    assert log_file(tmp_path / "qlora", "eval/loss").read_text().splitlines() == ["step\tloss", "2\t1.75"]
    summary = json.loads((tmp_path / "qlora/metrics.json").read_text())
    assert summary["train"]["loss"] == 1.5 and summary["eval"]["loss"] == 1.75 and summary["step"] == 2
    assert log.last_loss == 1.5


def test_a_resumed_run_appends_and_a_new_run_starts_clean(tmp_path):
    StepLive(tmp_path).on_log(None, _state(1), None, logs={"loss": 2.0})
    StepLive(tmp_path, resume=True).on_log(None, _state(2), None, logs={"loss": 1.0})
    assert log_file(tmp_path, "train/loss").read_text().splitlines()[1:] == ["1\t2.0", "2\t1.0"]
    StepLive(tmp_path).on_log(None, _state(1), None, logs={"loss": 3.0})
    assert log_file(tmp_path, "train/loss").read_text().splitlines()[1:] == ["1\t3.0"]


def test_the_console_shows_loss_in_the_bar_and_one_line_per_validation(capsys):
    out = io.StringIO()
    bar = LossBar()
    bar.training_bar = tqdm(total=4, file=out, ascii=True)
    bar.on_log(None, _state(1), None, logs={"loss": 2.0, "learning_rate": 1e-3, "grad_norm": 0.5})
    bar.on_log(None, _state(2), None, logs={"loss": 1.5})
    bar.training_bar.update(2)
    bar.on_log(None, _state(2), None, logs={"eval_loss": 1.75, "eval_runtime": 3.0})
    bar.training_bar.close()
    text = out.getvalue() + capsys.readouterr().out  # the bar, and the lines written above it
    assert "loss=1.5000" in text and "learning_rate" not in text and "{" not in text
    assert text.count("validation loss") == 1 and "step 2/4 (epoch 0.50): validation loss 1.7500" in text
