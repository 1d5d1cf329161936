import numpy as np

from ft2_core.miniature.world import FPS, HELD_OUT_SEEDS_FROM, make_clip, speech_clip


def test_same_seed_same_clip_other_seed_other_clip():
    a, b, c = make_clip(3), make_clip(3), make_clip(4)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio.waveform, b.audio.waveform)
    assert not np.array_equal(a.frames, c.frames) and not np.array_equal(a.portrait, c.portrait)


def test_clip_shapes_and_first_frame_is_the_portrait():
    clip = make_clip(HELD_OUT_SEEDS_FROM, num_frames=49, size=64)
    assert clip.frames.shape == (49, 64, 64, 3) and clip.mouth_masks.shape == (49, 64, 64)
    assert clip.frames.min() >= 0 and clip.frames.max() <= 1
    assert np.array_equal(clip.frames[0], clip.portrait)
    assert clip.audio.sample_rate == 16000 and clip.audio.waveform.shape[1] == int(49 / FPS * 16000)


def test_mouth_follows_the_audio_and_the_face_moves():
    clip = make_clip(11, num_frames=81)
    samples = clip.audio.waveform[0]
    per_frame = 16000 / FPS
    loudness = np.array([np.sqrt(np.mean(samples[int(k * per_frame):int((k + 1) * per_frame)] ** 2)) for k in range(81)])
    mouth = clip.motion.mouth
    lagged = [np.corrcoef(mouth[max(0, lag):81 + min(0, lag)], loudness[max(0, -lag):81 - max(0, lag)])[0, 1]
              for lag in range(-2, 3)]
    assert max(lagged) > 0.8  # the mouth follows the sound, a little late
    assert np.ptp(clip.motion.offset_x) > 0.3  # head sway, in pixels
    masked = clip.mouth_masks.sum(axis=(1, 2))
    assert np.corrcoef(masked, clip.motion.mouth)[0, 1] > 0.8  # the lip mask grows with the opening
    # pixels change most inside the mouth region
    change = np.abs(np.diff(clip.frames, axis=0)).sum(axis=-1)
    inside = (change * clip.mouth_masks[1:]).sum() / clip.mouth_masks[1:].sum()
    outside = (change * (1 - clip.mouth_masks[1:])).sum() / (1 - clip.mouth_masks[1:]).sum()
    assert inside > 5 * outside


def test_speech_of_any_duration_has_pauses():
    audio = speech_clip(0, 12.0)
    assert audio.waveform.shape == (1, 12 * 16000)
    frames = np.abs(audio.waveform[0]).reshape(-1, 160).max(axis=1)  # 10 ms peaks
    assert (frames < 1e-3).mean() > 0.1 and (frames > 0.05).mean() > 0.4
