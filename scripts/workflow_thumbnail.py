"""The template browser's thumbnail for an example graph (example_workflows/<name>.jpg): what the graph made, as
frames (a video gives evenly spaced frames: four when it is the only input, else two) and images, in two rows (a wide
image, such as a gate heatmap, takes a whole row), with an optional caption.

    python -m scripts.workflow_thumbnail OUT.jpg INPUT [INPUT ...] [--caption TEXT]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIDE = 512  # the browser shows square cards
CAPTION_HEIGHT = 40
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov")


def pictures(paths: list[Path]) -> list[Image.Image]:
    """Evenly spaced frames of the videos and the images, in the order given."""
    from ft2_core.io.video_io import read_video

    found = []
    for path in paths:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            frames, _, _ = read_video(path, with_audio=False)
            picks = np.linspace(0, len(frames) - 1, 4 if len(paths) == 1 else 2).round().astype(int)
            found.extend(Image.fromarray(frames[i]) for i in picks)
        else:
            found.append(Image.open(path).convert("RGB"))
    return found


def fit(picture: Image.Image, width: int, height: int) -> Image.Image:
    """Scaled to fit the box, enlarging small videos."""
    scale = min(width / picture.width, height / picture.height)
    return picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.BICUBIC)


def thumbnail(paths: list[Path], caption: str | None) -> Image.Image:
    sheet = Image.new("RGB", (SIDE, SIDE), (24, 24, 24))
    found = pictures(paths)
    if len(found) == 1:
        boxes = [(0, 0, SIDE, SIDE)]
    else:
        boxes, row, column = [], 0, 0
        for picture in found:
            wide = picture.width >= 2 * picture.height
            if wide and column:
                row, column = row + 1, 0
            boxes.append((column * SIDE // 2, row * SIDE // 2, SIDE if wide else SIDE // 2, SIDE // 2))
            row, column = (row + 1, 0) if wide or column else (row, 1)
        if row > 2 or (row == 2 and column):
            raise SystemExit(f"{len(found)} pictures do not fit two rows; give fewer inputs")
    for picture, (x, y, width, height) in zip(found, boxes):
        picture = fit(picture, width, height)
        sheet.paste(picture, (x + (width - picture.width) // 2, y + (height - picture.height) // 2))
    if caption:
        draw = ImageDraw.Draw(sheet)
        draw.rectangle((0, SIDE - CAPTION_HEIGHT, SIDE, SIDE), fill=(0, 0, 0))
        draw.text((12, SIDE - CAPTION_HEIGHT + 8), caption, fill=(255, 255, 255), font=ImageFont.load_default(size=22))
    return sheet


def main(argv=None) -> int:
    from ft2_core.io.atomic import atomic_path, commit_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("inputs", type=Path, nargs="+")
    parser.add_argument("--caption")
    args = parser.parse_args(argv)
    staging = atomic_path(args.out)
    try:
        thumbnail(args.inputs, args.caption).save(staging, "JPEG", quality=88)
        commit_atomic(staging, args.out)
    finally:
        staging.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
