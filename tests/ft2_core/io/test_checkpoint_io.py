"""Weight files: written whole, and never with NaN in them."""
import pytest

from tests.conftest import in_the_map_of


@pytest.mark.hostile(item=4, ends="refused")
def test_a_tensor_file_with_nan_is_never_written(tmp_path):
    import torch

    from ft2_core.errors import InputError
    from ft2_core.io.checkpoint_io import save_safetensors

    with pytest.raises(InputError, match="refusing to write .*expert.safetensors: tensor b holds NaN or infinite values"):
        save_safetensors({"a": torch.ones(2), "b": torch.tensor([1.0, float("inf")])}, tmp_path / "expert.safetensors")
    assert list(tmp_path.iterdir()) == []


def raw_safetensors(path, header, data=b""):
    import json
    import struct

    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]}}


@pytest.mark.hostile(item=7, ends="refused")
@pytest.mark.parametrize("header, expected", [
    ([1, 2], "a JSON list, expected an object of tensors"),
    ({"a": {"dtype": "F32", "shape": [2]}}, "tensor a needs dtype, shape and data_offsets"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": 8}}, "tensor a has data_offsets 8, expected [begin, end]"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, "data_offsets [8, 0], expected [begin, end] with begin"),
    ({**GOOD, "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}}, "overlapping or gapped data"),
    ({"a": {"dtype": "F128", "shape": [2], "data_offsets": [0, 8]}}, "unknown dtype 'F128'"),
    ({"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, "needs 4835703278458516698824704 bytes"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, "shape [-2], expected a list of sizes"),
    ({"__metadata__": {"ft2.rank": 4}, **GOOD}, "__metadata__ must map names to strings"),
])
def test_malformed_headers_are_one_sentence_naming_the_file(tmp_path, header, expected):
    from ft2_core.errors import InputError
    from ft2_core.io.checkpoint_io import load_state_dict

    path = raw_safetensors(tmp_path / "w.safetensors", header, bytes(12))
    with pytest.raises(InputError) as caught:
        load_state_dict(path, "LoRA w.safetensors")
    assert str(caught.value).startswith(f"LoRA w.safetensors: {path}") and expected in str(caught.value)


def test_a_well_formed_header_still_loads(tmp_path):
    from ft2_core.io.checkpoint_io import load_state_dict

    state = load_state_dict(raw_safetensors(tmp_path / "w.safetensors", GOOD, bytes(12)))
    assert state["a"].shape == (2,) and state["b"].shape == (4,)


def test_a_safetensors_file_read_in_its_own_dtype_is_the_page_cache_not_a_private_copy(tmp_path):
    """safetensors maps the file: tensors kept in the file's dtype live in the map of the file (the system's cached
    pages of it, one copy for every process that reads it; FSDP ranks load the base so), while a cast is a copy."""
    import torch
    from safetensors.torch import save_file

    from ft2_core.io.checkpoint_io import load_state_dict

    path = tmp_path / "w.safetensors"
    save_file({f"w{i}": torch.ones(256, 1024) * i for i in range(4)}, path)
    kept, cast = load_state_dict(path), load_state_dict(path, dtype=torch.bfloat16)
    assert all(in_the_map_of(path, t) for t in kept.values())
    assert not any(in_the_map_of(path, t) for t in cast.values())
    assert all(torch.equal(kept[f"w{i}"], torch.ones(256, 1024) * i) for i in range(4))
