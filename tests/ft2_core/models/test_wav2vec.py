"""wav2vec2 over long audio: bounded passes stitched on the feature grid."""
import numpy as np
import pytest
import torch

from ft2_core.models.wav2vec import FRAME_STRIDE, RECEPTIVE_FIELD


@pytest.fixture(scope="module")
def speechlike():
    return np.random.default_rng(0).standard_normal(16000 * 3 + 123).astype(np.float32)


def test_chunks_cover_every_feature_once(tiny_pipeline):
    chunks = tiny_pipeline.wav2vec.chunks(16000 * 100, chunk=1500, context=250)
    total = (16000 * 100 - RECEPTIVE_FIELD) // FRAME_STRIDE + 1
    assert [(first, end) for first, end, _ in chunks] == [(s, min(s + 1500, total)) for s in range(0, total, 1500)]
    assert [start for _, _, start in chunks] == [max(0, first - 250) * FRAME_STRIDE for first, _, _ in chunks]
    assert len(tiny_pipeline.wav2vec.chunks(16000 * 30)) == 1  # 30 s or less: one pass, as upstream


def test_chunks_land_on_the_same_feature_grid_as_one_pass(tiny_pipeline, speechlike):
    """With context wider than the audio every chunk hears all of it, so stitching must reproduce one pass exactly."""
    whole = tiny_pipeline.wav2vec.encode(speechlike)
    reported = []
    stitched = tiny_pipeline.wav2vec.encode(speechlike, on_chunk=lambda: reported.append(1), chunk=37, context=10**6)
    assert len(reported) == 5 and stitched.shape == whole.shape == (1, 150, whole.shape[-1])
    torch.testing.assert_close(stitched, whole, rtol=0, atol=1e-5)


def test_short_audio_is_one_pass(tiny_pipeline, speechlike):
    reported = []
    features = tiny_pipeline.wav2vec.encode(speechlike, on_chunk=lambda: reported.append(1))
    assert reported == [1] and features.shape[1] == 150
