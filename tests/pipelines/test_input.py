"""tf.data input: crops against NumPy, determinism per (seed, epoch), sampling, errors."""

import numpy as np
import pytest
import tensorflow as tf

from fer_spec import InputSpec
from pipelines import input as input_pipeline

SPEC = InputSpec(image_size=(44, 44), source_size=(48, 48), channels=1)


def _images(n=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 48, 48, 1), dtype=np.uint8)


def test_center_crop_matches_numpy_slice():
    images = _images()
    out = input_pipeline.center_crop(tf.constant(images), (44, 44)).numpy()
    np.testing.assert_array_equal(out, images[:, 2:46, 2:46, :])


def test_affine_crop_without_augmentation_is_the_center_crop():
    images = _images()
    out = input_pipeline.random_affine_crop(tf.constant(images), (44, 44), input_pipeline.NO_AUGMENTATION, tf.constant([1, 2], tf.int64))
    np.testing.assert_allclose(out.numpy(), images[:, 2:46, 2:46, :].astype(np.float32), atol=1e-3)


def test_affine_crop_flip_only_gives_mirror_or_identity():
    images = _images(16)
    aug = input_pipeline.Augmentation(flip=True, max_rotation=0.0, scale_range=(1.0, 1.0), translate=False)
    out = input_pipeline.random_affine_crop(tf.constant(images), (44, 44), aug, tf.constant([3, 4], tf.int64)).numpy()
    centre = images[:, 2:46, 2:46, :].astype(np.float32)
    flipped = 0
    for o, c in zip(out, centre):
        if np.allclose(o, c, atol=1e-3):
            continue
        np.testing.assert_allclose(o, c[:, ::-1, :], atol=1e-3)
        flipped += 1
    assert 0 < flipped < 16


def test_ten_crop_matches_numpy_reference():
    images = _images(3).astype(np.float32)
    out = input_pipeline.ten_crop(tf.constant(images), (44, 44)).numpy()
    assert out.shape == (3, 10, 44, 44, 1)
    starts = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
    expected = [images[:, t : t + 44, l : l + 44] for t, l in starts]
    expected += [e[:, :, ::-1] for e in expected]
    np.testing.assert_array_equal(out, np.stack(expected, axis=1))


def _first_batch(epoch, seed=0):
    images, targets = _images(64), np.arange(64) % 7
    ds = input_pipeline.train_dataset(images, targets, SPEC, 16, epoch=epoch, seed=seed)
    inputs, batch_targets, weights = next(iter(ds))
    return inputs["face"].numpy(), batch_targets.numpy(), weights.numpy()


def test_train_dataset_is_a_function_of_seed_and_epoch():
    a, ta, wa = _first_batch(epoch=1)
    b, tb, _ = _first_batch(epoch=1)
    c, tc, _ = _first_batch(epoch=2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ta, tb)
    assert not np.array_equal(a, c)
    assert a.shape == (16, 44, 44, 1) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(wa, np.ones(16))


def test_oversampling_balances_classes():
    targets = np.array([0] * 900 + [1] * 90 + [2] * 10)
    order = input_pipeline.epoch_order(targets, seed=0, epoch=0, oversample=True)
    counts = np.bincount(targets[order], minlength=3)
    assert counts.min() > 250, counts


def test_class_weights_inverse_frequency():
    weights = input_pipeline.class_weights(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(weights, [4 / (3 * 3), 4 / (3 * 1), 0.0])


def test_ten_crop_rows_are_image_major():
    images = _images(4)
    faces = input_pipeline.ten_crop_inputs(tf.constant(images[:2]), SPEC)["face"].numpy()
    assert faces.shape == (20, 44, 44, 1)
    np.testing.assert_allclose(faces[4], images[0, 2:46, 2:46] / 255.0, atol=1e-6)  # centre of image 0
    np.testing.assert_allclose(faces[14], images[1, 2:46, 2:46] / 255.0, atol=1e-6)  # centre of image 1


def test_bad_arrays_are_rejected():
    with pytest.raises(ValueError, match=r"\[N, 48, 48, 1\]"):
        input_pipeline.train_dataset(np.zeros((4, 40, 40, 1), np.uint8), np.zeros(4, np.int32), SPEC, 2)
    with pytest.raises(ValueError, match="empty"):
        input_pipeline.train_dataset(np.zeros((0, 48, 48, 1), np.uint8), np.zeros(0, np.int32), SPEC, 2)
    with pytest.raises(ValueError, match="differ in length"):
        input_pipeline.train_dataset(np.zeros((3, 48, 48, 1), np.uint8), np.zeros(2, np.int32), SPEC, 2)


def test_random_erasing_zeroes_one_rectangle_of_the_chosen_area():
    faces = tf.ones((64, 44, 44, 1))
    always = input_pipeline.Augmentation(erase_probability=1.0, erase_area=(0.05, 0.2))
    erased = input_pipeline.random_erase(faces, always, tf.constant([3, 4], tf.int64)).numpy()
    zero = erased[..., 0] == 0
    fractions = zero.mean(axis=(1, 2))
    assert np.all(fractions > 0.03) and np.all(fractions < 0.22), fractions
    for mask in zero:  # one axis-aligned rectangle: its bounding box is all zero
        rows, cols = np.nonzero(mask)
        assert mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    np.testing.assert_array_equal(erased, input_pipeline.random_erase(faces, always, tf.constant([3, 4], tf.int64)).numpy())
    never = input_pipeline.Augmentation(erase_probability=0.0)
    np.testing.assert_array_equal(input_pipeline.random_erase(faces, never, tf.constant([3, 4], tf.int64)).numpy(), faces.numpy())
    half = input_pipeline.random_erase(faces, input_pipeline.Augmentation(erase_probability=0.5), tf.constant([5, 6], tf.int64)).numpy()
    assert 16 < int((half == 0).any(axis=(1, 2, 3)).sum()) < 48
