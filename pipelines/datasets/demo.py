"""A procedurally drawn face data set for demos and smoke tests: no download needed.

``DemoFaces`` draws 48x48 grayscale cartoon faces in memory, one of the seven BASIC7
expressions each. The expression changes the features (mouth shape, brow slant, eye
opening, nose wrinkles); every sample also gets random jitter (position, scale, rotation,
brightness, contrast, noise, feature sizes, intensity of the expression, hair) so the
classes are learnable but not trivially separable. Generation is deterministic: the same
arguments give identical pixels, and each split draws from its own seed, so ``train`` and
``val`` never share an image.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from pipelines.datasets.base import Example, FerDataset
from pipelines.labels import BASIC7

# Split name -> (index mixed into the seed, default images per class).
_SPLITS: dict[str, tuple[int, int]] = {"train": (0, 200), "val": (1, 50), "test": (2, 50)}
_DEFAULT_SEED = 20130101  # Any fixed number: makes seed=None deterministic too.
_SUPERSAMPLE = 4  # Draw at 4x and downscale, for anti-aliased features.


class DemoFaces(FerDataset):
    """Synthetic cartoon faces with the 7 basic expressions, generated in memory.

    Examples interleave the classes (``target = index % 7``), so every prefix of the
    data set is nearly balanced. ``meta`` holds ``path`` (``"demo:{split}:{index}"``),
    ``split``, ``index`` and ``intensity`` (expression strength in ``[0.35, 1]``).

    Args:
        data_dir: Ignored; accepted for the common adapter signature.
        split: ``"train"`` (200 per class by default), ``"val"`` or ``"test"`` (50 each).
        on_error: ``"skip"`` or ``"raise"``; nothing can fail here, kept for the contract.
        num_per_class: Images per class; ``None`` uses the split's default.
        image_size: Side of the square output image in pixels (at least 16).
        seed: Non-negative int base seed; ``None`` uses a fixed default. Splits mix
            their own index into it, so they differ for any seed.

    Raises:
        ValueError: unknown split, or a non-positive size/count, or a negative seed.
    """

    name = "demo"
    class_names = BASIC7

    def __init__(
        self,
        data_dir: str | None = None,
        split: str = "train",
        on_error: str = "skip",
        num_per_class: int | None = None,
        image_size: int = 48,
        seed: int | None = None,
    ):
        if split not in _SPLITS:
            raise ValueError(f"DemoFaces split must be one of {sorted(_SPLITS)}. Received: split={split!r}")
        super().__init__("" if data_dir is None else data_dir, split, on_error)
        split_index, default_count = _SPLITS[split]
        if num_per_class is None:
            num_per_class = default_count
        if int(num_per_class) < 1:
            raise ValueError(f"num_per_class must be >= 1. Received: num_per_class={num_per_class}")
        if int(image_size) < 16:
            raise ValueError(f"image_size must be >= 16. Received: image_size={image_size}")
        if seed is not None and int(seed) < 0:
            raise ValueError(f"seed must be a non-negative int or None. Received: seed={seed}")
        self.num_per_class = int(num_per_class)
        self.image_size = int(image_size)
        self.seed = _DEFAULT_SEED if seed is None else int(seed)
        self._split_index = split_index

    def __len__(self) -> int:
        return self.num_per_class * len(self.class_names)

    def _iterate(self) -> Iterator[Example]:
        num_classes = len(self.class_names)
        for index in range(len(self)):
            target = index % num_classes
            rng = np.random.default_rng([self.seed, self._split_index, index])
            image, intensity = render_face(self.class_names[target], rng, self.image_size)
            meta = {
                "path": f"demo:{self.split}:{index}",
                "split": self.split,
                "index": index,
                "intensity": intensity,
            }
            yield Example(image=image, target=target, meta=meta)

    def __repr__(self) -> str:
        return (
            f"DemoFaces(split={self.split!r}, num_per_class={self.num_per_class}, "
            f"image_size={self.image_size}, seed={self.seed})"
        )


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _parabola(cx: float, cy: float, half_width: float, depth: float, n: int = 15) -> np.ndarray:
    """Points of ``y = cy + depth * (1 - (x/hw)^2)``: positive depth is a smile (y down)."""
    x = np.linspace(-1.0, 1.0, n)
    return np.stack([cx + half_width * x, cy + depth * (1.0 - x**2)], axis=1)


def render_face(expression: str, rng: np.random.Generator, image_size: int = 48) -> tuple[np.ndarray, float]:
    """Draw one face with ``expression``, using ``rng`` for all jitter.

    Args:
        expression: A BASIC7 class name.
        rng: The sample's generator; the same generator state gives the same pixels.
        image_size: Output side in pixels.

    Returns:
        ``(image, intensity)``: ``uint8`` ``[image_size, image_size, 1]`` and the drawn
        expression strength.
    """
    if expression not in BASIC7:
        raise ValueError(f"Unknown expression {expression!r}. Expected one of {BASIC7}.")
    u = rng.uniform
    size = image_size * _SUPERSAMPLE
    k = float(u(0.5, 1.0))  # expression intensity

    # Pose: face-unit coordinates (head half-width 1, y down) -> canvas pixels.
    radius = size * 0.31 * u(0.88, 1.06)
    angle = math.radians(u(-6.0, 6.0))
    cx = size / 2 + u(-0.04, 0.04) * size
    cy = size / 2 + u(-0.04, 0.04) * size
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) * radius
    aspect = u(0.9, 1.1)  # head wider or narrower

    def tf(points: np.ndarray) -> list[tuple[float, float]]:
        pts = np.asarray(points, dtype=np.float64) @ rot.T + (cx, cy)
        return [tuple(p) for p in pts]

    def px(width_units: float) -> int:
        return max(1, int(round(width_units * radius)))

    background = int(u(20, 235))
    skin = int(u(135, 215))
    if abs(skin - background) < 35:
        background = skin - 70 if u() < 0.5 else min(255, skin + 50)
    ink = int(max(0, skin - u(105, 135)))

    img = Image.new("L", (size, size), background)
    draw = ImageDraw.Draw(img)
    draw.polygon(tf(_ellipse(0.0, 0.0, 1.0 * aspect, 1.3, n=48)), fill=skin)
    if u() < 0.5:  # hair cap
        hair = _ellipse(0.0, -0.55, 1.02 * aspect, 0.85, n=40)
        hair = hair[hair[:, 1] < -0.75 + u(-0.1, 0.1)]
        if len(hair) >= 3:
            draw.polygon(tf(hair), fill=int(u(10, 90)))

    # Neutral feature geometry, jittered per sample.
    eye_x = u(0.33, 0.43)
    eye_y = u(-0.22, -0.08)
    eye_rx = u(0.13, 0.18)
    eye_ry = u(0.065, 0.09)
    brow_y = eye_y - u(0.2, 0.26)
    brow_in, brow_out = u(0.1, 0.18), eye_x + u(0.15, 0.24)
    brow_w = u(0.07, 0.1)
    mouth_y = u(0.5, 0.66)
    mouth_w = u(0.3, 0.38)
    lip_w = u(0.06, 0.09)

    # Expression: brow offsets (negative = up), eye opening, mouth shape.
    d_in = d_out = 0.0
    eye_scale = 1.0
    arch = 0.0  # curved brows
    mouth = "line"
    depth = float(rng.normal(0.0, 0.012))
    wrinkles = False
    if expression == "happy":
        depth = 0.07 + 0.12 * k
        eye_scale = 1.0 - 0.3 * k
        mouth = "open_smile" if u() < 0.5 else "line"
        mouth_w *= 1.0 + 0.25 * k
    elif expression == "sad":
        depth = -(0.04 + 0.09 * k)
        d_in, d_out = -0.13 * k, 0.04 * k
        eye_scale = 1.0 - 0.2 * k
        mouth_w *= 0.85
    elif expression == "surprise":
        d_in = d_out = -(0.06 + 0.1 * k)
        arch = 0.05 + 0.05 * k
        eye_scale = 1.35 + 0.4 * k
        mouth = "round"
    elif expression == "fear":
        d_in, d_out = -(0.08 + 0.12 * k), -(0.02 + 0.04 * k)
        eye_scale = 1.3 + 0.4 * k
        mouth = "wide"
    elif expression == "angry":
        d_in, d_out = 0.06 + 0.1 * k, -0.04 * k
        brow_w *= 1.3
        eye_scale = 1.0 - 0.35 * k
        depth = -0.02 * k
        mouth_w *= 1.0 - 0.3 * k
        lip_w *= 1.3
    elif expression == "disgust":
        d_in, d_out = 0.03 + 0.06 * k, 0.0
        eye_scale = 1.0 - 0.3 * k
        mouth = "sneer"
        wrinkles = True

    # Eyes (wide eyes show a white ring around the pupil).
    for side in (-1.0, 1.0):
        ex = side * eye_x
        ry = eye_ry * eye_scale
        if eye_scale > 1.15:
            draw.polygon(tf(_ellipse(ex, eye_y, eye_rx * 1.1, ry, n=24)), fill=min(255, skin + 45))
            draw.polygon(tf(_ellipse(ex, eye_y, eye_rx * 0.45, eye_rx * 0.45, n=16)), fill=ink)
        else:
            draw.polygon(tf(_ellipse(ex, eye_y, eye_rx, max(ry, 0.025), n=24)), fill=ink)

    # Brows: inner end near the nose, outer end above the eye's outer corner.
    for side in (-1.0, 1.0):
        x = np.linspace(brow_in, brow_out, 7)
        t = (x - brow_in) / (brow_out - brow_in)
        y = brow_y + d_in * (1 - t) + d_out * t - arch * np.sin(math.pi * t)
        draw.line(tf(np.stack([side * x, y], axis=1)), fill=ink, width=px(brow_w), joint="curve")

    # Nose (sometimes) and disgust wrinkles across the bridge.
    if u() < 0.6 or wrinkles:
        nose_y = (eye_y + mouth_y) / 2 + 0.08
        nx = u(0.06, 0.1)
        draw.line(tf([(0.0, eye_y + 0.12), (-nx, nose_y), (nx * 0.5, nose_y + 0.03)]), fill=ink, width=px(0.035))
    if wrinkles:
        for j in range(2 + int(u() < 0.5)):
            wy = eye_y + 0.02 + 0.07 * j
            draw.line(tf(_parabola(0.0, wy, 0.13, -0.03, n=7)), fill=ink, width=px(0.03))

    # Mouth.
    if mouth == "line":
        draw.line(tf(_parabola(0.0, mouth_y, mouth_w, depth)), fill=ink, width=px(lip_w), joint="curve")
    elif mouth == "open_smile":
        upper = _parabola(0.0, mouth_y, mouth_w, depth * 0.4)
        lower = _parabola(0.0, mouth_y, mouth_w, depth * 1.6)[::-1]
        draw.polygon(tf(np.concatenate([upper, lower])), fill=ink)
    elif mouth == "round":
        ry = 0.1 + 0.12 * k
        draw.polygon(tf(_ellipse(0.0, mouth_y + 0.02, 0.09 + 0.05 * k, ry, n=24)), fill=ink)
    elif mouth == "wide":
        hw = mouth_w * (1.05 + 0.25 * k)
        upper = _parabola(0.0, mouth_y - 0.02, hw, -0.03)
        lower = _parabola(0.0, mouth_y + 0.04 + 0.06 * k, hw * 0.95, 0.02)[::-1]
        draw.polygon(tf(np.concatenate([upper, lower])), fill=ink)
        teeth_y = mouth_y + 0.01
        draw.line(tf([(-hw * 0.6, teeth_y), (hw * 0.6, teeth_y)]), fill=min(255, skin + 30), width=px(0.03))
    elif mouth == "sneer":
        side = 1.0 if u() < 0.5 else -1.0
        x = np.linspace(-1.0, 1.0, 15)
        raise_ = (0.06 + 0.1 * k) * np.clip(side * x, 0.0, None) ** 1.5
        upper = np.stack([mouth_w * x, mouth_y - 0.02 - raise_], axis=1)
        lower = np.stack([mouth_w * x[::-1], mouth_y + 0.02 + 0.015 * np.cos(x[::-1] * 1.5)], axis=1)
        draw.polygon(tf(np.concatenate([upper, lower])), fill=ink)

    small = img.resize((image_size, image_size), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float32)
    pixels = (pixels - 128.0) * u(0.7, 1.2) + 128.0 + u(-25, 25)  # contrast, brightness
    pixels += rng.normal(0.0, u(3.0, 12.0), size=pixels.shape)
    image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)[:, :, None]
    return image, round(k, 4)
