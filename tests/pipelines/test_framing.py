"""FER2013 framing of detected faces: the frame geometry, the antialiased crop, unclipped
boxes from a bordered detection."""

import numpy as np
import pytest
from PIL import Image

from fer_spec import InputSpec
from fer_spec.geometry import FER2013_BOX_FRAME, frame_from_box
from pipelines.faces import FaceDetector, crop_frame


def _box_of_frame(left, top, side, frame=FER2013_BOX_FRAME):
    (cx, cy), (w, h) = frame["center"], frame["size"]
    return (left + cx * side - w * side / 2, top + cy * side - h * side / 2, w * side, h * side)


def test_frame_from_box_inverts_the_frame_geometry():
    left, top, side = frame_from_box(_box_of_frame(10.0, 20.0, 100.0))
    assert (left, top, side) == pytest.approx((10.0, 20.0, 100.0))
    # A taller box than the frame's typical one gives a larger frame (mean of both sides).
    assert frame_from_box((0, 0, 79, 203))[2] == pytest.approx(0.5 * (100 + 200))


def test_crop_of_an_upscaled_fer_image_gives_back_the_image(fer_val_subset):
    image = fer_val_subset.images[0]
    big = np.asarray(Image.fromarray(image.squeeze()).resize((192, 192), Image.BICUBIC))[..., None]
    crop = crop_frame(big, _box_of_frame(0.0, 0.0, 192.0), 48)
    assert crop.shape == (48, 48, 1) and crop.dtype == np.uint8
    assert np.abs(crop.astype(float) - image.astype(float)).mean() < 4.0  # the antialiasing filter blurs a little
    assert np.corrcoef(crop.ravel(), image.ravel())[0, 1] > 0.98


def test_crop_is_antialiased_and_fills_outside_with_the_edge():
    checker = (np.indices((480, 480)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard
    crop = crop_frame(checker, _box_of_frame(0.0, 0.0, 480.0), 48)
    assert abs(crop.mean() - 127.5) < 3 and crop.std() < 5  # no aliasing: an even grey
    rgb = np.zeros((100, 100, 3), np.uint8)
    rgb[:, :50] = 200
    out = crop_frame(rgb, _box_of_frame(-100.0, 0.0, 200.0), 20)  # half the frame left of the image
    assert out.shape == (20, 20, 3) and out[:, :5].min() == 200  # edge pixels repeated


def test_bordered_detection_gives_unclipped_boxes_in_photo_coordinates(faces_dir):
    photo = np.asarray(Image.open(faces_dir / "sad_woman.png").convert("RGB"))
    plain = FaceDetector(select="confident").detect_one(photo)[0]
    bordered = FaceDetector(select="confident", border=0.25).detect_one(photo)[0]
    assert plain.box[1] == 0.0  # the face reaches the top edge: its box is clipped there
    assert bordered.box[1] < -5.0 and bordered.box[3] > plain.box[3] + 5.0
    # The same face: the landmarks agree within a few pixels once shifted back.
    assert np.abs(bordered.landmarks - plain.landmarks).max() < 6.0
    with pytest.raises(ValueError, match="border"):
        FaceDetector(border=2.0)


def test_framing_is_part_of_the_input_spec():
    assert InputSpec().framing == "aligned"
    assert InputSpec.from_dict(InputSpec(framing="fer2013_box").to_dict()).framing == "fer2013_box"
    with pytest.raises(ValueError, match="framing"):
        InputSpec(framing="tight")
