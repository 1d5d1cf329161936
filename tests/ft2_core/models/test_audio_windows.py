import pytest
import torch
import torch.nn.functional as F

from ft2_core.errors import InputError
from ft2_core.models.audio_windows import latent_frame_count, split_windows, window_ranges


def plain_windows(tokens, num_frames, expand=4):
    """Straight port of upstream's two-step procedure (ranges, then per-window slice + right padding)."""
    length = tokens.size(1)
    per_frame = length / num_frames
    half = int(per_frame * 4 / 2)
    centres = [0]
    for i in range(1, (num_frames - 1) // 4 + 1):
        start, end = per_frame * ((i - 1) * 4 + 1), per_frame * (i * 4 + 1)
        centres.append(int((start + end) / 2) - 1)
    ranges = [[c - half, c + half] for c in centres]
    ranges[0] = [-(half * 2 - ranges[1][0]), ranges[1][0]]
    windows, lengths = [], []
    for start, end in ranges:
        start, end = start - expand, end + expand
        pad_front, pad_back = max(-start, 0), max(end - (length - 1), 0)
        lo, hi = max(start, 0), min(end, length - 1)
        part = tokens[:, lo:hi + 1] if lo <= hi else tokens.new_zeros(tokens.size(0), 0, tokens.size(2))
        padded = F.pad(part, (0, 0, 0, pad_front + pad_back))
        windows.append(padded)
        lengths.append(padded.size(1) - pad_front - pad_back)
    return torch.stack(windows, dim=1), torch.tensor(lengths)


@pytest.mark.parametrize("num_frames", [5, 9, 17, 45, 49, 77, 81])
@pytest.mark.parametrize("num_tokens", [7, 40, 121, 175, 176, 250])
def test_windows_match_plain_implementation(num_frames, num_tokens):
    tokens = torch.randn(2, num_tokens, 6)
    got = split_windows(tokens, num_frames)
    want_tokens, want_lengths = plain_windows(tokens, num_frames)
    assert got.tokens.shape == want_tokens.shape
    assert torch.equal(got.lengths, want_lengths)
    assert torch.equal(got.tokens, want_tokens)


def test_upstream_81_frames_uses_17_token_windows():
    # 81 frames at 23 fps -> 56,347 samples -> 175 wav2vec2 tokens: windows of 9, widened to 17.
    got = split_windows(torch.randn(1, 175, 4), 81)
    assert got.tokens.shape == (1, latent_frame_count(81), 17, 4) == (1, 21, 17, 4)
    assert got.lengths[0] == 6  # first window [-7-4, 1+4] runs 11 tokens off the start
    assert got.lengths[1] == 14  # [1-4, 9+4] runs 3 off
    assert (got.lengths[2:-1] == 17).all()


def test_ranges_match_upstream_docstring_example():
    # upstream's split_tensor_with_padding documents [[-7, 1], [1, 9], ...] for 173 tokens
    ranges = window_ranges(173, 81)
    assert ranges[:3] == [(-7, 1), (1, 9), (9, 17)]


def test_padding_is_zero_and_masked():
    tokens = torch.randn(1, 30, 3) + 5  # no real token is zero
    got = split_windows(tokens, 17)
    mask = got.key_mask
    assert (got.tokens[0][~mask] == 0).all()
    assert (got.tokens[0][mask] != 0).all()


@pytest.mark.parametrize("frames", [4, 6, 1, 0])
def test_bad_frame_counts_are_refused(frames):
    with pytest.raises(InputError, match="num_frames must be 4k\\+1"):
        split_windows(torch.randn(1, 50, 3), frames)
