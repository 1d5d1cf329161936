import torch

from ft2_core.checks import all_finite


def test_fp8_finiteness_read_from_the_bits_agrees_with_upcasting_every_value():
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        for bits in range(256):
            value = torch.tensor([bits], dtype=torch.uint8).view(dtype)
            assert all_finite(value) == bool(torch.isfinite(value.float()).all()), (dtype, bits)


def test_other_dtypes():
    assert all_finite(torch.tensor([1.0, -2.0])) and not all_finite(torch.tensor([1.0, float("inf")]))
    assert not all_finite(torch.tensor([float("nan")], dtype=torch.bfloat16))
    assert all_finite(torch.arange(5))  # integers are always finite
