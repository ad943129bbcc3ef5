"""Video frames for the Recognizer, read with PyAV (``av``, FFmpeg bindings; optional extra).

PyAV ships FFmpeg inside its wheels (no system FFmpeg, no OpenCV), decodes every common
container/codec, and gives each frame's presentation time, so timestamps are exact even for
variable-frame-rate phone videos. Install it with ``pip install fer_keras[video]``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv")
INSTALL_HINT = "Reading videos needs PyAV: pip install fer_keras[video]  (or: pip install av)"


def is_video(path) -> bool:
    return os.fspath(path).lower().endswith(VIDEO_EXTENSIONS)


def _av():
    try:
        import av
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return av


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """``fps`` (average), ``frames`` (0 when the container does not say), ``size`` (h, w)."""

    fps: float
    frames: int
    size: tuple[int, int]

    def frames_read(self, every_n_frames: int = 1, max_frames: int | None = None) -> int | None:
        """How many frames ``read_frames`` yields: indices 0, n, 2n, ... below ``frames``, at
        most ``max_frames`` (None when the container does not give its frame count)."""
        if not self.frames:
            return max_frames
        count = -(-self.frames // every_n_frames)  # ceil: 12 frames, every 1 -> 12; every 5 -> 0, 5, 10
        return count if max_frames is None else min(count, max_frames)


def _open(path):
    av = _av()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        container = av.open(path)
    except av.error.FFmpegError as error:
        raise ValueError(f"{path}: cannot open as a video ({error})") from error
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path}: has no video stream")
    return container


def video_info(path) -> VideoInfo:
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        return VideoInfo(fps, int(stream.frames or 0), (stream.codec_context.height, stream.codec_context.width))


def read_frames(path, every_n_frames: int = 1, max_frames: int | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(frame index, timestamp in seconds, RGB uint8 [H, W, 3])`` of every
    ``every_n_frames``-th decoded frame (index 0 first), at most ``max_frames`` of them.

    Raises:
        ImportError: PyAV is not installed (says how to install it).
        ValueError: the file is not a readable video (names the file).
    """
    if every_n_frames < 1:
        raise ValueError(f"every_n_frames must be >= 1. Received: every_n_frames={every_n_frames}")
    av = _av()
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        yielded = 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index % every_n_frames:
                    continue
                if frame.time is not None:
                    timestamp = float(frame.time)
                else:
                    timestamp = index / fps if fps else 0.0
                yield index, timestamp, frame.to_ndarray(format="rgb24")
                yielded += 1
                if max_frames is not None and yielded >= max_frames:
                    return
        except av.error.FFmpegError as error:
            raise ValueError(f"{os.fspath(path)}: video decoding failed ({error})") from error


def write_video(path, frames, fps: int = 10, codec: str = "mpeg4") -> str:
    """Write RGB uint8 frames ``[H, W, 3]`` (even H and W) as a video (tests, demos)."""
    av = _av()
    frames = list(frames)
    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return os.fspath(path)
