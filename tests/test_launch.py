"""Where training runs: the committed multi-GPU launch configuration (accelerate, DDP) and the compute dtype,
checked on a CPU."""

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


def test_cpus_serve_in_bf16_only_with_amx_and_train_in_bf16_where_it_is_fast(monkeypatch):
    """Serving: AVX512-BF16 without AMX generated about twice as fast in fp32 on a Xeon, and changed greedy replies
    on an AMD EPYC. Training: bf16 matmuls ran 4x faster than fp32 on the AMD EPYC and slower on that Xeon
    (benchmarks/results/cpu_dtype/)."""
    intel = "vendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_fp16\n"
    amd = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    amx = "vendor_id\t: GenuineIntel\nflags\t\t: avx2 avx512_bf16 amx_bf16 amx_tile amx_int8\n"
    avx2 = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 fma\n"
    assert [runtime.cpu_has_fast_bf16(c) for c in (avx2, intel, amd, amx)] == [False, False, False, True]
    assert [runtime.cpu_trains_fast_in_bf16(c) for c in (avx2, intel, amd, amx)] == [False, False, True, True]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("SUPPORTAGENT_DTYPE", raising=False)
    read = runtime.cpu_flags
    for cpuinfo, serve, train in ((intel, torch.float32, torch.float32), (amd, torch.float32, torch.bfloat16),
                                  (amx, torch.bfloat16, torch.bfloat16)):
        monkeypatch.setattr(runtime, "cpu_flags", lambda given=None, c=cpuinfo: read(given or c))
        assert (runtime.compute_dtype(), runtime.compute_dtype(training=True)) == (serve, train)
    monkeypatch.setenv("SUPPORTAGENT_DTYPE", "float32")  # the override wins for both
    assert runtime.compute_dtype(training=True) == torch.float32
    monkeypatch.setenv("SUPPORTAGENT_DTYPE", "bfloat16")
    assert runtime.compute_dtype() == torch.bfloat16
