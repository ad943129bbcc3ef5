"""Region crops of aligned faces (global face, eyes, mouth) in TensorFlow, graph-safe.

The geometry (template, ``REGION_BOXES``) is ``fer_spec.geometry``'s; this module only
samples it, with gathers so exported graphs convert to TFLite builtin ops.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from fer_spec.geometry import REGION_BOXES


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
