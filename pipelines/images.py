"""Image decoding with Pillow into ``uint8 [H, W, C]`` arrays, with errors that name the file.

Modes handled by :func:`decode_image`:

* ``1``, ``L`` (grayscale) -> 1 channel; ``LA`` drops its alpha after compositing on black.
* ``RGB``, ``YCbCr``, ``CMYK``, ``HSV``, ``LAB`` -> RGB (3 channels).
* ``RGBA``, ``RGBa``, ``PA`` and palette images with transparency -> RGB composited on
  black (``rgb * alpha / 255``): fully opaque pixels keep their values, transparent ones
  become black. Palette images (``P``) are expanded to RGB.
* 16-bit and 32-bit integer grayscale (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``, ``I``):
  values are clipped to ``[0, 65535]`` and scaled to 8 bits by a right shift of 8
  (``v >> 8``), i.e. the 8 most significant bits are kept, no per-image contrast stretch.
* ``F`` (32-bit float): values are taken as already in ``[0, 255]``, clipped and rounded.

Photos are returned upright: the EXIF orientation tag (0x0112, set by cameras and phones
that store the sensor's pixels unrotated) is applied with Pillow's
``ImageOps.exif_transpose``; a missing or unreadable EXIF block means upright.

``channels=1`` converts color to gray with ITU-R 601-2 luma exactly as Pillow's ``'L'``
conversion (``L = R * 299/1000 + G * 587/1000 + B * 114/1000``); ``channels=3`` repeats a
gray channel; ``channels=None`` keeps 1 or 3.
"""

from __future__ import annotations

import io
import os
from typing import Union

import numpy as np
from PIL import Image, ImageOps

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, io.IOBase]

EXPECTED = "a PNG/JPEG/TIFF image (any format Pillow can decode)"


class ImageDecodeError(ValueError):
    """A file or byte string that is not a decodable image. The message names the file."""


def _open_source(data_or_path):
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(data_or_path))
    return data_or_path


def _composite_on_black(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.uint16)
    alpha = rgba[..., 3:4].astype(np.uint16)
    return ((rgb * alpha + 127) // 255).astype(np.uint8)


def _to_array(img: Image.Image) -> np.ndarray:
    """Pillow image of any supported mode -> uint8 [H, W, 1 or 3]."""
    mode = img.mode
    if mode == "1":
        img, mode = img.convert("L"), "L"
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(img).astype(np.int64)
        return (np.clip(values, 0, 65535) >> 8).astype(np.uint8)[..., None]
    if mode == "F":
        values = np.asarray(img, dtype=np.float32)
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)[..., None]
    if mode == "P":
        has_alpha = "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        mode = img.mode
    if mode == "PA":
        img, mode = img.convert("RGBA"), "RGBA"
    if mode == "L":
        return np.asarray(img, dtype=np.uint8)[..., None]
    if mode == "LA":
        la = np.asarray(img, dtype=np.uint8)
        gray = (la[..., 0].astype(np.uint16) * la[..., 1] + 127) // 255
        return gray.astype(np.uint8)[..., None]
    if mode in ("RGBA", "RGBa"):
        if mode == "RGBa":
            img = img.convert("RGBA")
        return _composite_on_black(np.asarray(img, dtype=np.uint8))
    if mode != "RGB":
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    return np.asarray(img, dtype=np.uint8)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright), 1 when missing or unreadable."""
    try:
        return img.getexif().get(0x0112, 1) or 1
    except Exception:  # a corrupt EXIF block is no reason to reject decodable pixels
        return 1


def _upright_size(img: Image.Image) -> tuple[int, int]:
    """``(height, width)`` of ``img`` once :func:`_upright` has turned it."""
    width, height = img.size
    return (width, height) if _orientation(img) in (5, 6, 7, 8) else (height, width)  # 90/270-degree turns


def _upright(img: Image.Image) -> Image.Image:
    """``img`` turned per its EXIF orientation (Pillow's ``exif_transpose``); unchanged when it
    has no orientation tag or its EXIF block cannot be parsed (the pixels decoded fine)."""
    if _orientation(img) == 1:
        return img
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def to_channels(image: np.ndarray, channels: int | None) -> np.ndarray:
    """Convert ``uint8 [H, W, 1|3]`` to ``channels`` (1: ITU-R 601 luma as Pillow 'L'; 3: RGB)."""
    if channels is None or image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    if channels == 1:
        return np.asarray(Image.fromarray(image, "RGB").convert("L"), dtype=np.uint8)[..., None]
    raise ValueError(f"channels must be 1, 3 or None. Received: channels={channels!r}")


def image_size(data_or_path: ImageSource, where: str | None = None) -> tuple[int, int]:
    """``(height, width)`` of the image as :func:`decode_image` returns it (upright), read
    from the header without decoding the pixels.

    Raises:
        ImageDecodeError: not an image Pillow can open (the message names the file).
    """
    if where is None:
        where = os.fspath(data_or_path) if isinstance(data_or_path, (str, os.PathLike)) else "<bytes>"
    try:
        with Image.open(_open_source(data_or_path)) as img:
            return _upright_size(img)
    except Exception as error:
        raise ImageDecodeError(f"{where}: cannot read image ({type(error).__name__}: {error}). Expected {EXPECTED}.") from error


def bounded_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``(height, width)`` scaled down (aspect kept, rounded) so the longer side is ``max_side``;
    ``size`` itself when it already fits."""
    height, width = size
    if max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def decode_image(data_or_path: ImageSource, where: str | None = None, channels: int | None = None, max_side: int | None = None) -> np.ndarray:
    """Decode an image file, byte string or file object to ``uint8 [H, W, C]``.

    Args:
        data_or_path: path, bytes or binary file object.
        where: str. Name used in error messages (defaults to the path when given one).
        channels: 1, 3 or None (keep 1 for gray sources, 3 for color ones).
        max_side: int or None. Decode a larger image at :func:`bounded_size` (longer side
            ``max_side``): a JPEG is decoded at its smallest DCT scale (1/2, 1/4, 1/8;
            Pillow's ``Image.draft``) still at least that size, so a 6000x6000 photo never
            exists in memory at full size, then resized with Pillow's antialiasing bilinear
            filter. Other formats are decoded whole, then resized.

    Raises:
        ImageDecodeError: the data is not a complete, decodable image. The file is fully
            decoded (``img.load()``) so truncated files fail here, not later.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None. Received: channels={channels!r}")
    if where is None:
        where = os.fspath(data_or_path) if isinstance(data_or_path, (str, os.PathLike)) else "<bytes>"
    try:
        with Image.open(_open_source(data_or_path)) as img:
            target = None
            if max_side is not None and max(img.size) > max_side:
                target = bounded_size(_upright_size(img), max_side)
                img.draft(None, bounded_size(img.size[::-1], max_side)[::-1])  # JPEG only; a no-op for others
            img.load()
            array = _to_array(_upright(img))
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, zlib.error...
        raise ImageDecodeError(
            f"{where}: cannot decode image ({type(error).__name__}: {error}). Expected {EXPECTED}, "
            "complete and not corrupt."
        ) from error
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageDecodeError(f"{where}: decoded to an empty image of shape {array.shape}. Expected {EXPECTED}.")
    if target is not None:
        array = resize_image(array, target)
    return to_channels(array, channels)


def resize_image(img: np.ndarray, size: int | tuple[int, int], resample: int = Image.BILINEAR) -> np.ndarray:
    """Resize ``uint8 [H, W, C]`` to ``size`` = ``(height, width)`` (or an int for a square).

    Uses Pillow's resampling (bilinear by default, antialiased when shrinking). Returns
    ``uint8 [height, width, C]``; an image already at that size is returned unchanged.
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[:2] == (height, width):
        return img
    if img.shape[-1] == 1:
        out = Image.fromarray(img[..., 0], "L").resize((width, height), resample)
        return np.asarray(out, dtype=np.uint8)[..., None]
    if img.shape[-1] == 3:
        out = Image.fromarray(img, "RGB").resize((width, height), resample)
        return np.asarray(out, dtype=np.uint8)
    raise ValueError(f"resize_image expects [H, W, 1|3] uint8. Received shape {img.shape}")
