"""Where training runs: the committed multi-GPU launch configuration (accelerate, DDP) and the compute dtype, checked on a CPU."""

import torch

from supportagent import runtime

from conftest import ROOT

CONFIG = ROOT / "configs/accelerate/ddp.yaml"


def test_accelerate_reads_the_ddp_config_as_multi_gpu_bf16():
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(CONFIG), "stages/train.py", "qlora"])
    args, _, _ = _validate_launch_command(args)
    assert args.multi_gpu and not args.use_cpu
    assert args.num_processes >= 2 and args.num_machines == 1
    assert args.mixed_precision == "bf16"
    assert (ROOT / args.training_script).exists() and args.training_script_args == ["qlora"]


def test_each_ddp_process_loads_onto_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert runtime.device() == torch.device("cuda", 1)
    monkeypatch.delenv("LOCAL_RANK")
    assert runtime.device() == torch.device("cuda", 0)


def test_cpus_compute_in_bf16_only_with_amx(monkeypatch):
    """AVX512-BF16 without AMX trained and generated about twice as fast in fp32 (benchmarks/cpu_dtype.py)."""
    assert not runtime.cpu_has_fast_bf16("flags : fpu avx2 fma")
    assert not runtime.cpu_has_fast_bf16("flags : avx2 avx512f avx512_bf16 avx512_fp16")
    assert runtime.cpu_has_fast_bf16("flags : avx2 avx512_bf16 amx_bf16 amx_tile amx_int8")
    monkeypatch.setenv("SUPPORTAGENT_DTYPE", "bfloat16")
    assert runtime.compute_dtype() == torch.bfloat16
