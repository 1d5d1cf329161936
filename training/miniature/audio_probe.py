"""Do the frozen audio features carry what the mouth does? A linear probe, fitted on training clips, judged held out.

    python -m training.miniature.audio_probe --out training/miniature/results/audio_probe [--model FOLDER]

The world's mouth opens with the loudness of its speech (world.mouth_track). The base model hears that speech only
through its frozen wav2vec2 (random in the miniature model). A ridge regression from the features around each video
frame (`--radius` features on each side, about 50 a second) to the truth's mouth opening, fitted on training-split clips
and scored (R²) on held-out ones, says how much of the mouth those features give a model that reads them linearly; the
same probe on the log loudness of each feature's 20 ms of audio is the reference a plain reading of the sound reaches.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ft2_core.io.audio import Audio, clip_for_video
from ft2_core.miniature.model import WorldEncoders, miniature_model_dir
from ft2_core.miniature.world import make_clip
from ft2_core.models.wav2vec import FRAME_STRIDE, WAV2VEC_RATE
from ft2_core.scoring.proxy_metrics import loudness_envelope
from training.miniature.base_model import training_clip
from training.miniature.evaluate_base import SPLITS
from training.miniature.tables import command_line, write_result

FEATURES_PER_SECOND = WAV2VEC_RATE / FRAME_STRIDE  # wav2vec2's 50 a second
RIDGE = 10.0
FIT_SEED = 0  # the probe is fitted on the training clips a base run of this seed draws


def frame_windows(features: np.ndarray, num_frames: int, fps: float, radius: int) -> np.ndarray:
    """[L, D] features -> [num_frames, (2 radius + 1) D]: for each video frame, the features around its time (the ends
    repeated where the window passes them)."""
    centres = np.rint(np.arange(num_frames) / fps * FEATURES_PER_SECOND).astype(int)
    index = np.clip(centres[:, None] + np.arange(-radius, radius + 1)[None], 0, len(features) - 1)
    return features[index].reshape(num_frames, -1)


def log_loudness(samples: np.ndarray, count: int) -> np.ndarray:
    """[count, 1]: the log RMS of each feature's FRAME_STRIDE samples of 16 kHz audio, relative to the loudest."""
    rms = loudness_envelope(Audio(np.asarray(samples, np.float64)[None], WAV2VEC_RATE), count, FEATURES_PER_SECOND)
    return np.log(rms / rms.max() + 1e-4)[:, None]


def ridge_r2(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, ridge: float) -> float:
    """R² on the test rows of a ridge regression fitted on the training rows (inputs standardised on the training rows,
    the intercept not penalised)."""
    mean, spread = train_x.mean(axis=0), train_x.std(axis=0) + 1e-8
    a = (train_x - mean) / spread
    b = (test_x - mean) / spread
    penalty = ridge * np.eye(a.shape[1])
    weights = np.linalg.solve(a.T @ a + penalty, a.T @ (train_y - train_y.mean()))
    predicted = b @ weights + train_y.mean()
    return float(1 - np.mean((predicted - test_y) ** 2) / np.var(test_y))


def probe_rows(encoders: WorldEncoders, clips, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(wav2vec2 windows, loudness windows, mouth openings) of every frame of `clips`, stacked."""
    features, loudness, mouth = [], [], []
    for clip in clips:
        count = len(clip.frames)
        samples = clip_for_video(clip.audio, count, clip.fps)
        encoded = encoders.wav2vec.encode(samples)[0].numpy()
        features.append(frame_windows(encoded, count, clip.fps, radius))
        loudness.append(frame_windows(log_loudness(samples, len(encoded)), count, clip.fps, radius))
        mouth.append(np.asarray(clip.motion.mouth, np.float64))
    return np.concatenate(features), np.concatenate(loudness), np.concatenate(mouth)


def probe(model: Path, split: str, fit_clips: int, clips: int, frames: int, radius: int) -> dict:
    encoders = WorldEncoders.from_folder(model)
    fit = probe_rows(encoders, (training_clip(FIT_SEED, index, frames, 64) for index in range(fit_clips)), radius)
    held_out = probe_rows(encoders, (make_clip(SPLITS[split] + index, frames, 64) for index in range(clips)), radius)
    return {"split": split, "fit_clips": fit_clips, "clips": clips, "frames": frames, "radius": radius, "ridge": RIDGE,
            "wav2vec2": ridge_r2(fit[0], fit[2], held_out[0], held_out[2], RIDGE),
            "log loudness": ridge_r2(fit[1], fit[2], held_out[1], held_out[2], RIDGE)}


def markdown(numbers: dict, command: str) -> str:
    first = SPLITS[numbers["split"]]
    return "\n".join([
        f"How much of the world's mouth opening a linear reading of the audio gives: ridge regression (penalty "
        f"{numbers['ridge']:g}) from the {2 * numbers['radius'] + 1} features around each video frame, fitted on "
        f"{numbers['fit_clips']} training clips (the stream train_base draws with seed {FIT_SEED}), R² on {numbers['clips']} "
        f"{numbers['split']} clips (world seeds {first} to {first + numbers['clips'] - 1}), {numbers['frames']} frames each. "
        f"Model: {numbers['model']}.",
        "",
        f"Command: `{command}`",
        "",
        "| input | held-out R² |",
        "|---|---|",
        f"| the model's frozen wav2vec2 features | {numbers['wav2vec2']:.3f} |",
        f"| log loudness (20 ms) | {numbers['log loudness']:.3f} |",
        "",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    parser.add_argument("--model", type=Path, default=None, help="a miniature model folder (default: the shipped one)")
    parser.add_argument("--split", choices=tuple(SPLITS), default="validation")
    parser.add_argument("--fit-clips", type=int, default=300)
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--radius", type=int, default=6)
    args = parser.parse_args(argv)
    if min(args.fit_clips, args.clips, args.frames) < 1 or args.radius < 0:
        parser.error("--fit-clips, --clips and --frames must be at least 1 and --radius at least 0, got "
                     f"{args.fit_clips}, {args.clips}, {args.frames} and {args.radius}")
    numbers = probe(args.model or miniature_model_dir(), args.split, args.fit_clips, args.clips, args.frames, args.radius)
    numbers["model"] = str(args.model) if args.model else "the shipped one, ft2_core/miniature/weights"
    print(write_result(args.out, numbers, markdown(numbers, command_line("training.miniature.audio_probe", argv))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
