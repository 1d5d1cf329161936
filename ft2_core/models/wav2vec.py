"""wav2vec2 from a local folder: the audio features FantasyTalking's adapter projects."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io.audio import WAV2VEC_RATE
from ..placement import visiting


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

    @torch.no_grad()
    def encode(self, samples_16k: np.ndarray) -> torch.Tensor:
        """[T] samples at 16 kHz -> [1, L, hidden] features (about 50 per second)."""
        inputs = self.extractor(samples_16k, sampling_rate=WAV2VEC_RATE, return_tensors="pt").input_values
        with visiting(self.model, self.device) as model:
            param = next(model.parameters())
            return model(inputs.to(param.device, param.dtype)).last_hidden_state
