"""Photo -> every face -> its emotion, in one call.

``Recognizer`` walks the same path as training and serving: ``pipelines.faces`` finds every
face with MTCNN (``select="all"``, sorted left to right, on the photo with a black border
so faces at its edge keep whole boxes) and frames each one the way the model's training
faces were framed (``InputSpec.framing``: the square FER2013 frame around the box, or the
5-landmark alignment to the template) at the model's ``source_size`` (grayscale for
1-channel models), then
``pipelines.input.eval_inputs`` builds the model's inputs (normalise, centre crop and, for
MrCAR, the eye and mouth regions) and the model scores all faces in batches.

Memory is bounded whatever the photo's size: MTCNN runs on the photo decoded at a working
size (longer side at most ``max_detection_side``, 1280 by default; a JPEG is decoded
straight at a reduced DCT scale, so a 6000x6000 photo never exists at full size), photos are
read and detected one at a time, and boxes and landmarks are mapped back to the photo's own
pixels. Each face is framed from the working image when that holds it at the model's
resolution or more (at least ``source_size`` pixels across its box); a face smaller than
that is framed from the photo decoded at the scale that does (full size at most). Photos
that fit the working size are processed exactly as before. MTCNN finds faces down to about
20 pixels of the working image, i.e. ``20 * longer side / 1280`` pixels of a larger photo
(63 px on a 4032x3024 phone photo); raise ``max_detection_side`` for smaller faces, at
about 0.4 GB more peak memory per 500 pixels.

Example:

    from fer_keras.recognizer import Recognizer

    recognizer = Recognizer("baseline-fer2013")
    photo = recognizer.recognize("group.jpg")
    for face in photo.faces:                      # left to right
        print(face.box, face.label, face.probabilities[face.label])
    if photo.no_face:
        print("no face found at", recognizer.min_confidence)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Sequence

import numpy as np

from fer_keras.weights import DEFAULT_MODEL
from pipelines import cli
from pipelines.images import bounded_size, decode_image, image_size, resize_image, to_channels

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Black border (fraction of the longer side) added before detection: faces at a photo's edge
# get unclipped boxes, which the FER2013 framing needs (benchmarks/RESULTS.md, "Framing").
DETECTION_BORDER = 0.25
# Longer side of the working image MTCNN sees (see the module docstring; peak memory and
# the smallest face found both grow with it: benchmarks/bench_predict_memory.py).
DETECTION_MAX_SIDE = 1280


@dataclasses.dataclass
class FaceResult:
    """One face: ``box`` ``(x, y, w, h)`` and ``landmarks`` ``[5, 2]`` in pixels of the photo,
    MTCNN's ``confidence``, ``probabilities`` ``{class name: p}`` in class order, the top
    ``label`` and its ``class_id``."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    confidence: float
    probabilities: dict[str, float]
    label: str
    class_id: int

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "landmarks": np.round(np.asarray(self.landmarks, dtype=np.float64), 2).tolist(),
            "confidence": float(self.confidence),
            "label": self.label,
            "class_id": int(self.class_id),
            "probabilities": {name: float(p) for name, p in self.probabilities.items()},
        }


@dataclasses.dataclass
class PhotoResult:
    """The faces of one photo, left to right. ``no_face`` is True when none was found at the
    recognizer's ``min_confidence`` (an explicit answer, not an error). ``path`` is None for
    in-memory images; ``size`` is ``(height, width)``."""

    path: str | None
    faces: list[FaceResult]
    size: tuple[int, int]

    @property
    def no_face(self) -> bool:
        return not self.faces

    def to_dict(self) -> dict:
        return {"path": self.path, "height": self.size[0], "width": self.size[1], "no_face": self.no_face, "faces": [f.to_dict() for f in self.faces]}


@dataclasses.dataclass
class ManyResult:
    """``recognize_many``: ``photos`` in input order, and ``skipped`` ``[(path, reason)]`` for
    files that could not be read. Iterating yields the photos."""

    photos: list[PhotoResult]
    skipped: list[tuple[str, str]]

    def __iter__(self):
        return iter(self.photos)

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index):
        return self.photos[index]


@dataclasses.dataclass
class FrameResult:
    """The faces of one video frame (``index`` in the decoded stream, ``timestamp`` in s)."""

    index: int
    timestamp: float
    faces: list[FaceResult]

    @property
    def no_face(self) -> bool:
        return not self.faces

    def to_dict(self) -> dict:
        return {"frame": self.index, "timestamp": round(self.timestamp, 4), "no_face": self.no_face, "faces": [f.to_dict() for f in self.faces]}


@dataclasses.dataclass
class VideoResult:
    path: str
    fps: float
    size: tuple[int, int]
    frames: list[FrameResult]

    def to_dict(self) -> dict:
        return {"path": self.path, "fps": self.fps, "height": self.size[0], "width": self.size[1], "frames": [f.to_dict() for f in self.frames]}


def list_images(folder: str) -> list[str]:
    """Image files under ``folder`` (recursive, sorted), by extension."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, name) for name in sorted(files) if name.lower().endswith(IMAGE_EXTENSIONS)]
    return found



def read_photo(path, max_side: int | None = None) -> np.ndarray:
    """Decode a photo file to RGB uint8 ``[H, W, 3]``, upright per its EXIF orientation
    (``pipelines.images.decode_image`` applies it with Pillow's ``ImageOps.exif_transpose``);
    with ``max_side``, a larger photo is decoded at a reduced size whose longer side is
    ``max_side`` (``decode_image``: JPEG DCT scaling, then antialiased resizing).

    Raises:
        pipelines.images.ImageDecodeError: not a readable image (the message names the file).
        FileNotFoundError: no such file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    return decode_image(path, channels=3, max_side=max_side)


class _Photo:
    """A photo file or an in-memory image, read at the sizes the Recognizer asks for.

    ``size`` is the photo's own ``(height, width)`` (read from a file's header);
    ``pixels(max_side)`` is RGB uint8 with the longer side at most ``max_side`` (the photo
    itself when it fits)."""

    def __init__(self, image):
        self.path = None
        self._rgb = None
        if isinstance(image, (str, os.PathLike)):
            self.path = os.fspath(image)
            if not os.path.exists(self.path):
                raise FileNotFoundError(f"{self.path}: no such file")
            self.size = image_size(self.path)
        else:
            from pipelines.faces import to_rgb_uint8  # loads TensorFlow (MTCNN, regions)

            self._rgb = to_rgb_uint8(np.asarray(image))
            self.size = tuple(self._rgb.shape[:2])

    def pixels(self, max_side: int) -> np.ndarray:
        if self._rgb is None:
            return read_photo(self.path, max_side)
        return resize_image(self._rgb, bounded_size(self.size, max_side))


def _rescaled(face, scale_y: float, scale_x: float):
    """A ``pipelines.faces.Face`` with its box and landmarks in pixels of an image
    ``(scale_y, scale_x)`` times the size of the one it was found in."""
    x, y, w, h = face.box
    landmarks = np.asarray(face.landmarks, np.float32) * np.array([scale_x, scale_y], np.float32)
    return dataclasses.replace(face, box=(x * scale_x, y * scale_y, w * scale_x, h * scale_y), landmarks=landmarks)


def _resolve_model(model):
    """``(keras model, display name)`` from a pretrained name, a ``.keras`` path or a model."""
    import keras

    from fer_keras import weights
    from fer_keras.saving import load_model

    if isinstance(model, keras.Model):
        return model, model.name
    model = os.fspath(model)
    if model in weights.pretrained_names():
        return weights.load_pretrained(model), model
    if not os.path.exists(model):
        raise ValueError(f"model must be a pretrained name, a .keras file or a keras.Model. Received: {model!r} "
                         f"(no such file; known pretrained models: {', '.join(weights.pretrained_names())})")
    return load_model(model), os.path.basename(model)


class Recognizer:
    """Every face of a photo (or video frame) and its emotion.

    Args:
        model: a pretrained name (``fer_keras.weights.pretrained_names()``), a ``.keras``
            path, or a ``keras.Model`` returning class probabilities. Defaults to
            ``fer_keras.weights.DEFAULT_MODEL``.
        min_confidence: float. MTCNN detections below it are ignored. Defaults to 0.9.
        ten_crop: bool. Average the scores of ten crops (4 corners + centre, mirrored) of
            each aligned face instead of the centre crop. Defaults to False.
        batch_size: int. Faces per model call, and video frames per detection call.
            Defaults to 32.
        detector: a ``pipelines.faces.FaceDetector`` with ``select="all"`` to share (built
            from ``min_confidence`` when None).
        max_detection_side: int. Longer side of the working image MTCNN sees (see the
            module docstring). Defaults to ``DETECTION_MAX_SIDE`` (1280).
    """

    def __init__(self, model=DEFAULT_MODEL, min_confidence: float = 0.9, ten_crop: bool = False, batch_size: int = 32, detector=None,
                 max_detection_side: int = DETECTION_MAX_SIDE):
        from fer_keras.inference import Scorer
        from fer_keras.saving import model_spec
        from pipelines.faces import FaceDetector

        if max_detection_side < 1:
            raise ValueError(f"max_detection_side must be positive. Received: max_detection_side={max_detection_side}")
        self.model, self.model_name = _resolve_model(model)
        # Input size, crop, channels and class names travel with the model (its ModelSpec).
        spec = model_spec(self.model)
        self.spec = spec.input_spec
        self.class_names = list(spec.class_names)
        self.ten_crop = bool(ten_crop)
        self.batch_size = int(batch_size)
        self.max_detection_side = int(max_detection_side)
        if detector is None:
            detector = FaceDetector(min_confidence=min_confidence, select="all", batch_size=batch_size, border=DETECTION_BORDER)
        elif detector.select != "all":
            raise ValueError(f"The detector must find every face (select='all'). Received: select={detector.select!r}")
        self.detector = detector
        self.min_confidence = detector.min_confidence
        self._scores = Scorer(self.model, self.ten_crop, self.batch_size)

    # -- classification -------------------------------------------------------------------

    def classify_faces(self, faces: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, K]`` of already aligned faces uint8 ``[N, *source_size, C]``."""
        faces = np.asarray(faces)
        expected = (*self.spec.source_size, self.spec.channels)
        if faces.ndim != 4 or tuple(faces.shape[1:]) != expected:
            raise ValueError(f"faces must be [N, {expected[0]}, {expected[1]}, {expected[2]}] for {self.model_name}. Received: {faces.shape}")
        if len(faces) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return self._scores(faces)

    def _frame(self, rgb: np.ndarray, detections) -> list[np.ndarray]:
        """Each detected face as the model's training data framed faces (``InputSpec.framing``):
        the square FER2013 frame around the box, or the landmark alignment to the template."""
        from pipelines.faces import align_face, crop_frame

        source = to_channels(rgb, self.spec.channels)
        size = self.spec.source_size[0]
        if self.spec.framing == "fer2013_box":
            return [crop_frame(source, face.box, size) for face in detections]
        return [align_face(source, face.landmarks, size)[0] for face in detections]

    def _frame_photo(self, photo: _Photo, working: np.ndarray, faces) -> list[np.ndarray]:
        """:meth:`_frame` of ``faces`` (in the photo's pixels) from the working image when it
        holds each face at ``source_size`` pixels or more across its box, else from the photo
        read at the size that does (its full size at most)."""
        if not faces:
            return []
        longest = max(photo.size)
        needed = max(self.spec.source_size[0] / max(1.0, min(face.box[2], face.box[3])) for face in faces)
        side = min(longest, int(np.ceil(needed * longest)))
        source = working if max(working.shape[:2]) >= side else photo.pixels(side)
        scale_y, scale_x = source.shape[0] / photo.size[0], source.shape[1] / photo.size[1]
        return self._frame(source, [_rescaled(face, scale_y, scale_x) for face in faces])

    def _detect(self, photos: list[_Photo], working: list[np.ndarray]) -> tuple[list[list], list[np.ndarray]]:
        """MTCNN on the working images: each photo's faces in its own pixels, and all their
        framed faces in order."""
        if self.spec.source_size[0] != self.spec.source_size[1]:
            raise ValueError(f"Faces are framed square; {self.model_name} wants {self.spec.source_size}")
        detections, framed = [], []
        for photo, image, found in zip(photos, working, self.detector.detect(working)):
            faces = [_rescaled(face, photo.size[0] / image.shape[0], photo.size[1] / image.shape[1]) for face in found]
            detections.append(faces)
            framed += self._frame_photo(photo, image, faces)
        return detections, framed

    def _results(self, detections: list[list], framed: list[np.ndarray]) -> list[list[FaceResult]]:
        """Classify the framed faces together; ``FaceResult`` lists in ``detections``' order."""
        probabilities = self.classify_faces(np.stack(framed)) if framed else np.zeros((0, len(self.class_names)))
        results, row = [], 0
        for found in detections:
            faces = []
            for face in found:
                p = probabilities[row]
                row += 1
                class_id = int(np.argmax(p))
                faces.append(FaceResult(tuple(float(v) for v in face.box), np.asarray(face.landmarks, np.float32), float(face.confidence),
                                        dict(zip(self.class_names, (float(v) for v in p))), self.class_names[class_id], class_id))
            results.append(faces)
        return results

    def _recognize_arrays(self, images: list[np.ndarray]) -> list[list[FaceResult]]:
        """Detect, frame and classify a list of images (video frames: detected together)."""
        photos = [_Photo(image) for image in images]
        return self._results(*self._detect(photos, [photo.pixels(self.max_detection_side) for photo in photos]))

    # -- public API -----------------------------------------------------------------------

    def recognize(self, image) -> PhotoResult:
        """Every face of one photo: a path, or an image array ``[H, W]``/``[H, W, 1|3|4]``, or a
        PIL image. Unreadable files raise ``ImageDecodeError``/``FileNotFoundError`` naming
        the file; a photo without a face gives ``PhotoResult(no_face=True)``."""
        photo = _Photo(image)
        faces = self._results(*self._detect([photo], [photo.pixels(self.max_detection_side)]))[0]
        return PhotoResult(photo.path, faces, photo.size)

    def recognize_many(self, paths: str | Iterable, progress: bool = True) -> ManyResult:
        """Every face of many photos: a folder (recursive, image extensions) or a list of paths.

        Photos are read and detected one at a time at the working size (memory does not grow
        with their number or size); their faces are classified ``batch_size`` at a time.
        Files that cannot be read are skipped and listed in ``ManyResult.skipped`` with the
        reason. ``progress`` shows a bar on stderr (``pipelines.cli.progress_bar``).
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = list_images(os.fspath(paths)) if os.path.isdir(paths) else [os.fspath(paths)]
        paths = [os.fspath(p) for p in paths]
        photos, skipped, pending = [], [], []  # pending: (photo, faces, framed) awaiting classification

        def classify_pending():
            results = self._results([faces for _, faces, _ in pending], [f for _, _, framed in pending for f in framed])
            photos.extend(PhotoResult(photo.path, faces, photo.size) for (photo, _, _), faces in zip(pending, results))
            pending.clear()

        with cli.progress_bar(progress) as bar:
            task = bar.add_task("photos", total=len(paths))
            for path in paths:
                try:
                    photo = _Photo(path)
                    working = photo.pixels(self.max_detection_side)
                except (OSError, ValueError) as error:
                    skipped.append((path, str(error)))
                else:
                    (faces,), framed = self._detect([photo], [working])
                    pending.append((photo, faces, framed))
                    if sum(len(entry[2]) for entry in pending) >= self.batch_size:
                        classify_pending()
                bar.advance(task)
            classify_pending()
        return ManyResult(photos, skipped)

    def recognize_video(self, path, every_n_frames: int = 1, progress: bool = True, max_frames: int | None = None) -> VideoResult:
        """Faces of every ``every_n_frames``-th frame of a video (needs ``fer_keras[video]``),
        ``batch_size`` frames per detection call.

        Returns a ``VideoResult`` whose ``frames`` carry the frame index and timestamp.
        """
        from fer_keras import video

        path = os.fspath(path)
        info = video.video_info(path)
        frames, pending = [], []
        with cli.progress_bar(progress) as bar:
            task = bar.add_task(os.path.basename(path), total=info.frames_read(every_n_frames, max_frames))

            def flush():
                for (index, timestamp, _), faces in zip(pending, self._recognize_arrays([f for _, _, f in pending])):
                    frames.append(FrameResult(index, timestamp, faces))
                bar.update(task, completed=len(frames))
                pending.clear()

            for frame in video.read_frames(path, every_n_frames=every_n_frames, max_frames=max_frames):
                pending.append(frame)
                if len(pending) == self.batch_size:
                    flush()
            if pending:
                flush()
            bar.update(task, total=len(frames))  # when the container's frame count was off
        return VideoResult(path, info.fps, info.size, frames)


def annotate(image: np.ndarray, faces: Sequence[FaceResult]):
    """An RGB PIL image of ``image`` with each face's box, number and ``label p`` drawn."""
    from PIL import Image, ImageDraw, ImageFont

    from pipelines.faces import to_rgb_uint8

    canvas = Image.fromarray(to_rgb_uint8(image))
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(min(canvas.size) / 200))
    font = ImageFont.load_default(size=max(12, round(min(canvas.size) / 30)))
    for number, face in enumerate(faces, 1):
        x, y, w, h = face.box
        draw.rectangle([x, y, x + w, y + h], outline=(255, 64, 0), width=width)
        text = f"{number}: {face.label} {face.probabilities[face.label]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        label_h = bottom + 2 * width
        top_y = y - label_h if y - label_h >= 0 else max(0.0, y)  # above the box, else inside its top
        left_x = min(max(0.0, x), max(0.0, canvas.width - right - 2 * width))
        draw.rectangle([left_x, top_y, left_x + right + 2 * width, top_y + label_h], fill=(255, 64, 0))
        draw.text((left_x + width, top_y + width), text, fill=(255, 255, 255), font=font)
    return canvas
