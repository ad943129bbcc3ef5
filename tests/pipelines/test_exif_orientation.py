"""EXIF orientation: a real photo stored rotated/mirrored with orientation tag 0x0112 decodes
upright through both Python decode paths (data set decoding and the Recognizer's read_photo)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fer_keras.recognizer import read_photo
from pipelines.datasets import load_arrays, open_dataset
from pipelines.images import decode_image

ORIENTATION = 0x0112

# How to store an upright image U so that a viewer honouring the EXIF orientation shows U
# (the EXIF 2.3 definitions, written independently of Pillow's exif_transpose table).
STORED = {
    2: lambda u: u[:, ::-1],  # mirrored horizontally
    3: lambda u: u[::-1, ::-1],  # rotated 180
    4: lambda u: u[::-1],  # mirrored vertically
    5: lambda u: u.transpose(1, 0, 2),  # mirrored about the main diagonal
    6: lambda u: np.rot90(u, 1),  # shown after a 90 degree clockwise turn
    7: lambda u: u[::-1, ::-1].transpose(1, 0, 2),  # mirrored about the anti-diagonal
    8: lambda u: np.rot90(u, -1),  # shown after a 90 degree counter-clockwise turn
}


def _save_with_orientation(pixels: np.ndarray, path, orientation: int | None, base_exif=None, **options):
    img = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    exif = base_exif if base_exif is not None else Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    img.save(path, exif=exif.tobytes(), **options)
    return path


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_png_with_orientation_tag_decodes_upright_in_both_paths(faces_dir, tmp_path, orientation):
    upright = decode_image(faces_dir / "angry_man.png", channels=3)  # 378 x 307: not square
    assert upright.shape[0] != upright.shape[1]
    path = _save_with_orientation(STORED[orientation](upright), tmp_path / f"o{orientation}.png", orientation)
    assert Image.open(path).getexif()[ORIENTATION] == orientation
    np.testing.assert_array_equal(decode_image(path, channels=3), upright)
    np.testing.assert_array_equal(read_photo(path), upright)


def test_camera_jpeg_rotated_90_decodes_upright_in_data_sets_and_recognizer(faces_dir, tmp_path):
    """A JPEG as phones write them (pixels as the sensor saw them, orientation 6, other EXIF
    tags kept): decoded upright by decode_image, by an adapter's loading and by read_photo."""
    source = Image.open(faces_dir / "sad_woman_large.jpg")
    exif = source.getexif()
    upright = np.asarray(source.convert("RGB"))
    stored = STORED[6](upright)
    (tmp_path / "folder" / "sad").mkdir(parents=True)
    tagged = _save_with_orientation(stored, tmp_path / "folder" / "sad" / "phone.jpg", 6, exif, quality=95)
    plain = _save_with_orientation(stored, tmp_path / "plain.jpg", None, quality=95)
    expected = np.rot90(decode_image(plain, channels=3), -1)  # same JPEG pixels, turned by hand
    assert expected.shape == upright.shape

    np.testing.assert_array_equal(decode_image(tagged, channels=3), expected)
    np.testing.assert_array_equal(read_photo(tagged), expected)
    arrays = load_arrays(open_dataset("folder", tmp_path / "folder", None), channels=3, progress=False)
    np.testing.assert_array_equal(arrays.images[0], expected)
    gray = decode_image(tagged, channels=1)
    assert gray.shape == expected.shape[:2] + (1,)


def test_unreadable_exif_block_still_decodes(faces_dir, tmp_path):
    upright = decode_image(faces_dir / "surprised_man.png", channels=3)
    path = tmp_path / "bad_exif.png"
    Image.fromarray(upright).save(path, exif=b"Exif\x00\x00garbage-not-tiff")
    np.testing.assert_array_equal(decode_image(path, channels=3), upright)
    np.testing.assert_array_equal(read_photo(path), upright)
