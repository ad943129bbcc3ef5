"""MTCNN face detection, 5-point similarity alignment and the per-image preprocessing step.

Detection wraps ``mtcnn`` 1.0 (``MTCNN.detect_faces``). That package takes a list of
images as one batch, but it pads every image to the largest one in the list and builds a
single scale pyramid for the whole batch, so a mixed-size batch gives different boxes and
confidences than one image at a time (measured on ../shared/faces: the occluded face drops
from 0.98 to 0.69, the anime drawing's best box moves to another place). ``FaceDetector``
therefore batches only images of identical shape (groups by shape, keeps the input order):
FER-style data sets (all 48x48) batch fully, photos of assorted sizes run one by one, and
the results never depend on which other images share the batch.

Upscaling rule: images whose shorter side is below ``upscale_min_side`` (default 48) are
upscaled (bilinear) by the smallest factor reaching it before detection and the boxes and
landmarks are scaled back. MTCNN's pyramid needs a face of about ``min_face_size`` (20) px
and an image of at least ~24 px to build one scale. Measured on 120 random FER2013 training
images (benchmarks/bench_mtcnn.py prints it again): 48x48 native gives a 81% detection rate
at confidence >= 0.9, 96x96 79%, 144x144 78%; on another 64 (bench_mtcnn.py) 75% native vs
78% at 96x96: a few images either way, while 96x96 costs ~15% more time. So 48x48 FER
images are detected natively and only smaller images are upscaled.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Sequence

import numpy as np
from PIL import Image

from fer_spec import geometry
from pipelines import regions

SELECT_CHOICES = ("largest", "confident", "all")
NO_FACE_CHOICES = ("skip", "assume_aligned")


@dataclasses.dataclass
class Face:
    """One detection. ``box`` is ``(x, y, w, h)`` in pixels of the input image; ``landmarks``
    are float32 ``[5, 2]`` ``(x, y)`` in ``geometry.LANDMARK_NAMES`` order."""

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])


def to_rgb_uint8(image) -> np.ndarray:
    """``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` -> uint8 ``[H, W, 3]``."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and image.max() <= 1.0:
            image = image * 255.0
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"Expected an image [H, W], [H, W, 1|3|4]. Received shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


class FaceDetector:
    """Batched MTCNN detection.

    Args:
        min_confidence: float. Detections below it are dropped (ONet's own threshold is
            lowered to it when it is below MTCNN's default 0.8).
        select: "largest" (one face, largest box), "confident" (one face, highest
            confidence) or "all" (every face, sorted left to right).
        device: TF device MTCNN runs on.
        batch_size: most images per ``detect_faces`` call.
        upscale_min_side: images with a shorter side below it are upscaled first.
        min_face_size: MTCNN's smallest face in pixels (of the upscaled image).
        border: float. A black border of this fraction of the longer side is added around
            each image before detection, so a face at the image's edge gets its whole box
            (unclipped boxes frame faces like FER2013's, see ``crop_frame``). Boxes and
            landmarks are returned in the input image's coordinates.
        mtcnn: an ``mtcnn.MTCNN`` to share between detectors (built when None).
        max_batch_pixels: int. A ``detect_faces`` call gets fewer than ``batch_size``
            images when they would exceed this many pixels together (at least one image):
            MTCNN's memory grows with the pixels of a call (~0.15 GB per million), so
            video frames are not detected 32 at a time. 48x48 faces still batch fully.
    """

    def __init__(
        self,
        min_confidence: float = 0.9,
        select: str = "largest",
        device: str = "CPU:0",
        batch_size: int = 32,
        upscale_min_side: int = 48,
        min_face_size: int = 20,
        border: float = 0.0,
        mtcnn=None,
        max_batch_pixels: int = 4_000_000,
    ):
        if not 0.0 <= border <= 1.0:
            raise ValueError(f"border must be in [0, 1]. Received: border={border}")
        self.border = float(border)
        if select not in SELECT_CHOICES:
            raise ValueError(f"select must be one of {SELECT_CHOICES}. Received: select={select!r}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1]. Received: {min_confidence}")
        self.min_confidence = float(min_confidence)
        self.select = select
        self.device = device
        self.batch_size = int(batch_size)
        self.upscale_min_side = int(upscale_min_side)
        self.min_face_size = int(min_face_size)
        self.max_batch_pixels = int(max_batch_pixels)
        if mtcnn is None:
            from mtcnn import MTCNN  # heavy import (loads three networks)

            mtcnn = MTCNN(device=device)
        self.mtcnn = mtcnn

    def _prepare(self, image) -> tuple[np.ndarray, float, int]:
        """``(array to detect on, upscale factor, border in pixels of the upscaled image)``."""
        rgb = to_rgb_uint8(image)
        short = min(rgb.shape[:2])
        factor = 1
        if short < self.upscale_min_side:
            factor = math.ceil(self.upscale_min_side / short)
            h, w = rgb.shape[:2]
            rgb = np.asarray(Image.fromarray(rgb).resize((w * factor, h * factor), Image.BILINEAR))
        pad = int(round(self.border * max(rgb.shape[:2])))
        if pad:
            rgb = np.pad(rgb, [(pad, pad), (pad, pad), (0, 0)])
        return rgb, float(factor), pad

    def _run(self, batch: list[np.ndarray]) -> list[list[Face]]:
        rows = self.mtcnn.detect_faces(
            batch,
            output_type="numpy",
            box_format="xyxy",
            min_face_size=self.min_face_size,
            threshold_onet=min(0.8, self.min_confidence),
        )
        out: list[list[Face]] = [[] for _ in batch]
        for row in np.asarray(rows).reshape(-1, 16):
            if row[5] < self.min_confidence:
                continue
            x1, y1, x2, y2 = (float(v) for v in row[1:5])
            landmarks = np.stack([row[6:11], row[11:16]], axis=1).astype(np.float32)
            out[int(row[0])].append(Face((x1, y1, x2 - x1, y2 - y1), float(row[5]), landmarks))
        return out

    def _select(self, faces: list[Face]) -> list[Face]:
        if not faces:
            return []
        if self.select == "largest":
            return [max(faces, key=lambda f: f.area)]
        if self.select == "confident":
            return [max(faces, key=lambda f: f.confidence)]
        return sorted(faces, key=lambda f: f.box[0])

    def detect(self, images: Sequence) -> list[list[Face]]:
        """Faces of each image (RGB or grayscale, uint8 or float 0..255) in input order."""
        prepared = [self._prepare(image) for image in images]
        groups: dict[tuple, list[int]] = collections.defaultdict(list)
        for index, (array, _, _) in enumerate(prepared):
            groups[array.shape].append(index)
        results: list[list[Face]] = [[] for _ in prepared]
        for shape, indices in groups.items():
            per_call = max(1, min(self.batch_size, self.max_batch_pixels // (shape[0] * shape[1])))
            for start in range(0, len(indices), per_call):
                chunk = indices[start : start + per_call]
                found = self._run([prepared[i][0] for i in chunk])
                for i, faces in zip(chunk, found):
                    _, factor, pad = prepared[i]
                    if factor != 1.0 or pad:
                        shift = np.array([pad, pad, 0, 0], np.float64)
                        faces = [
                            Face(tuple((np.asarray(f.box, np.float64) - shift) / factor), f.confidence, (f.landmarks - pad) / factor)
                            for f in faces
                        ]
                    results[i] = self._select(faces)
        return results

    def detect_one(self, image) -> list[Face]:
        return self.detect([image])[0]


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) taking
    ``src`` points ``[N, 2]`` onto ``dst`` (Umeyama 1991). Returns the 2x3 matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = src.shape[0]
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / n
    scale = (s * d).sum() / var_src if var_src > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.concatenate([scale * rotation, translation[:, None]], axis=1)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def _plain_uint8(image) -> tuple[np.ndarray, bool]:
    """``(uint8 array Pillow takes: [H, W] for one channel, else [H, W, C], one channel?)``."""
    array = np.asarray(image)
    squeeze = array.ndim == 2 or array.shape[-1] == 1
    if array.dtype != np.uint8:
        array = np.clip(np.round(array), 0, 255).astype(np.uint8)
    return (array.reshape(array.shape[:2]) if squeeze else array), squeeze


def align_face(image, landmarks, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` so its 5 ``landmarks`` land on ``geometry.template_points(size)``.

    Pixel ``i`` has its centre at coordinate ``i`` (MTCNN's and ``crop_and_resize``'s
    convention); PIL's transform works with centres at ``i + 0.5``, converted here.

    Returns:
        ``(aligned, aligned_landmarks)``: uint8 ``[size, size, C]`` with the input's
        channel count (outside the image is black), float32 ``[5, 2]`` landmarks after the
        transform (close to the template, up to the similarity fit's residual).
    """
    array, squeeze = _plain_uint8(image)
    pil = Image.fromarray(array)
    matrix = umeyama(landmarks, geometry.template_points(size))
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    a, b, c = inverse[0]
    d, e, f = inverse[1]
    coefficients = (a, b, c + 0.5 - 0.5 * (a + b), d, e, f + 0.5 - 0.5 * (d + e))
    warped = pil.transform((size, size), Image.AFFINE, coefficients, resample=Image.BILINEAR)
    out = np.asarray(warped)
    if squeeze:
        out = out[:, :, None]
    return out, apply_affine(matrix, landmarks)


def crop_frame(image, box, size: int, frame: dict = geometry.FER2013_BOX_FRAME) -> np.ndarray:
    """The square frame around face ``box`` (``(x, y, w, h)``, see
    ``fer_spec.geometry.frame_from_box``) resized to ``size`` x ``size`` with Pillow's
    antialiasing filter (no aliasing when a large photo is shrunk); the image's edge pixels
    fill whatever of the frame lies outside it. uint8 ``[size, size, C]``, input channels."""
    plain, squeeze = _plain_uint8(image)
    left, top, side = geometry.frame_from_box(box, frame)
    pad = int(np.ceil(max(0.0, -left, -top, left + side - plain.shape[1], top + side - plain.shape[0]))) + 1
    padded = np.pad(plain, [(pad, pad), (pad, pad)] + ([] if squeeze else [(0, 0)]), mode="edge")
    out = np.asarray(Image.fromarray(padded).resize((size, size), Image.BILINEAR, box=(left + pad, top + pad, left + side + pad, top + side + pad)))
    return out[:, :, None] if squeeze else out


@dataclasses.dataclass
class ProcessedFace:
    """An aligned face ready for the cache: ``face`` uint8 ``[S, S, C]``, ``landmarks``
    float32 ``[5, 2]`` in its pixel coordinates, ``detected`` False when the whole image was
    taken as an already aligned face (``confidence`` is then MTCNN's best, or 0)."""

    face: np.ndarray
    landmarks: np.ndarray
    detected: bool
    confidence: float
    box: tuple[float, float, float, float] | None = None


@dataclasses.dataclass
class NoFace:
    reason: str
    confidence: float = 0.0


@dataclasses.dataclass
class DetectionStats:
    total: int = 0
    detected: int = 0
    assumed_aligned: int = 0
    skipped: int = 0

    @property
    def detection_rate(self) -> float:
        return self.detected / self.total if self.total else 0.0

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "detection_rate": self.detection_rate}

    def summary(self) -> str:
        return (
            f"faces detected in {self.detected}/{self.total} images "
            f"({100 * self.detection_rate:.1f}%), {self.assumed_aligned} taken as already aligned, "
            f"{self.skipped} skipped (no face)"
        )


class FacePreprocessor:
    """Detect, align and normalise faces for the cache.

    Args:
        face_size: side of the aligned square face.
        region_sizes: ``{region: (h, w)}`` for :meth:`regions` (``crop_regions``).
        no_face: "skip" drops images without a face at ``min_confidence``;
            "assume_aligned" keeps the whole image resized to ``face_size`` with the
            canonical landmarks (the usual case for 48x48 FER2013 crops).
        channels: 1 (grayscale) or 3 (RGB) of the output faces.
        detector: a ``FaceDetector`` to share; built from ``min_confidence`` otherwise.
    """

    def __init__(
        self,
        face_size: int,
        region_sizes: dict[str, tuple[int, int]] | None = None,
        no_face: str = "assume_aligned",
        channels: int = 1,
        detector: FaceDetector | None = None,
        min_confidence: float = 0.9,
        device: str = "CPU:0",
        batch_size: int = 32,
    ):
        if no_face not in NO_FACE_CHOICES:
            raise ValueError(f"no_face must be one of {NO_FACE_CHOICES}. Received: no_face={no_face!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3. Received: channels={channels}")
        self.face_size = int(face_size)
        self.region_sizes = dict(region_sizes or {})
        self.no_face = no_face
        self.channels = channels
        self.detector = detector or FaceDetector(
            min_confidence=min_confidence, select="largest", device=device, batch_size=batch_size
        )
        self.stats = DetectionStats()

    def _channels(self, array: np.ndarray) -> np.ndarray:
        rgb = to_rgb_uint8(array)
        if self.channels == 3:
            return rgb
        return np.asarray(Image.fromarray(rgb).convert("L"))[:, :, None]

    def process_batch(self, images: Sequence) -> list[ProcessedFace | NoFace]:
        detections = self.detector.detect(images)
        out: list[ProcessedFace | NoFace] = []
        for image, faces in zip(images, detections):
            self.stats.total += 1
            if faces:
                face = faces[0]
                aligned, landmarks = align_face(self._channels(image), face.landmarks, self.face_size)
                self.stats.detected += 1
                out.append(ProcessedFace(aligned, landmarks, True, face.confidence, face.box))
            elif self.no_face == "skip":
                self.stats.skipped += 1
                out.append(NoFace("no face at min_confidence"))
            else:
                self.stats.assumed_aligned += 1
                resized = Image.fromarray(self._channels(image).squeeze(-1) if self.channels == 1 else self._channels(image))
                resized = np.asarray(resized.resize((self.face_size, self.face_size), Image.BILINEAR))
                if self.channels == 1:
                    resized = resized[:, :, None]
                out.append(ProcessedFace(resized, geometry.template_points(self.face_size), False, 0.0))
        return out

    def regions(self, faces):
        """``crop_regions`` of a batch of aligned faces with this preprocessor's sizes."""
        return regions.crop_regions(faces, self.region_sizes)
