"""Speech input: any file or waveform -> 16 kHz mono clip of exactly the video's length (what wav2vec2 hears)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

log = logging.getLogger(__name__)

WAV2VEC_RATE = 16000
SILENCE_PEAK = 1e-4  # below this peak amplitude a clip carries no speech to follow
CANCELLED = 0.1  # a downmix this much quieter (RMS) than its loudest channel: the channels cancel, not a quiet mix
MAX_INPUT_SECONDS = 3600
MAX_CHANNELS = 16
MAX_INPUT_SAMPLES = MAX_INPUT_SECONDS * 48000 * 2  # an hour of 48 kHz stereo: 1.4 GB decoded (float32)
DECODE_CHUNK_FRAMES = 1 << 18  # frames decoded at a time, so decoding holds little beyond the waveform itself
MIN_INPUT_SECONDS = 0.1  # shorter than a syllable: almost surely a wrong input


@dataclass
class Audio:
    """A waveform as float32 [channels, samples] in -1..1 at `sample_rate`."""

    waveform: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.waveform.shape[1] / self.sample_rate


def load_audio(path: str | os.PathLike) -> Audio:
    """Read WAV/FLAC/MP3/OGG (any bit depth, rate and channel count) through libsndfile."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio: file not found: {path}")
    try:
        info = soundfile.info(str(path))  # from the header: refuse what is too long before decoding any of it
    except Exception as err:
        raise InputError(f"audio: cannot decode {path} as WAV, FLAC, MP3 or OGG ({err})") from None
    if info.samplerate > 0 and info.frames / info.samplerate > MAX_INPUT_SECONDS:
        raise InputError(f"audio: {path} is {info.frames / info.samplerate:.0f} s long; give at most {MAX_INPUT_SECONDS} s")
    if info.channels > MAX_CHANNELS:
        raise InputError(f"audio: {path} has {info.channels} channels; give at most {MAX_CHANNELS}")
    check_sample_rate(info.samplerate, str(path))
    if info.frames * info.channels > MAX_INPUT_SAMPLES:
        raise InputError(f"audio: {path} holds {info.frames * info.channels:,} samples ({info.channels} channels at "
                         f"{info.samplerate} Hz); give at most {MAX_INPUT_SAMPLES:,} (an hour of 48 kHz stereo)")
    try:
        data = decode_in_chunks(path, info.frames, info.channels)
    except InputError:
        raise
    except Exception as err:  # libsndfile's errors name no input
        raise InputError(f"audio: cannot decode {path} as WAV, FLAC, MP3 or OGG ({err})") from None
    return checked_audio(data, info.samplerate, str(path))


def decode_in_chunks(path: Path, frames: int, channels: int) -> np.ndarray:
    """[channels, frames] float32, decoded a chunk at a time straight into place: the waveform plus one chunk,
    never the whole file twice (an interleaved copy and its transpose). A header that understates the length (some
    MP3s) grows the array, within MAX_INPUT_SAMPLES; one that overstates it (a cut file) is trimmed."""
    import soundfile

    data, buffer = np.empty((channels, frames), np.float32), np.empty((DECODE_CHUNK_FRAMES, channels), np.float32)
    done = 0
    with soundfile.SoundFile(str(path)) as handle:
        while len(block := handle.read(DECODE_CHUNK_FRAMES, dtype="float32", always_2d=True, out=buffer)):
            if done + len(block) > data.shape[1]:
                if (done + len(block)) * channels > MAX_INPUT_SAMPLES:
                    raise InputError(f"audio: {path} holds more than {MAX_INPUT_SAMPLES:,} samples (an hour of 48 kHz "
                                     "stereo)")
                data = np.concatenate([data[:, :done], np.empty((channels, max(done, len(block))), np.float32)], axis=1)
            data[:, done:done + len(block)] = block.T
            done += len(block)
    return data[:, :done]


def check_sample_rate(sample_rate, name: str) -> None:
    if not isinstance(sample_rate, (int, np.integer)) or not 1000 <= sample_rate <= 384000:
        raise InputError(f"{name}: sample rate must be an integer between 1000 and 384000 Hz, got {sample_rate}")


def audio_from_waveform(waveform, sample_rate: int, name: str = "audio waveform") -> Audio:
    """Accept [samples], [channels, samples] or ComfyUI's [batch=1, channels, samples] tensors/arrays."""
    data = waveform.detach().cpu().float().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform, np.float32)
    if data.ndim == 3:
        if data.shape[0] != 1:
            raise InputError(f"{name}: expected a batch of one clip, got {data.shape[0]}")
        data = data[0]
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise InputError(f"{name}: expected [channels, samples], got shape {data.shape}")
    return checked_audio(data, sample_rate, name)


def checked_audio(data: np.ndarray, sample_rate, name: str) -> Audio:
    check_sample_rate(sample_rate, name)
    if data.shape[1] == 0:
        raise InputError(f"{name}: the clip is empty (no samples)")
    if data.shape[0] > MAX_CHANNELS:
        raise InputError(f"{name}: {data.shape[0]} channels; expected [channels, samples] with at most {MAX_CHANNELS} channels")
    if data.shape[1] < MIN_INPUT_SECONDS * sample_rate:
        raise InputError(
            f"{name}: {data.shape[1] / sample_rate:.3f} s is too short; give at least {MIN_INPUT_SECONDS} s of speech"
        )
    if data.shape[1] > MAX_INPUT_SECONDS * sample_rate:
        raise InputError(f"{name}: {data.shape[1] / sample_rate:.0f} s is too long; give at most {MAX_INPUT_SECONDS} s")
    low, high = float(data.min()), float(data.max())  # NaN propagates into both; no copy of the waveform
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InputError(f"{name}: contains NaN or infinite samples")
    peak = max(-low, high)
    if peak < SILENCE_PEAK:
        raise InputError(f"{name}: the clip is silent (peak {peak:.1e}); give speech to animate")
    return Audio(np.ascontiguousarray(data, dtype=np.float32), int(sample_rate))


def downmix(waveform: np.ndarray) -> np.ndarray:
    """[channels, T] -> [T]: the channels' average, unless they cancel out (speech in antiphase, a common wiring
    fault, averages to silence): then the loudest channel alone."""
    mono = waveform.mean(axis=0)
    if waveform.shape[0] == 1:
        return mono
    loudness = np.sqrt((waveform.astype(np.float64) ** 2).mean(axis=1))
    if np.sqrt((mono.astype(np.float64) ** 2).mean()) < CANCELLED * loudness.max():
        log.warning("the audio's channels cancel out when averaged (antiphase); using channel %d alone", loudness.argmax())
        return waveform[loudness.argmax()]
    return mono


def to_mono_16k(audio: Audio) -> np.ndarray:
    """Downmix and resample (polyphase, anti-aliased) to 16 kHz."""
    from scipy.signal import resample_poly

    mono = downmix(audio.waveform)
    if audio.sample_rate == WAV2VEC_RATE:
        return mono
    divisor = gcd(WAV2VEC_RATE, audio.sample_rate)
    return resample_poly(mono, WAV2VEC_RATE // divisor, audio.sample_rate // divisor).astype(np.float32)


def frame_count(duration: float, fps: float, max_frames: int | None = None) -> int:
    """Upstream's rule: 4k+1 frames covering the clip (any length: long videos run in windows), optionally capped."""
    frames = int(fps * duration) // 4 * 4 + 5
    return frames if max_frames is None else min(frames, max_frames)


def fit_samples(samples: np.ndarray, num_samples: int) -> np.ndarray:
    """Trim or zero-pad a [..., T] array to `num_samples`, saying which in the log."""
    have = samples.shape[-1]
    if have > num_samples:
        log.info("audio is %.2f s, longer than the video: trimmed to %.2f s", have / WAV2VEC_RATE, num_samples / WAV2VEC_RATE)
        return samples[..., :num_samples]
    if have < num_samples:
        log.info("audio is shorter than the video: padded with %d samples of silence", num_samples - have)
        pad = [(0, 0)] * (samples.ndim - 1) + [(0, num_samples - have)]
        return np.pad(samples, pad)
    return samples


def clip_for_video(audio: Audio, num_frames: int, fps: float) -> np.ndarray:
    """16 kHz mono samples for exactly `num_frames / fps` seconds (what upstream feeds wav2vec2)."""
    return fit_samples(to_mono_16k(audio), int(num_frames / fps * WAV2VEC_RATE))


def fit_to_duration(audio: Audio, seconds: float) -> Audio:
    """The original-rate audio trimmed/padded to `seconds` (the soundtrack written with the video)."""
    samples = int(round(seconds * audio.sample_rate))
    have = audio.waveform.shape[1]
    data = audio.waveform[:, :samples] if have >= samples else np.pad(audio.waveform, [(0, 0), (0, samples - have)])
    return Audio(data, audio.sample_rate)
