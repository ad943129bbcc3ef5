"""Canonical template, region boxes and the TF region crop used by tf.data and serving."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fer_spec import geometry
from pipelines import regions


def test_template_is_mtcnn_ordered_inside_unit_square_with_margin():
    t = geometry.TEMPLATE_5
    assert t.shape == (5, 2) and t.dtype == np.float32
    left_eye, right_eye, nose, mouth_left, mouth_right = t
    assert left_eye[0] < nose[0] < right_eye[0]
    assert mouth_left[0] < nose[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    # Margin around the landmarks (brows/forehead above, chin below).
    assert t[:, 1].min() > 0.3 and t[:, 1].max() < 0.85
    assert t[:, 0].min() > 0.25 and t[:, 0].max() < 0.75
    # Close to FER2013's framing (median MTCNN landmarks of FER2013 training images).
    fer_median = np.array([[0.31, 0.38], [0.69, 0.38], [0.50, 0.59], [0.34, 0.78], [0.67, 0.78]])
    assert np.abs(t - fer_median).max() < 0.03


def test_template_points_scale_to_pixel_centres():
    np.testing.assert_allclose(geometry.template_points(112), geometry.TEMPLATE_5 * 111, rtol=1e-6)
    np.testing.assert_allclose(geometry.template_points((48, 64))[:, 0], geometry.TEMPLATE_5[:, 0] * 63, rtol=1e-6)


@pytest.mark.parametrize("region", ["eyes", "mouth"])
def test_region_boxes_contain_their_landmarks_with_margin(region):
    y0, x0, y1, x1 = geometry.REGION_BOXES[region]
    assert 0.0 <= y0 < y1 <= 1.0 and 0.0 <= x0 < x1 <= 1.0
    for i in geometry.REGION_LANDMARKS[region]:
        x, y = geometry.TEMPLATE_5[i]
        assert x0 + 0.1 <= x <= x1 - 0.1
        assert y0 + 0.1 <= y <= y1 - 0.1 or (region == "mouth" and y0 + 0.1 <= y <= y1)


def test_crop_regions_shapes_and_dtype_for_uint8_and_float():
    faces = np.random.default_rng(0).integers(0, 256, size=(3, 48, 48, 1), dtype=np.uint8)
    sizes = {"face": (44, 44), "eyes": (20, 40), "mouth": (24, 32)}
    for batch in (faces, faces.astype(np.float16), tf.constant(faces, tf.float64)):
        out = regions.crop_regions(batch, sizes)
        assert set(out) == set(sizes)
        for name, (h, w) in sizes.items():
            assert out[name].dtype == tf.float32
            assert tuple(out[name].shape) == (3, h, w, 1)
    # The whole-face crop at the input size is the input itself.
    same = regions.crop_regions(faces, {"face": (48, 48)})["face"].numpy()
    np.testing.assert_allclose(same, faces.astype(np.float32), atol=1e-3)


def test_crop_regions_equals_numpy_slice_for_pixel_aligned_box():
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 256, size=(2, 48, 48, 3), dtype=np.uint8)
    # Rows 10..25, cols 6..41: normalised by (size - 1), sampled at exactly those pixel centres.
    r0, r1, c0, c1 = 10, 25, 6, 41
    box = (r0 / 47, c0 / 47, r1 / 47, c1 / 47)
    out = regions.crop_regions(faces, {"eyes": (r1 - r0 + 1, c1 - c0 + 1)}, boxes={"eyes": box})["eyes"]
    np.testing.assert_allclose(out.numpy(), faces[:, r0 : r1 + 1, c0 : c1 + 1].astype(np.float32), atol=1e-3)
    # And the real eye box at 48 px is the slice of its rounded pixel box, up to bilinear blending.
    y0, x0, y1, x1 = (int(round(v)) for v in geometry.box_to_pixels(geometry.REGION_BOXES["eyes"], 48))
    smooth = np.tile(np.linspace(0, 255, 48, dtype=np.float32)[None, :, None, None], (1, 1, 48, 1)).transpose(0, 2, 1, 3)
    eyes = regions.crop_regions(smooth, {"eyes": (y1 - y0 + 1, x1 - x0 + 1)})["eyes"].numpy()
    np.testing.assert_allclose(eyes, smooth[:, y0 : y1 + 1, x0 : x1 + 1], atol=255 / 47)


def test_crop_regions_in_graph_mode_with_unknown_batch():
    sizes = {"face": (44, 44), "eyes": (44, 44), "mouth": (44, 44)}

    @tf.function(input_signature=[tf.TensorSpec([None, 48, 48, 1], tf.uint8)])
    def serve(faces):
        return regions.crop_regions(faces, sizes)

    concrete = serve.get_concrete_function()
    for tensor in concrete.structured_outputs.values():
        assert tensor.shape.as_list() == [None, 44, 44, 1]
    graph_ops = {op.type for op in concrete.graph.get_operations()}
    # Gathers, not CropAndResize: that op has no TFLite builtin and would force Flex ops.
    assert "GatherV2" in graph_ops and "CropAndResize" not in graph_ops
    assert "PyFunc" not in graph_ops and "EagerPyFunc" not in graph_ops
    for n in (1, 5):
        batch = tf.random.uniform([n, 48, 48, 1], 0, 255, dtype=tf.int32)
        out = serve(tf.cast(batch, tf.uint8))
        eager = regions.crop_regions(tf.cast(batch, tf.uint8), sizes)
        for name in sizes:
            assert out[name].shape[0] == n
            np.testing.assert_allclose(out[name].numpy(), eager[name].numpy())

    # Also inside tf.data (the input pipeline) with a partial last batch.
    ds = tf.data.Dataset.from_tensor_slices(tf.zeros([7, 48, 48, 1], tf.uint8)).batch(4).map(
        lambda f: regions.crop_regions(f, sizes)
    )
    assert [b["mouth"].shape[0] for b in ds] == [4, 3]


def test_crop_regions_rejects_unknown_region_and_unbatched_input():
    with pytest.raises(ValueError, match="Unknown region"):
        regions.crop_regions(np.zeros((1, 48, 48, 1)), {"nose": (10, 10)})
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        regions.crop_regions(np.zeros((48, 48, 1)), {"face": (10, 10)})


@pytest.mark.parametrize("size", [(20, 44), (26, 44), (1, 1), (44, 98)])
def test_crop_regions_equals_tf_crop_and_resize(size):
    """The gather-based sampling reproduces CropAndResize (which TFLite cannot run) exactly."""
    faces = np.random.default_rng(0).uniform(0, 255, size=(3, 48, 48, 1)).astype(np.float32)
    for name, box in geometry.REGION_BOXES.items():
        ours = regions.crop_regions(faces, {name: size})[name].numpy()
        reference = tf.image.crop_and_resize(faces, [box] * 3, [0, 1, 2], size, method="bilinear").numpy()
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-3)
