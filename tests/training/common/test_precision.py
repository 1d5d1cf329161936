"""'auto' precision: bf16 on a GPU (no fp32 copy of a large base), fp32 on a CPU; a bf16 base needs bf16 autocast."""
import pytest
import torch

from ft2_core.errors import InputError
from training.common.precision import base_dtype, check_precision, mixed_precision


def config(dtype="auto", mixed="auto", cpu=False):
    return {"model": {"dtype": dtype}, "train": {"mixed_precision": mixed, "cpu": cpu}}


def test_auto_is_bf16_on_a_gpu_and_fp32_on_a_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert (base_dtype(config()), mixed_precision(config())) == ("fp32", "no")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert (base_dtype(config()), mixed_precision(config())) == ("bf16", "bf16")
    assert (base_dtype(config(cpu=True)), mixed_precision(config(cpu=True))) == ("fp32", "no")  # train.cpu wins
    assert (base_dtype(config("fp32", "no")), mixed_precision(config("fp32", "no"))) == ("fp32", "no")  # as set


def test_a_bf16_base_without_bf16_autocast_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match='model.dtype = "bf16" trains under autocast'):
        check_precision(config("bf16", "no"))
    check_precision(config("bf16", "bf16"))
