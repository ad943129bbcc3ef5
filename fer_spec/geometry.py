"""Canonical aligned-face geometry: the 5-point template, region boxes and region input sizes.

Shared by the data pipelines (alignment, region crops) and the models (MrCAR's region
input sizes); it imports neither, so neither imports the other.

Coordinates are normalised to ``[0, 1]`` of an aligned square face: ``(x, y)`` for points,
``(y0, x0, y1, x1)`` for boxes (the order ``tf.image.crop_and_resize`` takes). As in
``tf.image.crop_and_resize``, ``0`` and ``1`` are the centres of the first and last pixel,
so a point ``p`` sits at pixel ``p * (size - 1)``; :func:`template_points` applies that.

``TEMPLATE_5`` is the ArcFace 5-point template (insightface ``arcface_dst`` for 112x112
crops: 38.2946,51.6963 / 73.5318,51.5014 / 56.0252,71.7366 / 41.5493,92.3655 /
70.7299,92.2041), divided by 112 and then reframed for facial-expression crops: scaled by
1.15 about the centroid of the five points and the centroid moved to ``(0.5, 0.582)``.
The ArcFace framing cuts the chin and wastes room above the brows; the reframed one
matches how FER2013's 48x48 images are framed (median MTCNN landmarks of 97 FER2013
training images detected at confidence >= 0.9: eyes (0.31, 0.38) / (0.69, 0.38), nose
(0.50, 0.59), mouth corners (0.34, 0.78) / (0.67, 0.78)), so an image that is already a
FER-style crop needs no warp and its canonical landmarks (``TEMPLATE_5`` scaled to the
image) are a good guess. Margins left: ~0.37 above the eyes (brows, forehead), ~0.21
below the mouth (chin), ~0.32 beside each eye.

Point order is MTCNN's: left eye, right eye, nose, mouth left, mouth right, where "left"
means the image's left (smaller x), i.e. the subject's right eye.

``REGION_BOXES``: ``eyes`` spans both eyes and the brows (eye landmarks are 0.19 below its
top, 0.17 above its bottom and 0.22 inside each side); ``mouth`` spans both corners with
0.17 to each side and runs to the bottom edge so an open mouth (surprise, fear) and the
chin stay in the crop.
"""

from __future__ import annotations

import numpy as np

LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

_ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
_TEMPLATE_SCALE = 1.15
_TEMPLATE_CENTROID = np.array([0.5, 0.582])


def _reframe(points: np.ndarray) -> np.ndarray:
    normalised = points / 112.0
    centroid = normalised.mean(axis=0)
    return _TEMPLATE_CENTROID + _TEMPLATE_SCALE * (normalised - centroid)


TEMPLATE_5: np.ndarray = _reframe(_ARCFACE_112).astype(np.float32)
TEMPLATE_5.setflags(write=False)

REGION_BOXES: dict[str, tuple[float, float, float, float]] = {
    "face": (0.0, 0.0, 1.0, 1.0),
    "eyes": (0.18, 0.10, 0.54, 0.90),
    "mouth": (0.62, 0.18, 1.0, 0.82),
}

# Landmarks each region box must contain (indices into TEMPLATE_5).
REGION_LANDMARKS: dict[str, tuple[int, ...]] = {"eyes": (0, 1), "mouth": (3, 4)}


def template_points(size: int | tuple[int, int]) -> np.ndarray:
    """``TEMPLATE_5`` in pixel coordinates ``(x, y)`` of a ``size`` (int or ``(h, w)``) image."""
    height, width = (size, size) if isinstance(size, int) else size
    return (TEMPLATE_5 * np.array([width - 1, height - 1], dtype=np.float32)).astype(np.float32)


def box_to_pixels(box: tuple[float, float, float, float], size: int | tuple[int, int]) -> tuple[float, ...]:
    """A normalised ``(y0, x0, y1, x1)`` box in pixel coordinates (pixel centres)."""
    height, width = (size, size) if isinstance(size, int) else size
    y0, x0, y1, x1 = box
    return (y0 * (height - 1), x0 * (width - 1), y1 * (height - 1), x1 * (width - 1))


def region_sizes(image_size: tuple[int, int], names=("eyes", "mouth")) -> dict[str, tuple[int, int]]:
    """Input sizes of region crops: each ``REGION_BOXES`` box resized to the face's width,
    aspect ratio kept (``{"eyes": (20, 44), "mouth": (26, 44)}`` at 44x44)."""
    height, width = image_size
    sizes = {}
    for name in names:
        y0, x0, y1, x1 = REGION_BOXES[name]
        sizes[name] = (int(round(height * (y1 - y0) / (x1 - x0))), int(width))
    return sizes


# How FER2013 frames a face, relative to MTCNN's face box (x, y, w, h): the median box
# centre and size as fractions of the 48x48 frame, measured on the 1,248 of 1,500 FER2013
# training images (seeded subset) where MTCNN (confidence >= 0.9) finds a face after a 4x
# bicubic upscale and a 48-pixel border (so boxes are not clipped by the frame):
# centre (0.493, 0.505), size (0.79, 1.015). FER2013 faces were cropped around a detector's
# box, not aligned on landmarks: framing a photo's face the same way keeps the Recognizer's
# crops like the training images (benchmarks/RESULTS.md, "Framing").
FER2013_BOX_FRAME = {"center": (0.493, 0.505), "size": (0.79, 1.015)}
FRAMINGS = ("aligned", "fer2013_box")


def frame_from_box(box: tuple[float, float, float, float], frame: dict = FER2013_BOX_FRAME) -> tuple[float, float, float]:
    """``(left, top, side)`` of the square frame a face box ``(x, y, w, h)`` sits in, as in
    ``frame`` (the box's centre and size as fractions of the frame; the side is the mean of
    the width- and height-based estimates)."""
    x, y, w, h = box
    side = 0.5 * (w / frame["size"][0] + h / frame["size"][1])
    left = x + w / 2 - frame["center"][0] * side
    top = y + h / 2 - frame["center"][1] * side
    return left, top, side
