"""MTCNN detection on the shared photos, 5-point alignment and the face preprocessor."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fer_spec import geometry
from pipelines import faces

# Faces MTCNN finds at the default min_confidence=0.9 (measured, mtcnn 1.0.0 on CPU) and
# the confidence of the one found. fearful_woman_occluded: the 0.98 face is a false
# positive on the woman's left eye region (box ~81x99 px); her real, hand-occluded face
# scores only ~0.27 with MTCNN's ONet, so it is not found. Kept as a known miss.
PHOTO_FACES = {
    "angry_man.png": (1, 0.9993),
    "angry_man_large.jpg": (1, 0.9952),
    "disgusted_woman.png": (1, 0.9960),
    "fearful_woman_occluded.png": (1, 0.9824),
    "sad_woman.png": (1, 0.9955),
    "sad_woman_large.jpg": (1, 0.9959),
    "surprised_man.png": (1, 0.9827),
}
# The anime drawing's best MTCNN box scores 0.853: below the default 0.9, so by design it
# is "no face" at the default threshold and one face at 0.8.
ANIME = "anime_not_a_photo.png"
ANIME_CONFIDENCE = 0.8533
FRONTAL = ("angry_man.png", "angry_man_large.jpg", "disgusted_woman.png", "surprised_man.png")


def _load(path, mode="RGB"):
    return np.asarray(Image.open(path).convert(mode))


@pytest.fixture(scope="module")
def detector():
    return faces.FaceDetector(min_confidence=0.9, select="all")


@pytest.fixture(scope="module")
def photos(faces_dir):
    return {name: _load(faces_dir / name) for name in [*PHOTO_FACES, ANIME]}


@pytest.fixture(scope="module")
def photo_faces(detector, photos):
    names = list(photos)
    return dict(zip(names, detector.detect([photos[n] for n in names])))


@pytest.fixture(scope="module")
def fer_images(fer2013_dir):
    paths = [sorted((fer2013_dir / "train" / c).glob("*.png"))[:4] for c in ("happy", "surprise", "neutral", "sad")]
    return [_load(p, "L") for group in paths for p in group]


def test_each_real_photo_has_its_measured_faces(photo_faces, photos):
    for name, (count, confidence) in PHOTO_FACES.items():
        found = photo_faces[name]
        assert len(found) == count, (name, [f.confidence for f in found])
        face = found[0]
        assert face.confidence == pytest.approx(confidence, abs=0.005)
        assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
        x, y, w, h = face.box
        height, width = photos[name].shape[:2]
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height and w > 20 and h > 20
        left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < max(mouth_left[1], mouth_right[1])
        # Eyes inside the box, eye distance a plausible share of the box width.
        for px, py in (left_eye, right_eye):
            assert x <= px <= x + w and y <= py <= y + h
        assert 0.25 < (right_eye[0] - left_eye[0]) / w < 0.75
    # The real faces span most of these portraits; the occluded one's detection is small.
    for name in FRONTAL:
        assert photo_faces[name][0].box[2] > 0.4 * photos[name].shape[1]
    assert photo_faces["fearful_woman_occluded.png"][0].box[2] < 0.35 * photos["fearful_woman_occluded.png"].shape[1]


def test_anime_drawing_is_no_face_at_default_threshold_only(detector, photo_faces, photos):
    assert photo_faces[ANIME] == []
    lenient = faces.FaceDetector(min_confidence=0.8, select="all", mtcnn=detector.mtcnn)
    found = lenient.detect_one(photos[ANIME])
    assert len(found) == 1
    assert found[0].confidence == pytest.approx(ANIME_CONFIDENCE, abs=0.01)
    assert 0.8 <= found[0].confidence < 0.9


def test_batched_detection_is_independent_of_batch_mates(detector, photos, fer_images):
    # Mixed sizes: grouped by shape, so each photo gets what it gets alone.
    names = ["surprised_man.png", "fearful_woman_occluded.png", ANIME]
    together = detector.detect([photos[n] for n in names])
    for name, found in zip(names, together):
        alone = detector.detect_one(photos[name])
        assert len(found) == len(alone)
        for a, b in zip(found, alone):
            assert a.confidence == pytest.approx(b.confidence, abs=1e-4)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.05)
    # Same size (FER 48x48 grayscale) in one MTCNN batch == one by one.
    batched = detector.detect(fer_images)
    single = [detector.detect_one(im) for im in fer_images]
    assert [len(f) for f in batched] == [len(f) for f in single]
    assert sum(len(f) > 0 for f in batched) >= len(fer_images) // 2
    for fb, fs in zip(batched, single):
        for a, b in zip(fb, fs):
            assert a.confidence == pytest.approx(b.confidence, abs=1e-3)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.1)


def test_select_modes(detector, photos):
    image = np.concatenate([photos["surprised_man.png"], photos["surprised_man.png"][:, ::-1]], axis=1)
    image = np.ascontiguousarray(np.concatenate([image, np.zeros_like(image)[:, :40]], axis=1))
    found = detector.detect_one(image)
    assert len(found) == 2
    assert found[0].box[0] < found[1].box[0]
    for select in ("largest", "confident"):
        one = faces.FaceDetector(select=select, mtcnn=detector.mtcnn).detect_one(image)
        assert len(one) == 1
        key = (lambda f: f.area) if select == "largest" else (lambda f: f.confidence)
        assert one[0].box == max(found, key=key).box
    with pytest.raises(ValueError, match="select"):
        faces.FaceDetector(select="first", mtcnn=detector.mtcnn)


def test_small_images_are_upscaled_and_mapped_back(detector, photos):
    small = np.asarray(Image.fromarray(photos["surprised_man.png"]).resize((30, 34), Image.BILINEAR))
    found = detector.detect_one(small)
    big = detector.detect_one(np.asarray(Image.fromarray(small).resize((60, 68), Image.BILINEAR)))
    assert len(found) == 1 and len(big) == 1
    np.testing.assert_allclose(found[0].landmarks * 2, big[0].landmarks, atol=0.5)
    assert found[0].box[0] + found[0].box[2] <= 30 + 1e-3


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -12.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    matrix = faces.umeyama(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-7)


def test_warp_puts_image_content_where_the_returned_landmarks_say(photos):
    # Bright dots at five landmark positions; after alignment their centroids must be at
    # the returned (transformed) landmarks: checks PIL's inverse map and pixel-centre convention.
    landmarks = np.array([[100, 120], [160, 110], [135, 150], [105, 185], [158, 180]], np.float32)
    image = np.zeros((300, 260), np.uint8)
    yy, xx = np.mgrid[:300, :260]
    for x, y in landmarks:
        image[(xx - x) ** 2 + (yy - y) ** 2 <= 9] = 255
    aligned, moved = faces.align_face(image, landmarks, 112)
    assert aligned.shape == (112, 112, 1) and aligned.dtype == np.uint8
    plane = aligned[:, :, 0].astype(np.float64)
    for x, y in moved:
        window = (slice(int(y) - 6, int(y) + 7), slice(int(x) - 6, int(x) + 7))
        weights = plane[window]
        cy = (weights * yy[:112, :112][window]).sum() / weights.sum()
        cx = (weights * xx[:112, :112][window]).sum() / weights.sum()
        assert abs(cx - x) < 0.35 and abs(cy - y) < 0.35


def test_alignment_puts_landmarks_on_template_and_regions(photo_faces, photos):
    size = 112
    target = geometry.template_points(size)
    eye_errors = []
    for name in PHOTO_FACES:
        face = photo_faces[name][0]
        aligned, moved = faces.align_face(photos[name], face.landmarks, size)
        assert aligned.shape == (size, size, 3) and aligned.dtype == np.uint8
        errors = np.linalg.norm(moved - target, axis=1)
        eye_errors.extend(errors[:2])
        # Frontal faces fit a similarity closely; the tilted, hand-covered sad_woman ones
        # up to ~4 px (measured 2.5-4.0), the nose error there ~11 px.
        assert errors[:2].max() <= (1.5 if name in FRONTAL else 4.5), (name, errors)
        assert errors.max() <= 12.0, (name, errors)
        for region in ("eyes", "mouth"):
            y0, x0, y1, x1 = geometry.box_to_pixels(geometry.REGION_BOXES[region], size)
            for x, y in moved[list(geometry.REGION_LANDMARKS[region])]:
                assert x0 <= x <= x1 and y0 <= y <= y1, (name, region, x, y)
    assert np.mean(eye_errors) <= 3.0


def test_preprocessor_assume_aligned_and_skip(detector, fer_images, photos):
    prep = faces.FacePreprocessor(48, {"eyes": (20, 40)}, no_face="assume_aligned", channels=1, detector=detector)
    blank = np.full((48, 48), 128, np.uint8)
    results = prep.process_batch([*fer_images, blank, photos["surprised_man.png"]])
    assert len(results) == len(fer_images) + 2
    assert all(isinstance(r, faces.ProcessedFace) for r in results)
    for r in results:
        assert r.face.shape == (48, 48, 1) and r.face.dtype == np.uint8 and r.landmarks.shape == (5, 2)
    # The flat image has no face: kept whole, unchanged, with the canonical landmarks.
    flat = results[len(fer_images)]
    assert not flat.detected and flat.confidence == 0.0
    np.testing.assert_array_equal(flat.face[:, :, 0], blank)
    np.testing.assert_allclose(flat.landmarks, geometry.template_points(48))
    assert results[-1].detected and results[-1].confidence > 0.9
    detected = sum(r.detected for r in results)
    assert prep.stats.total == len(results) and prep.stats.detected == detected
    assert prep.stats.assumed_aligned == len(results) - detected >= 1
    assert prep.stats.detection_rate == pytest.approx(detected / len(results))
    crops = prep.regions(np.stack([r.face for r in results]))
    assert tuple(crops["eyes"].shape) == (len(results), 20, 40, 1)

    skip = faces.FacePreprocessor(64, no_face="skip", channels=3, detector=detector)
    out = skip.process_batch([blank, photos["angry_man.png"], photos[ANIME]])
    assert [type(r).__name__ for r in out] == ["NoFace", "ProcessedFace", "NoFace"]
    assert out[1].face.shape == (64, 64, 3)
    assert skip.stats.skipped == 2 and skip.stats.detected == 1 and skip.stats.detection_rate == pytest.approx(1 / 3)


def test_a_detection_call_holds_at_most_max_batch_pixels():
    """Large same-size images (video frames) are not detected batch_size at a time: MTCNN's
    memory grows with the pixels of one call. Small ones (48x48 faces) still batch fully."""

    class CallSizes:
        def __init__(self):
            self.sizes = []

        def detect_faces(self, batch, **kwargs):
            self.sizes.append(len(batch))
            return np.zeros((0, 16))

    calls = CallSizes()
    detector = faces.FaceDetector(batch_size=32, max_batch_pixels=2_500_000, mtcnn=calls)
    detector.detect([np.zeros((1000, 1000, 3), np.uint8)] * 5)
    assert calls.sizes == [2, 2, 1]
    calls.sizes.clear()
    detector.detect([np.zeros((48, 48, 3), np.uint8)] * 40)
    assert calls.sizes == [32, 8]
