"""Weight files: written whole, and never with NaN in them."""
import pytest


def test_a_tensor_file_with_nan_is_never_written(tmp_path):
    import torch

    from ft2_core.errors import InputError
    from ft2_core.io.checkpoint_io import save_safetensors

    with pytest.raises(InputError, match="refusing to write .*expert.safetensors: tensor b holds NaN or infinite values"):
        save_safetensors({"a": torch.ones(2), "b": torch.tensor([1.0, float("inf")])}, tmp_path / "expert.safetensors")
    assert list(tmp_path.iterdir()) == []
