import logging

import numpy as np
import pytest
import soundfile

from ft2_core.errors import InputError
from ft2_core.io.audio import Audio, audio_from_waveform, clip_for_video, frame_count, load_audio, to_mono_16k


def tone(freq, seconds, rate, channels=1, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([amplitude * np.sin(2 * np.pi * freq * t)] * channels).astype(np.float32)


def dominant_frequency(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()]


def test_stereo_48k_becomes_16k_mono(tmp_path):
    path = tmp_path / "stereo48k.wav"
    soundfile.write(path, tone(440, 1.5, 48000, channels=2).T, 48000)
    mono = to_mono_16k(load_audio(path))
    assert mono.shape == (24000,)
    assert abs(dominant_frequency(mono, 16000) - 440) < 2
    assert abs(np.abs(mono).max() - 0.5) < 0.02


def test_8bit_wav_is_scaled_to_unit_range(tmp_path):
    path = tmp_path / "u8.wav"
    soundfile.write(path, tone(300, 0.5, 8000).T, 8000, subtype="PCM_U8")
    audio = load_audio(path)
    assert audio.sample_rate == 8000 and audio.waveform.dtype == np.float32
    assert 0.45 < np.abs(audio.waveform).max() <= 0.51
    assert abs(dominant_frequency(to_mono_16k(audio), 16000) - 300) < 3


@pytest.mark.parametrize("fmt,subtype,suffix", [("FLAC", "PCM_16", ".flac"), ("MP3", "MPEG_LAYER_III", ".mp3")])
def test_flac_and_mp3_decode(tmp_path, fmt, subtype, suffix):
    path = tmp_path / f"clip{suffix}"
    soundfile.write(path, tone(500, 1.0, 44100).T, 44100, format=fmt, subtype=subtype)
    mono = to_mono_16k(load_audio(path))
    assert abs(len(mono) - 16000) < 1200  # MP3 adds encoder padding
    assert abs(dominant_frequency(mono, 16000) - 500) < 3


def test_bad_audio_is_named(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_audio(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(InputError, match="empty"):
        load_audio(empty)
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros((16000, 1), np.float32), 16000)
    with pytest.raises(InputError, match="silent"):
        load_audio(silent)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wav")
    with pytest.raises(InputError, match="cannot decode"):
        load_audio(junk)
    with pytest.raises(InputError, match="NaN"):
        audio_from_waveform(np.r_[np.full(4000, 0.1), np.nan].astype(np.float32), 16000)
    with pytest.raises(InputError, match="sample rate"):
        audio_from_waveform(tone(100, 0.1, 16000), 16000.5)


def test_comfy_waveform_layout_is_accepted():
    import torch

    audio = audio_from_waveform(torch.from_numpy(tone(100, 0.5, 22050, channels=2))[None], 22050)
    assert audio.waveform.shape == (2, 11025)


@pytest.mark.parametrize("seconds,expected", [(3.0, 73), (2.0, 49), (0.1, 5), (10.0, 233), (3.52, 85)])
def test_frame_count_rule(seconds, expected):
    assert frame_count(seconds, 23) == expected  # hand-computed: 69 -> 68 + 5, 46 -> 44 + 5, 2 -> 0 + 5, 230 -> 228 + 5
    assert frame_count(seconds, 23, max_frames=81) == min(expected, 81)


def test_clip_is_padded_or_trimmed_and_logged(caplog):
    caplog.set_level(logging.INFO, logger="ft2_core.io.audio")  # a trainer run earlier in the session may have quietened it
    short = Audio(tone(200, 1.0, 16000), 16000)
    assert clip_for_video(short, 81, 23).shape == (56347,)
    assert "padded" in caplog.text
    long = Audio(tone(200, 9.0, 16000), 16000)
    clip = clip_for_video(long, 81, 23)
    assert clip.shape == (56347,) and np.array_equal(clip, long.waveform[0, :56347])
    assert "trimmed" in caplog.text


def test_wav2vec_gives_upstream_token_count(tiny_pipeline):
    # 81 frames at 23 fps -> 56,347 samples -> 175 tokens (~50 per second)
    feats = tiny_pipeline.audio_features(Audio(tone(200, 4.0, 16000), 16000), 81, 23)
    assert feats.shape == (1, 175, tiny_pipeline.model.adapter.audio_in_dim)


@pytest.mark.hostile(item=9, ends="handled")
def test_speech_in_antiphase_survives_the_downmix(caplog):
    """Averaging L = s and R = -s gives silence; the downmix keeps one channel instead (and says so)."""
    speech = tone(220, 1.0, 16000)[0] * np.linspace(0, 1, 16000, dtype=np.float32)
    antiphase = Audio(np.stack([speech, -speech]), 16000)
    caplog.set_level(logging.WARNING)
    assert np.allclose(np.abs(to_mono_16k(antiphase)), np.abs(speech))
    assert "cancel out" in caplog.text
    in_phase = Audio(np.stack([speech, 0.5 * speech]), 16000)
    assert np.allclose(to_mono_16k(in_phase), 0.75 * speech)  # an ordinary stereo mix is still averaged


@pytest.mark.hostile(item=5, ends="handled")
@pytest.mark.parametrize("suffix, fmt", [(".flac", "FLAC"), (".wav", "WAV")])
def test_decoding_holds_the_waveform_and_one_chunk_not_the_file_twice(tmp_path, suffix, fmt):
    """20 s of 48 kHz stereo (7.7 MB as float32) decodes to what libsndfile reads whole, with a peak of the waveform
    plus one chunk (reading it whole, then transposing, held it twice, and the silence check a third time)."""
    import tracemalloc

    from ft2_core.io.audio import DECODE_CHUNK_FRAMES

    path = tmp_path / f"speech{suffix}"
    waveform = tone(440, 20.0, 48000, channels=2) * np.linspace(0.1, 1, 20 * 48000, dtype=np.float32)
    soundfile.write(path, waveform.T, 48000, format=fmt, subtype="PCM_16")
    tracemalloc.start()
    audio = load_audio(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    whole, rate = soundfile.read(path, dtype="float32", always_2d=True)
    assert rate == 48000 and np.array_equal(audio.waveform, whole.T)
    assert peak <= audio.waveform.nbytes + 1.5 * DECODE_CHUNK_FRAMES * 2 * 4, (peak, audio.waveform.nbytes)
