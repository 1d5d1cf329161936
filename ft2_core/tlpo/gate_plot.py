"""A picture of what a gate does: expert weight per layer (rows) and timestep (columns), one panel per expert."""
from __future__ import annotations

import numpy as np
import torch

# A perceptually ordered dark-blue -> teal -> yellow ramp (anchors; linear in between).
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32)


def colour(values: np.ndarray) -> np.ndarray:
    """Values in 0..1 -> RGB uint8."""
    position = np.clip(values, 0, 1) * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    frac = (position - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).astype(np.uint8)


@torch.no_grad()
def gate_weights_grid(gate, num_layers: int, timesteps: torch.Tensor) -> np.ndarray:
    """[experts, layers, timesteps] weights."""
    weights = gate(timesteps.float()).expand(-1, num_layers, -1)  # [T, L, K]
    return weights.permute(2, 1, 0).cpu().numpy()


def render_gate(gate, num_layers: int, names: tuple[str, ...] = (), columns: int = 50, cell: int = 8) -> np.ndarray:
    """uint8 [H, W, 3]: a heatmap panel per expert with labelled axes and a shared colour scale."""
    from PIL import Image, ImageDraw

    timesteps = torch.linspace(1000, 0, columns)  # left: pure noise, right: clean
    grid = gate_weights_grid(gate, num_layers, timesteps)
    low, high = float(grid.min()), float(grid.max())
    scaled = (grid - low) / (high - low) if high > low else np.full_like(grid, 0.5)
    experts = grid.shape[0]
    names = names or tuple(f"expert {k + 1}" for k in range(experts))
    rows = max(num_layers * cell, 80)
    row_height = rows // num_layers
    margin_left, margin_top, gap = 56, 28, 24
    panel_width = columns * cell
    width = margin_left + experts * (panel_width + gap) + 70
    height = margin_top + num_layers * row_height + 44
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k in range(experts):
        left = margin_left + k * (panel_width + gap)
        pixels = colour(scaled[k])
        panel = Image.fromarray(pixels).resize((panel_width, num_layers * row_height), Image.NEAREST)
        image.paste(panel, (left, margin_top))
        draw.text((left, 6), f"{names[k]}", fill=(0, 0, 0))
        bottom = margin_top + num_layers * row_height
        for t in (1000, 500, 0):
            x = left + int((1000 - t) / 1000 * (panel_width - 1))
            draw.line([(x, bottom), (x, bottom + 4)], fill=(0, 0, 0))
            draw.text((x - 10, bottom + 6), str(t), fill=(0, 0, 0))
        draw.text((left + panel_width // 2 - 24, bottom + 22), "timestep", fill=(0, 0, 0))
    for layer in sorted({0, num_layers // 2, num_layers - 1}):
        y = margin_top + layer * row_height + row_height // 2
        draw.text((margin_left - 22, y - 5), str(layer), fill=(0, 0, 0))
    draw.text((4, margin_top + num_layers * row_height // 2 - 5), "layer", fill=(0, 0, 0))
    bar_left = width - 50
    bar = colour(np.linspace(1, 0, num_layers * row_height))[:, None, :].repeat(12, axis=1)
    image.paste(Image.fromarray(bar), (bar_left, margin_top))
    draw.text((bar_left + 14, margin_top - 4), f"{high:.2f}", fill=(0, 0, 0))
    draw.text((bar_left + 14, margin_top + num_layers * row_height - 8), f"{low:.2f}", fill=(0, 0, 0))
    return np.array(image)
