"""Images as numpy arrays: windowing, label and heat overlays, nearest-neighbour upscaling.

Everything returns ``uint8`` RGB arrays ``(H, W, 3)`` that ``st.image`` shows as they are,
so the pictures are computed (and tested) without Streamlit.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw  # Pillow ships with Streamlit (the dashboard extra)

# Label colours (RGB 0-255); label k uses LABEL_COLOURS[(k - 1) % len]. Label 0 = background.
LABEL_COLOURS = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
], dtype=np.float32)


def window(values: np.ndarray, level: float, width: float) -> np.ndarray:
    """CT windowing: map ``[level - width/2, level + width/2]`` to ``[0, 1]`` (clipped)."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    low = level - width / 2.0
    return np.clip((np.asarray(values, dtype=np.float32) - low) / float(width), 0.0, 1.0)


def gray_rgb(gray01: np.ndarray) -> np.ndarray:
    """``(H, W)`` in ``[0, 1]`` -> ``(H, W, 3)`` float RGB in ``[0, 255]``."""
    return np.repeat(np.asarray(gray01, dtype=np.float32)[..., None] * 255.0, 3, axis=2)


def label_colours(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` integer labels -> ``(H, W, 3)`` float colours (background black)."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape + (3,), dtype=np.float32)
    fg = labels > 0
    out[fg] = LABEL_COLOURS[(labels[fg].astype(np.int64) - 1) % len(LABEL_COLOURS)]
    return out


def heat_colours(heat01: np.ndarray) -> np.ndarray:
    """``(H, W)`` in ``[0, 1]`` -> black .. red .. yellow ramp, float RGB 0-255 (no white, so
    the hottest voxels stay visible over bright tissue)."""
    t = np.clip(np.asarray(heat01, dtype=np.float32), 0.0, 1.0)[..., None]
    r = np.clip(2.0 * t, 0, 1)
    g = np.clip(2.0 * t - 1.0, 0, 1)
    return np.concatenate([r, g, np.zeros_like(t)], axis=-1) * 255.0


# Matplotlib's "magma" sampled at 9 evenly spaced points: perceptually uniform, dark to
# light, so equal steps of error look like equal steps of brightness.
MAGMA_ANCHORS = np.array([
    (0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122),
    (229, 80, 100), (251, 135, 97), (254, 194, 135), (252, 253, 191)], dtype=np.float32)
TEXT_COLOUR = (255, 255, 0)     # orientation letters: yellow reads on gray, red and black


def magma(values01: np.ndarray) -> np.ndarray:
    """``(...)`` in ``[0, 1]`` -> ``(..., 3)`` float RGB 0-255 on the magma colour map."""
    t = np.clip(np.asarray(values01, dtype=np.float32), 0.0, 1.0) * (len(MAGMA_ANCHORS) - 1)
    low = np.minimum(t.astype(np.int64), len(MAGMA_ANCHORS) - 2)
    frac = (t - low)[..., None]
    return MAGMA_ANCHORS[low] * (1.0 - frac) + MAGMA_ANCHORS[low + 1] * frac


def percentile_range(values: np.ndarray, low: float = 1.0,
                     high: float = 99.0) -> tuple[float, float]:
    """``(low, high)`` percentiles of ``values``: the colour range, so a few extreme cells
    do not squeeze everything else into the darkest colours."""
    values = np.asarray(values, dtype=np.float32)
    if values.size == 0:
        return 0.0, 1.0
    bottom, top = np.percentile(values, [low, high])
    return float(bottom), float(max(top, bottom + 1e-6))


def scale01(values: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """``values`` mapped linearly so ``value_range`` becomes ``[0, 1]`` (clipped)."""
    low, high = value_range
    return np.clip((np.asarray(values, dtype=np.float32) - low) / (high - low), 0.0, 1.0)


def blend(base: np.ndarray, layer: np.ndarray, alpha) -> np.ndarray:
    """Alpha-blend float RGB ``layer`` over ``base``; ``alpha`` is a scalar or ``(H, W)``."""
    alpha = np.asarray(alpha, dtype=np.float32)
    if alpha.ndim == 2:
        alpha = alpha[..., None]
    return base * (1.0 - alpha) + layer * alpha


def overlay(gray01: np.ndarray, labels: np.ndarray | None = None, heat01: np.ndarray | None = None,
            label_opacity: float = 0.4, heat_opacity: float = 0.5) -> np.ndarray:
    """A CT slice with its segmentation and anomaly heat map on top.

    Args:
        gray01: windowed slice ``(H, W)`` in ``[0, 1]``.
        labels: organ labels ``(H, W)`` (0 = none) or None.
        heat01: anomaly heat ``(H, W)`` in ``[0, 1]`` or None; transparent where 0.
        label_opacity: opacity of organ colours.
        heat_opacity: opacity of the hottest heat (alpha grows with the heat).

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    rgb = gray_rgb(gray01)
    if labels is not None and label_opacity > 0:
        rgb = blend(rgb, label_colours(labels), (np.asarray(labels) > 0) * float(label_opacity))
    if heat01 is not None and heat_opacity > 0:
        heat01 = np.clip(np.asarray(heat01, dtype=np.float32), 0.0, 1.0)
        rgb = blend(rgb, heat_colours(heat01), heat01 * float(heat_opacity))
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=np.float32) + 0.5, 0, 255).astype(np.uint8)


def upscale(image: np.ndarray, pixel_size: tuple[float, float] = (1.0, 1.0),
            target: int = 420) -> np.ndarray:
    """Nearest-neighbour resize so the longer side is about ``target`` pixels.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``.
        pixel_size: physical size of a row and a column step (mm or m); keeps the aspect.
        target: output size of the longer side.
    """
    h, w = image.shape[:2]
    height, width = h * float(pixel_size[0]), w * float(pixel_size[1])
    scale = target / max(height, width)
    out_h, out_w = max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    rows = np.minimum((np.arange(out_h) + 0.5) * h / out_h, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(out_w) + 0.5) * w / out_w, w - 1).astype(np.int64)
    return image[rows][:, cols]


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill, anchor: str) -> None:
    """Text with a dark outline, so it reads on any background."""
    draw.text(xy, text, fill=fill, anchor=anchor, stroke_width=2, stroke_fill=(0, 0, 0))


def edge_labels(image: np.ndarray, labels: dict[str, str], size: int = 16) -> np.ndarray:
    """Letters drawn at the middle of the image's edges (e.g. orientation ``R``/``L``).

    Args:
        image: ``(H, W, 3)`` uint8.
        labels: ``{"top"|"bottom"|"left"|"right": text}``.
        size: font size in pixels.
    """
    picture = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(picture)
    draw.font_size = size
    h, w = image.shape[:2]
    pad = 4
    where = {"top": ((w / 2, pad), "mt"), "bottom": ((w / 2, h - pad), "mb"),
             "left": ((pad, h / 2), "lm"), "right": ((w - pad, h / 2), "rm")}
    for side, text in labels.items():
        xy, anchor = where[side]
        _text(draw, xy, text, TEXT_COLOUR, anchor)
    return np.asarray(picture)


def colour_bar(colours, value_range: tuple[float, float], units: str, width: int = 320,
               bar_height: int = 16) -> np.ndarray:
    """A horizontal gradient of ``colours`` (``[0, 1] -> RGB 0-255``) with the values of its
    ends and the units written under it; ``(H, width, 3)`` uint8 on white."""
    ramp = colours(np.linspace(0.0, 1.0, width, dtype=np.float32))      # (width, 3)
    text_height = 18
    out = np.full((bar_height + text_height, width, 3), 255, dtype=np.uint8)
    out[:bar_height] = to_uint8(np.broadcast_to(ramp, (bar_height, width, 3)))
    picture = Image.fromarray(out)
    draw = ImageDraw.Draw(picture)
    draw.font_size = 12
    low, high = value_range
    draw.text((0, bar_height + 2), f"{low:.3g}", fill=(0, 0, 0), anchor="la")
    draw.text((width / 2, bar_height + 2), units, fill=(0, 0, 0), anchor="ma")
    draw.text((width - 1, bar_height + 2), f"{high:.3g}", fill=(0, 0, 0), anchor="ra")
    return np.asarray(picture)


def legend(entries: list[tuple[str, tuple]], swatch: int = 14, width: int = 160) -> np.ndarray:
    """Colour swatches with their names, one per row; ``(H, width, 3)`` uint8 on white.

    Args:
        entries: ``(name, (r, g, b))`` pairs, 0-255.
    """
    row = swatch + 6
    out = np.full((max(1, len(entries)) * row, width, 3), 255, dtype=np.uint8)
    for k, (_, colour) in enumerate(entries):
        top = k * row + 3
        out[top:top + swatch, 2:2 + swatch] = 128   # a grey outline: a white class shows too
        out[top + 1:top + swatch - 1, 3:1 + swatch] = np.asarray(colour, dtype=np.uint8)
    picture = Image.fromarray(out)
    draw = ImageDraw.Draw(picture)
    draw.font_size = 12
    for k, (name, _) in enumerate(entries):
        draw.text((swatch + 8, k * row + 3 + swatch / 2), name, fill=(0, 0, 0), anchor="lm")
    return np.asarray(picture)
