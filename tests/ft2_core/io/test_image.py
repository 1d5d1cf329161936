import numpy as np
import pytest
import torch
from PIL import Image

from ft2_core.errors import InputError
from ft2_core.io.image import fit_image, load_image, require_multiple_of_16, target_size


def test_target_size_follows_upstream():
    assert target_size(1080, 1920, 512) == (288, 512)  # 1080*512/1920 = 288
    assert target_size(700, 500, 512) == (512, 368)  # 365.7 -> 365 -> up to 368


def test_odd_sized_image_is_resized_to_multiples_of_16(tmp_path):
    path = tmp_path / "odd.png"
    Image.fromarray((np.random.rand(333, 251, 3) * 255).astype(np.uint8)).save(path)
    image = fit_image(load_image(path), 256)
    assert image.shape == (256, 192, 3)  # 251 * 256 / 333 = 192.96 -> 192
    assert image.min() >= 0 and image.max() <= 1


def test_bad_images_are_named(tmp_path):
    with pytest.raises(InputError, match="image: file not found"):
        load_image(tmp_path / "none.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(InputError, match="20x30 is too small"):
        fit_image(torch.rand(30, 20, 3), 512)
    with pytest.raises(InputError, match="RGB"):
        fit_image(torch.rand(100, 100), 512)
    with pytest.raises(InputError, match="multiples of 16"):
        require_multiple_of_16(torch.rand(100, 120, 3))
    with pytest.raises(InputError, match="max_side"):
        fit_image(torch.rand(100, 100, 3), 500)
