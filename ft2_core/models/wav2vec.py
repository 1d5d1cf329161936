"""wav2vec2 from a local folder: the audio features FantasyTalking's adapter projects."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io.audio import WAV2VEC_RATE
from ..placement import visiting

FRAME_STRIDE = 320  # samples per feature (the conv stack's strides 5*2*2*2*2*2*2)
RECEPTIVE_FIELD = 400  # samples one feature sees (its kernels 10,3,3,3,3,2,2)
CHUNK_FEATURES = 1500  # 30 s of audio per pass: attention memory grows with the square of the length
CONTEXT_FEATURES = 250  # 5 s of audio heard on each side of a chunk, then dropped


class Wav2VecEncoder:
    """wav2vec2 from a local folder (config, weights, preprocessor config); `last_hidden_state` features."""

    def __init__(self, folder: str | os.PathLike, device="cpu", dtype=torch.float32):
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise InputError(f"wav2vec2 folder {folder} has no config.json; expected e.g. wav2vec2-base-960h")
        self.extractor = Wav2Vec2FeatureExtractor.from_pretrained(folder, local_files_only=True)
        self.model = Wav2Vec2Model.from_pretrained(folder, local_files_only=True, torch_dtype=dtype)
        self.model.eval().requires_grad_(False)
        self.device = torch.device(device)  # where encode runs; the weights wait on the CPU (placement.visiting)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @staticmethod
    def chunks(num_samples: int, chunk: int = CHUNK_FEATURES, context: int = CONTEXT_FEATURES) -> list[tuple[int, int, int]]:
        """(first feature, end feature, first sample) of each pass over `num_samples` samples: up to `chunk` features
        each, heard with `context` features of audio on both sides. Audio of one chunk or less is one whole pass."""
        total = max(0, (num_samples - RECEPTIVE_FIELD) // FRAME_STRIDE + 1)
        return [(start, min(start + chunk, total), max(0, start - context) * FRAME_STRIDE)
                for start in range(0, max(total, 1), chunk)]

    @torch.no_grad()
    def encode(self, samples_16k: np.ndarray, on_chunk=None, chunk: int = CHUNK_FEATURES,
               context: int = CONTEXT_FEATURES) -> torch.Tensor:
        """[T] samples at 16 kHz -> [1, L, hidden] features (about 50 per second), as one pass over the whole audio
        (upstream's way) up to `chunk` features; longer audio runs in chunks that each hear `context` features more
        on both sides, so memory stays bounded and `on_chunk()` reports progress after each."""
        inputs = self.extractor(samples_16k, sampling_rate=WAV2VEC_RATE, return_tensors="pt").input_values
        parts = []
        with visiting(self.model, self.device) as model:
            param = next(model.parameters())
            for first, end, first_sample in self.chunks(inputs.shape[-1], chunk, context):
                last_sample = min(inputs.shape[-1], (end + context - 1) * FRAME_STRIDE + RECEPTIVE_FIELD)
                piece = inputs[:, first_sample:last_sample].to(param.device, param.dtype)
                offset = first - first_sample // FRAME_STRIDE
                parts.append(model(piece).last_hidden_state[:, offset : offset + end - first])
                if on_chunk is not None:
                    on_chunk()
        return torch.cat(parts, dim=1)
