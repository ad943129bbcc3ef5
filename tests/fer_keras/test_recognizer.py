"""Recognizer on the real photos of ../shared/faces: faces found, labels, order, no-face, video."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fer_keras.recognizer import PhotoResult, Recognizer, annotate

ONE_FACE = ("angry_man.png", "angry_man_large.jpg", "disgusted_woman.png", "fearful_woman_occluded.png",
            "sad_woman.png", "sad_woman_large.jpg", "surprised_man.png")

# Regression guard: what the shipped baseline-fer2013 (float16 file) says today for the
# clearly expressive faces (top probability > 0.85), computed once with
# Recognizer("baseline-fer2013").recognize(path) and hard-coded. disgusted_woman is read as
# angry (the baseline recalls disgust on 7% of FER2013 val); the two sad photos and the
# occluded fearful face are borderline, so they are not pinned.
EXPECTED_LABELS = {
    "angry_man.png": "angry",
    "angry_man_large.jpg": "angry",
    "disgusted_woman.png": "angry",
    "surprised_man.png": "surprise",
}


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer("baseline-fer2013", min_confidence=0.9)


@pytest.fixture(scope="module")
def photos(recognizer, faces_dir):
    return {p.path.rsplit("/", 1)[-1]: p for p in recognizer.recognize_many(faces_dir, progress=False)}


def test_every_photo_gets_the_expected_number_of_faces(photos):
    assert sorted(photos) == sorted(ONE_FACE + ("anime_not_a_photo.png",))
    for name in ONE_FACE:
        assert len(photos[name].faces) == 1, name
        assert not photos[name].no_face
    assert photos["anime_not_a_photo.png"].no_face and photos["anime_not_a_photo.png"].faces == []


def test_face_result_fields(photos, recognizer):
    face = photos["angry_man.png"].faces[0]
    assert list(face.probabilities) == recognizer.class_names
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert face.label == recognizer.class_names[face.class_id] == max(face.probabilities, key=face.probabilities.get)
    assert face.confidence >= 0.9 and face.landmarks.shape == (5, 2)
    x, y, w, h = face.box
    height, width = photos["angry_man.png"].size
    assert 0 <= x < x + w <= width + 5 and 0 <= y < y + h <= height + 5
    assert photos["angry_man.png"].to_dict()["faces"][0]["label"] == face.label


def test_labels_of_clearly_expressive_faces_are_unchanged(photos):
    assert {name: photos[name].faces[0].label for name in EXPECTED_LABELS} == EXPECTED_LABELS


def test_single_call_matches_batched_call(recognizer, photos, faces_dir):
    single = recognizer.recognize(faces_dir / "surprised_man.png")
    batched = photos["surprised_man.png"].faces[0]
    assert single.path.endswith("surprised_man.png")
    np.testing.assert_allclose(list(single.faces[0].probabilities.values()), list(batched.probabilities.values()), atol=1e-5)


def test_classification_equals_the_evaluation_path(recognizer, fer_val_subset):
    """Aligned faces are scored exactly as fer_keras.evaluate scores them (eval_inputs)."""
    from fer_keras.inference import predict_scores

    images = fer_val_subset.images[:40]
    np.testing.assert_allclose(recognizer.classify_faces(images), predict_scores(recognizer.model, images), atol=1e-5)


def _side_by_side(faces_dir, left, right):
    a, b = Image.open(faces_dir / left).convert("RGB"), Image.open(faces_dir / right).convert("RGB")
    height = max(a.height, b.height)
    a = a.resize((round(a.width * height / a.height), height), Image.BILINEAR)
    b = b.resize((round(b.width * height / b.height), height), Image.BILINEAR)
    canvas = Image.new("RGB", (a.width + b.width, height))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width, 0))
    return np.asarray(canvas)


def test_two_faces_side_by_side_left_to_right(recognizer, photos, faces_dir):
    result = recognizer.recognize(_side_by_side(faces_dir, "angry_man.png", "surprised_man.png"))
    assert result.path is None and len(result.faces) == 2
    assert result.faces[0].box[0] < result.faces[1].box[0]
    assert [f.label for f in result.faces] == [photos["angry_man.png"].faces[0].label, photos["surprised_man.png"].faces[0].label]
    swapped = recognizer.recognize(_side_by_side(faces_dir, "surprised_man.png", "angry_man.png"))
    assert [f.label for f in swapped.faces] == ["surprise", "angry"]


def test_image_without_a_face_is_an_explicit_no_face_result(recognizer):
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    result = recognizer.recognize(gradient)
    assert isinstance(result, PhotoResult) and result.no_face and result.faces == []
    assert result.to_dict()["no_face"] is True


def test_bad_files_error_naming_the_file_or_are_skipped(recognizer, tmp_path, faces_dir):
    from pipelines.images import ImageDecodeError

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError, match="broken.png"):
        recognizer.recognize(bad)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        recognizer.recognize(tmp_path / "missing.jpg")
    many = recognizer.recognize_many([bad, faces_dir / "surprised_man.png"], progress=False)
    assert len(many) == 1 and many[0].faces[0].label == "surprise"
    assert many.skipped[0][0].endswith("broken.png") and "broken.png" in many.skipped[0][1]


def test_grayscale_and_rgba_inputs(recognizer, faces_dir):
    rgb = np.asarray(Image.open(faces_dir / "angry_man.png").convert("RGB"))
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    for image in (gray, rgba):
        assert [f.label for f in recognizer.recognize(image).faces] == ["angry"]


def test_ten_crop_recognizer(recognizer, faces_dir):
    ten = Recognizer(recognizer.model, ten_crop=True, detector=recognizer.detector)
    result = ten.recognize(faces_dir / "surprised_man.png")
    assert [f.label for f in result.faces] == ["surprise"]


def test_rejects_single_face_detector(recognizer):
    from pipelines.faces import FaceDetector

    with pytest.raises(ValueError, match="select='all'"):
        Recognizer(recognizer.model, detector=FaceDetector(select="largest", mtcnn=recognizer.detector.mtcnn))


def test_annotate_draws_on_a_copy(photos, faces_dir):
    from fer_keras.recognizer import read_photo

    image = read_photo(faces_dir / "angry_man.png")
    drawn = np.asarray(annotate(image, photos["angry_man.png"].faces))
    assert drawn.shape == image.shape and (drawn != image).any()


def test_video_per_frame_results(recognizer, faces_dir, tmp_path):
    pytest.importorskip("av")
    from fer_keras.video import write_video

    rgb = np.asarray(Image.open(faces_dir / "angry_man.png").convert("RGB"))
    rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
    blank = np.zeros_like(rgb)
    path = write_video(tmp_path / "clip.mp4", [rgb, rgb, blank, rgb, rgb, rgb], fps=5)
    result = recognizer.recognize_video(path, every_n_frames=2, progress=False)
    assert result.fps == pytest.approx(5.0)
    assert [f.index for f in result.frames] == [0, 2, 4]
    assert [f.timestamp for f in result.frames] == pytest.approx([0.0, 0.4, 0.8])
    assert [len(f.faces) for f in result.frames] == [1, 0, 1]
    assert result.frames[1].no_face
    assert all(f.faces[0].label == "angry" for f in result.frames if f.faces)


def test_missing_pyav_names_the_extra(monkeypatch, tmp_path):
    import sys

    from fer_keras import video

    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r"pip install fer_keras\[video\]"):
        list(video.read_frames(tmp_path / "x.mp4"))


# The same guard for the shipped mrcar-fer2013 (float16 file, calibrated): faces whose top
# class leads the second clearly. The two sad photos are borderline between sad, happy and
# fear and flip with a few pixels of framing (FER2013 box framing since issue 10; the
# framing gap is measured on 838 FER2013 val faces in benchmarks/RESULTS.md), so they and
# the occluded face are not pinned.
EXPECTED_LABELS_MRCAR = {
    "angry_man.png": "angry",
    "angry_man_large.jpg": "angry",
    "disgusted_woman.png": "angry",
    "surprised_man.png": "surprise",
}


@pytest.fixture(scope="module")
def mrcar(recognizer):
    return Recognizer("mrcar-fer2013", min_confidence=0.9, detector=recognizer.detector)


def test_shipped_mrcar_labels_of_clearly_expressive_faces_are_unchanged(mrcar, faces_dir):
    results = {p.path.rsplit("/", 1)[-1]: p for p in mrcar.recognize_many([faces_dir / name for name in EXPECTED_LABELS_MRCAR], progress=False)}
    assert {name: results[name].faces[0].label for name in EXPECTED_LABELS_MRCAR} == EXPECTED_LABELS_MRCAR


def test_mrcar_gets_its_region_inputs(mrcar, faces_dir):
    """face + eyes + mouth built by eval_inputs from the aligned face, as in training."""
    from fer_keras.recognizer import read_photo
    from fer_keras.inference import predict_scores

    assert set(mrcar.spec.regions) == {"eyes", "mouth"} and mrcar.class_names[0] == "angry"
    result = mrcar.recognize(faces_dir / "surprised_man.png")
    assert len(result.faces) == 1 and sum(result.faces[0].probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    image = read_photo(faces_dir / "surprised_man.png")
    aligned = np.stack(mrcar._frame(image, mrcar.detector.detect_one(image)))
    np.testing.assert_allclose(list(result.faces[0].probabilities.values()), predict_scores(mrcar.model, aligned)[0], atol=1e-5)


def test_lazy_top_level_names():
    import fer_keras

    assert fer_keras.Recognizer is Recognizer


def test_faces_are_framed_as_the_models_training_faces(recognizer, faces_dir):
    """FER2013 models declare the FER2013 box framing; the Recognizer crops that frame, not
    the landmark alignment."""
    from fer_keras.recognizer import read_photo
    from pipelines.faces import align_face, crop_frame
    from pipelines.images import to_channels

    assert recognizer.spec.framing == "fer2013_box"
    image = read_photo(faces_dir / "angry_man.png")
    face = recognizer.detector.detect_one(image)[0]
    framed = recognizer._frame(image, [face])[0]
    np.testing.assert_array_equal(framed, crop_frame(to_channels(image, 1), face.box, 48))
    assert np.abs(framed.astype(int) - align_face(to_channels(image, 1), face.landmarks, 48)[0].astype(int)).mean() > 5


def test_frames_read_counts_frames_0_n_2n_below_the_total():
    """The video progress bar's total: 12 frames read whole are 12 (not 13); every 5th: 0, 5, 10."""
    from fer_keras.video import VideoInfo

    info = VideoInfo(fps=6.0, frames=12, size=(188, 166))
    assert [info.frames_read(n) for n in (1, 2, 5, 12, 13)] == [12, 6, 3, 1, 1]
    assert info.frames_read(1, max_frames=4) == 4 and VideoInfo(6.0, 0, (2, 2)).frames_read(3) is None
