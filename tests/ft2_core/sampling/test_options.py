"""Sampling and long-video options: window plans, and bad settings named."""
import pytest
import torch

from ft2_core.errors import InputError
from ft2_core.sampling.options import WindowOptions, continuation_windows, sliding_windows


@pytest.mark.parametrize("frames, window, overlap, expected", [
    (7, 9, 3, [(0, 7)]),  # shorter than a window: one short window
    (9, 9, 3, [(0, 9)]),
    (20, 9, 3, [(0, 9), (6, 14), (11, 19), (12, 20)]),  # later windows hold 8 video latents after the portrait slot
    (19, 9, 3, [(0, 9), (6, 14), (11, 19)]),  # fits exactly
    (10, 9, 4, [(0, 9), (2, 10)]),  # the last window is pulled back to end on the last frame
])
def test_sliding_windows(frames, window, overlap, expected):
    assert sliding_windows(frames, window, overlap) == expected


@pytest.mark.parametrize("frames, window, known, expected", [
    (7, 9, 1, [(0, 7)]),
    (25, 9, 1, [(0, 9), (8, 17), (16, 25)]),
    (27, 9, 2, [(0, 9), (7, 16), (14, 23), (21, 27)]),  # the last window is short
    (10, 9, 4, [(0, 9), (5, 10)]),
])
def test_continuation_windows(frames, window, known, expected):
    assert continuation_windows(frames, window, known) == expected


@pytest.mark.parametrize("frames, window, overlap", [(21, 9, 3), (23, 9, 3), (10, 9, 4), (100, 21, 4), (7, 9, 3)])
def test_every_frame_is_covered_with_the_overlap_asked_for(frames, window, overlap):
    plan = sliding_windows(frames, window, overlap)
    covered = torch.zeros(frames, dtype=torch.long)
    for start, end in plan:
        covered[start:end] += 1
    assert covered.min() >= 1 and plan[0][0] == 0 and plan[-1][1] == frames
    assert plan[0][1] == min(window, frames) and all(end - start == window - 1 for start, end in plan[1:])
    assert all(prev_end - start >= overlap for (_, prev_end), (start, _) in zip(plan, plan[1:]))


def test_bad_window_options_are_named():
    with pytest.raises(InputError, match="long-video method"):
        WindowOptions("zigzag").validate()
    with pytest.raises(InputError, match="window_frames must be 4k\\+1"):
        WindowOptions(window_frames=80).validate()
    for overlap in (6, 0, 80):
        with pytest.raises(InputError, match="overlap_frames must be a multiple of 4"):
            WindowOptions(window_frames=81, overlap_frames=overlap).validate()
