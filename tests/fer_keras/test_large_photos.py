"""Large photos: MTCNN sees a bounded working image, faces are framed at the model's
resolution, and the answer is the one the original photo gets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fer_keras import recognizer as recognizer_module
from fer_keras.recognizer import Recognizer


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer("baseline-fer2013")


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


@pytest.mark.parametrize("scale, canvas, reads", [(10, 4000, 1), (1, 6000, 2)], ids=["upscaled-4000", "small-face-in-6000"])
def test_a_large_photo_gets_the_face_of_the_original(recognizer, faces_dir, tmp_path, monkeypatch, scale, canvas, reads):
    """Upscaled 10x into 4000x4000, the face is framed from the 1280-pixel working image;
    at 1x in 6000x6000 it is ~42 px there (< the model's 48), so the photo is read a second
    time at the size that holds it at 48 px. Either way: the original's box (scaled) and class."""
    original = recognizer.recognize(faces_dir / "angry_man.png").faces[0]
    photo = Image.open(faces_dir / "angry_man.png").convert("RGB")
    offset = (canvas - photo.width * scale) // 2, (canvas - photo.height * scale) // 2
    large = Image.new("RGB", (canvas, canvas))
    large.paste(photo.resize((photo.width * scale, photo.height * scale), Image.BICUBIC), offset)
    large.save(tmp_path / "large.jpg", quality=95)

    detected, read_sides = [], []
    detect, pixels = recognizer.detector.detect, recognizer_module._Photo.pixels
    monkeypatch.setattr(recognizer.detector, "detect", lambda images: detected.extend(i.shape for i in images) or detect(images))
    monkeypatch.setattr(recognizer_module._Photo, "pixels", lambda self, max_side: read_sides.append(max_side) or pixels(self, max_side))
    result = recognizer.recognize(tmp_path / "large.jpg")

    assert result.size == (canvas, canvas)
    assert detected and max(max(shape[:2]) for shape in detected) <= recognizer.max_detection_side == 1280
    assert len(read_sides) == reads and read_sides[0] == 1280
    if reads == 2:  # read at the size that gives the face's box 48 px, far below the full 6000
        assert 1280 < read_sides[1] < 2000
    (face,) = result.faces
    x, y, w, h = original.box
    assert _iou(face.box, (x * scale + offset[0], y * scale + offset[1], w * scale, h * scale)) > 0.85
    assert face.label == original.label == "angry"
    np.testing.assert_allclose(list(face.probabilities.values()), list(original.probabilities.values()), atol=0.1)


def test_photos_that_fit_the_working_size_are_read_once_at_full_size(recognizer, faces_dir, monkeypatch):
    """Normal photos take exactly the old path: one full-size read, detection on it."""
    read_sides = []
    pixels = recognizer_module._Photo.pixels
    monkeypatch.setattr(recognizer_module._Photo, "pixels", lambda self, max_side: read_sides.append(max_side) or pixels(self, max_side))
    image = recognizer_module.read_photo(faces_dir / "angry_man_large.jpg")
    face = recognizer.recognize(faces_dir / "angry_man_large.jpg").faces[0]
    assert read_sides == [1280]
    assert face.box == tuple(float(v) for v in recognizer.detector.detect_one(image)[0].box)
