"""tf.data input pipelines: model input spec, the papers' augmentations, ten-crop testing.

Images arrive as ``uint8 [N, H, W, C]`` arrays of aligned faces at the model's
``source_size`` (see ``fer_spec.InputSpec``); targets are class ids ``[N]`` or
label distributions ``[N, K]``. Every batch is ``(inputs, targets, sample_weights)`` with
``inputs`` a dict keyed by the spec's input names (``face`` plus any MrCAR regions).

Augmentation (train only, never inside a model, so export and serving never run it):
random crop of ``image_size`` from ``source_size`` (random translation), horizontal flip,
small rotation and scale — all in one batched affine warp. Each epoch's order and
augmentation are a function of ``(seed, epoch)`` only, so a resumed run sees exactly the
data an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from fer_spec import InputSpec
from pipelines.regions import crop_regions


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Train-time geometric augmentation.

    Args:
        flip: bool. Random horizontal flip with probability 0.5.
        max_rotation: float. Maximum absolute rotation in degrees.
        scale_range: (float, float). Range of the random zoom factor.
        translate: bool. Random crop position (else the centre crop, still rotated/scaled).
        erase_probability: float. Random erasing (Z. Zhong et al., "Random Erasing Data
            Augmentation", AAAI 2020; recipe A of the FER2013 recipes uses p = 0.5): with this
            probability per image, a rectangle of ``erase_area`` of the crop (aspect ratio in
            [0.3, 3.3]) at a random place is set to 0.
        erase_area: (float, float). Range of the erased fraction of the crop.
    """

    flip: bool = True
    max_rotation: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    translate: bool = True
    erase_probability: float = 0.0
    erase_area: tuple[float, float] = (0.02, 0.25)


NO_AUGMENTATION = Augmentation(flip=False, max_rotation=0.0, scale_range=(1.0, 1.0), translate=False)


def normalize(images: tf.Tensor, normalization: str = "unit") -> tf.Tensor:
    """0..255 pixels to model inputs as ``InputSpec.normalization`` names it (``"unit"``:
    float32 in [0, 1]); the one normalisation shared by training and serving."""
    if normalization != "unit":
        raise ValueError(f"Unknown normalization {normalization!r}. Known: unit")
    return tf.cast(images, tf.float32) / 255.0


def center_crop(images: tf.Tensor, crop_size: tuple[int, int]) -> tf.Tensor:
    """Centre crop of a batch ``[N, H, W, C]`` (same offsets as the augmentation's centre)."""
    height, width = images.shape[1], images.shape[2]
    top, left = (height - crop_size[0]) // 2, (width - crop_size[1]) // 2
    return images[:, top : top + crop_size[0], left : left + crop_size[1], :]


def ten_crop(images: tf.Tensor, crop_size: tuple[int, int]) -> tf.Tensor:
    """Ten crops per image: 4 corners + centre, each also mirrored -> ``[N, 10, h, w, C]``."""
    height, width = images.shape[1], images.shape[2]
    ch, cw = crop_size
    corners = [(0, 0), (0, width - cw), (height - ch, 0), (height - ch, width - cw)]
    crops = [images[:, t : t + ch, l : l + cw, :] for t, l in corners]
    crops.append(center_crop(images, crop_size))
    crops += [tf.reverse(c, axis=[2]) for c in crops]
    return tf.stack(crops, axis=1)


def random_affine_crop(images: tf.Tensor, crop_size: tuple[int, int], augmentation: Augmentation, seed: tf.Tensor) -> tf.Tensor:
    """Random crop + flip + rotation + scale of a batch in one bilinear warp.

    Output pixel ``p`` (centred coordinates) samples input ``c_in + t + R(theta) S(1/s) F p``,
    with ``t`` a random offset inside the crop margin. With no augmentation it is exactly
    ``center_crop``.
    """
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    ch, cw = crop_size
    seeds = tf.random.experimental.stateless_split(seed, 5)
    theta = tf.random.stateless_uniform([batch], seeds[0], -1.0, 1.0) * (augmentation.max_rotation * math.pi / 180.0)
    scale = tf.random.stateless_uniform([batch], seeds[1], *augmentation.scale_range)
    flip = tf.ones([batch])
    if augmentation.flip:
        flip = tf.where(tf.random.stateless_uniform([batch], seeds[2]) < 0.5, -1.0, 1.0)
    max_dy, max_dx = (height - ch) / 2.0, (width - cw) / 2.0
    dy = dx = tf.zeros([batch])
    if augmentation.translate:
        dy = tf.round(tf.random.stateless_uniform([batch], seeds[3], -max_dy, max_dy))
        dx = tf.round(tf.random.stateless_uniform([batch], seeds[4], -max_dx, max_dx))
    cos, sin = tf.cos(theta) / scale, tf.sin(theta) / scale
    # x_in = a0 x + a1 y + a2 ; y_in = b0 x + b1 y + b2 (x, y output pixel indices)
    ox, oy = (cw - 1) / 2.0, (ch - 1) / 2.0
    ix, iy = (width - 1) / 2.0 + dx, (height - 1) / 2.0 + dy
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    a2 = ix - a0 * ox - a1 * oy
    b2 = iy - b0 * ox - b1 * oy
    zeros = tf.zeros([batch])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=transforms,
        output_shape=tf.constant([ch, cw], tf.int32),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return warped


def random_erase(images: tf.Tensor, augmentation: Augmentation, seed: tf.Tensor) -> tf.Tensor:
    """Random erasing of a batch ``[N, h, w, C]`` (see ``Augmentation``), stateless in ``seed``."""
    if not augmentation.erase_probability:
        return images
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    seeds = tf.random.experimental.stateless_split(seed, 5)
    area = tf.random.stateless_uniform([batch], seeds[0], *augmentation.erase_area) * height * width
    log_ratio = tf.random.stateless_uniform([batch], seeds[1], math.log(0.3), math.log(1 / 0.3))
    eh = tf.minimum(tf.round(tf.sqrt(area * tf.exp(log_ratio))), height)
    ew = tf.minimum(tf.round(tf.sqrt(area / tf.exp(log_ratio))), width)
    top = tf.floor(tf.random.stateless_uniform([batch], seeds[2]) * (height - eh + 1))
    left = tf.floor(tf.random.stateless_uniform([batch], seeds[3]) * (width - ew + 1))
    erase = tf.random.stateless_uniform([batch], seeds[4]) < augmentation.erase_probability
    rows = tf.range(height, dtype=tf.float32)[None, :, None]
    cols = tf.range(width, dtype=tf.float32)[None, None, :]
    inside = (rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None]) & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None])
    mask = inside & erase[:, None, None]
    return tf.where(mask[..., None], tf.zeros_like(images), images)


def model_inputs(faces: tf.Tensor, spec: InputSpec) -> dict[str, tf.Tensor]:
    """Model inputs from normalised face crops ``[N, h, w, C]``: ``face`` plus region crops."""
    inputs = {"face": faces}
    if spec.regions:
        regions = crop_regions(faces, dict(spec.regions))
        inputs.update({name: regions[name] for name in spec.regions})
    return inputs


def eval_inputs(images: tf.Tensor, spec: InputSpec) -> dict[str, tf.Tensor]:
    """Model inputs from aligned faces ``[N, *source_size, C]`` (uint8 or float 0..255):
    normalise, centre crop, region crops. The one inference preprocessing, shared by
    evaluation and the exported serving signatures."""
    return model_inputs(center_crop(normalize(images, spec.normalization), spec.image_size), spec)


def ten_crop_inputs(images: tf.Tensor, spec: InputSpec) -> dict[str, tf.Tensor]:
    """Model inputs of the ten crops of each aligned face ``[N, *source_size, C]``:
    ``10 * N`` rows, image-major; average the scores with ``reshape(-1, 10, K).mean(1)``."""
    crops = ten_crop(normalize(images, spec.normalization), spec.image_size)
    return model_inputs(tf.reshape(crops, [-1, *spec.image_size, spec.channels]), spec)


def class_weights(targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``N / (K * n_k)`` (classes absent from ``targets`` get 0)."""
    labels = targets if targets.ndim == 1 else targets.argmax(axis=1)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def epoch_order(targets: np.ndarray, seed: int, epoch: int, oversample: bool) -> np.ndarray:
    """Example order of one epoch: a permutation, or a class-balanced resample with replacement."""
    rng = np.random.default_rng([seed, epoch])
    if not oversample:
        return rng.permutation(len(targets))
    labels = targets if targets.ndim == 1 else targets.argmax(axis=1)
    counts = np.bincount(labels)
    probabilities = 1.0 / counts[labels]
    return rng.choice(len(labels), size=len(labels), replace=True, p=probabilities / probabilities.sum())


def draw_labels(distributions: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """One class id per row drawn from its distribution ``[N, K]``, a function of
    ``(seed, epoch)`` only (FER+ probabilistic label drawing, Barsoum et al. 2016, Sec. 3.3:
    a new draw every epoch)."""
    rng = np.random.default_rng([seed, epoch, 1])
    cumulative = np.cumsum(distributions / distributions.sum(axis=1, keepdims=True), axis=1)
    labels = (cumulative < rng.random(len(distributions))[:, None]).sum(axis=1)
    return np.minimum(labels, distributions.shape[1] - 1).astype(np.int32)


def train_dataset(
    images: np.ndarray,
    targets: np.ndarray,
    spec: InputSpec,
    batch_size: int,
    epoch: int = 0,
    seed: int = 0,
    augmentation: Augmentation = Augmentation(),
    oversample: bool = False,
    weights: np.ndarray | None = None,
    sample_labels: bool = False,
) -> tf.data.Dataset:
    """One epoch of training batches ``(inputs, targets, sample_weights)``; drops the last partial batch.

    Args:
        weights: optional per-class weights (see ``class_weights``) -> per-example weights.
        sample_labels: targets are distributions ``[N, K]`` to draw this epoch's class ids
            from (``draw_labels``); the batches then carry the drawn ids.
    """
    _check_arrays(images, targets, spec)
    if sample_labels:
        targets = draw_labels(targets, seed, epoch)
    order = epoch_order(targets, seed, epoch, oversample)
    labels = targets if targets.ndim == 1 else targets.argmax(axis=1)
    example_weights = np.ones(len(targets), np.float32) if weights is None else weights[labels]
    ds = tf.data.Dataset.from_tensor_slices((images[order], targets[order], example_weights[order]))
    ds = ds.batch(batch_size, drop_remainder=True).enumerate()

    def augment(step, batch):
        batch_images, batch_targets, batch_weights = batch
        faces = random_affine_crop(batch_images, spec.image_size, augmentation, tf.stack([tf.cast(seed, tf.int64) * 100003 + epoch, step]))
        faces = normalize(faces, spec.normalization)
        faces = random_erase(faces, augmentation, tf.stack([tf.cast(seed, tf.int64) * 100003 + epoch, step + 7919]))
        return model_inputs(faces, spec), batch_targets, batch_weights

    return ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def _check_arrays(images: np.ndarray, targets: np.ndarray, spec: InputSpec) -> None:
    expected = (*spec.source_size, spec.channels)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"images must be [N, {expected[0]}, {expected[1]}, {expected[2]}] for this model. Received: {images.shape}")
    if len(images) != len(targets):
        raise ValueError(f"images and targets differ in length: {len(images)} != {len(targets)}")
    if len(images) == 0:
        raise ValueError("The data set is empty: no images to build a pipeline from.")
