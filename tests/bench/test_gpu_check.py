"""The GPU check runs its whole path at tiny shapes on a CPU: fp8 base, sampling, then Flow-DPO expert steps with
blocks swapped, inputs on the CPU and rows one at a time, which train every LoRA tensor."""
import math

import torch

from bench.gpu_check import check


def test_the_check_runs_at_tiny_shapes_without_cuda(tiny_dir, capsys):
    results = check(1, 2, torch.device("cpu"), tiny_dir)
    assert math.isfinite(results["loss"]) and results["changed"] == 1.0
    assert results["sampling"][0] > 0 and results["dpo"][0] > 0 and math.isnan(results["dpo"][1])
    out = capsys.readouterr().out
    assert "Flow-DPO expert step (fp8, 20 swapped, inputs on CPU, rows at a time)" in out
