"""Canonical aligned-face geometry and the MrCAR region crops (global face, eyes, mouth).

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
import tensorflow as tf

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


def crop_regions(
    faces,
    region_sizes: dict[str, tuple[int, int]],
    boxes: dict[str, tuple[float, float, float, float]] | None = None,
) -> dict[str, tf.Tensor]:
    """Crop and resize the regions of a batch of aligned faces (pure TF, graph-safe).

    Args:
        faces: ``[N, H, W, C]`` tensor of aligned faces, any numeric dtype (uint8 pixel
            values stay on the 0..255 scale; the output is float32 of the same scale).
            ``N`` may be unknown (``None``) in graph mode.
        region_sizes: ``{region: (height, width)}`` for regions in ``boxes``, e.g.
            ``{"face": (44, 44), "eyes": (44, 44), "mouth": (44, 44)}``.
        boxes: region boxes, default ``REGION_BOXES``.

    Returns:
        ``{region: float32 [N, height, width, C]}``, bilinear samples of each box, equal to
        ``tf.image.crop_and_resize`` with these boxes, written with gathers so the exported
        graph converts to TFLite builtin ops.
    """
    boxes = REGION_BOXES if boxes is None else boxes
    unknown = sorted(set(region_sizes) - set(boxes))
    if unknown:
        raise ValueError(f"Unknown region(s) {unknown}. Expected a subset of {sorted(boxes)}.")
    faces = tf.convert_to_tensor(faces)
    if faces.shape.rank != 4:
        raise ValueError(f"crop_regions expects a batch [N, H, W, C]. Received shape {faces.shape}")
    height, width = faces.shape[1], faces.shape[2]
    if height is None or width is None:
        raise ValueError(f"crop_regions needs a static face size. Received shape {faces.shape}")
    faces = tf.cast(faces, tf.float32)
    out = {}
    for name, size in region_sizes.items():
        y0, x0, y1, x1 = boxes[name]
        rows = _bilinear_taps(y0, y1, height, int(size[0]))
        cols = _bilinear_taps(x0, x1, width, int(size[1]))
        out[name] = _lerp_gather(_lerp_gather(faces, rows, axis=1), cols, axis=2)
    return out


def _bilinear_taps(start: float, end: float, length: int, samples: int):
    """Source indices and weights of ``tf.image.crop_and_resize``'s bilinear sampling along
    one axis: sample ``i`` sits at ``start * (length - 1) + i * (end - start) * (length - 1) /
    (samples - 1)`` (the box centre when ``samples == 1``)."""
    if samples > 1:
        positions = start * (length - 1) + np.arange(samples) * (end - start) * (length - 1) / (samples - 1)
    else:
        positions = np.array([0.5 * (start + end) * (length - 1)])
    low = np.floor(positions).astype(np.int32)
    high = np.minimum(np.ceil(positions).astype(np.int32), length - 1)
    return low, high, (positions - low).astype(np.float32)


def _lerp_gather(images: tf.Tensor, taps, axis: int) -> tf.Tensor:
    """Linear interpolation along ``axis`` between two gathers (constant indices): TFLite
    builtins only (GATHER, MUL, ADD), unlike ``CropAndResize``, which needs Flex ops."""
    low, high, weight = taps
    shape = [1, 1, 1, 1]
    shape[axis] = len(weight)
    weight = tf.constant(weight.reshape(shape))
    return tf.gather(images, low, axis=axis) * (1.0 - weight) + tf.gather(images, high, axis=axis) * weight
