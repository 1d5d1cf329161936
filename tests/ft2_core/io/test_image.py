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


@pytest.mark.hostile(item=9, ends="handled")
def test_a_phone_portrait_stored_sideways_is_loaded_upright(tmp_path):
    """Phones store the sensor's landscape pixels with an EXIF orientation tag (6: rotate 90 degrees clockwise)."""
    upright = np.zeros((120, 80, 3), np.uint8)
    upright[:20] = (255, 0, 0)  # red at the top of the portrait
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote: 120 wide, 80 high
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    image = load_image(tmp_path / "phone.jpg")
    assert image.shape == (120, 80, 3)
    assert image[:15, :, 0].mean() > 0.9 and image[40:, :, 0].mean() < 0.1  # red on top again


@pytest.mark.hostile(item=9, ends="handled")
def test_eight_bit_images_are_scaled_and_other_ranges_refused():
    pixels = torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8)
    assert torch.allclose(fit_image(pixels, 64), pixels.float() / 255, atol=1e-6)
    with pytest.raises(InputError, match=r"values span .*\.\.255; expected 0\.\.1 .* divided by 255"):
        fit_image(pixels.float(), 64)
    with pytest.raises(InputError, match="int16 pixels"):
        fit_image(pixels.to(torch.int16), 64)


@pytest.mark.hostile(item=9, ends="refused")
def test_extreme_aspect_ratios_are_refused_with_the_limit():
    with pytest.raises(InputError, match=r"4096x64 is 64.0 times longer than wide; crop it to at most 4:1"):
        fit_image(torch.rand(64, 4096, 3), 512)
    assert fit_image(torch.rand(64, 256, 3), 512).shape == (128, 512, 3)  # 4:1 is still a portrait
