"""decode_image / resize_image: modes, channel conversion, and errors that name the file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.images import ImageDecodeError, bounded_size, decode_image, image_size, resize_image


def _save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return str(path)


def _gradient(h=8, w=10):
    return (np.arange(h * w, dtype=np.int64).reshape(h, w) * 3 % 256).astype(np.uint8)


def test_grayscale_png_keeps_values_and_one_channel(tmp_path):
    gray = _gradient()
    path = _save(Image.fromarray(gray, "L"), tmp_path / "g.png")
    out = decode_image(path, where=path)
    assert out.dtype == np.uint8 and out.shape == (8, 10, 1)
    np.testing.assert_array_equal(out[..., 0], gray)
    rgb = decode_image(path, where=path, channels=3)
    assert rgb.shape == (8, 10, 3)
    np.testing.assert_array_equal(rgb[..., 2], gray)


def test_rgb_to_gray_is_pillow_luma(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    path = _save(Image.fromarray(rgb, "RGB"), tmp_path / "c.png")
    out = decode_image(path, where=path)
    np.testing.assert_array_equal(out, rgb)
    gray = decode_image(path, where=path, channels=1)
    assert gray.shape == (6, 7, 1)
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(gray[..., 0], expected)
    # ITU-R 601: pure red -> 76, pure green -> 150, pure blue -> 29.
    prim = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    p2 = _save(Image.fromarray(prim), tmp_path / "prim.png")
    assert decode_image(p2, channels=1)[0, :, 0].tolist() == [76, 150, 29]


def test_rgba_composited_on_black(tmp_path):
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, :, :3] = 200
    rgba[0, :, 3] = [255, 0, 128]
    path = _save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png")
    out = decode_image(path)
    assert out.shape == (1, 3, 3)
    assert out[0, :, 0].tolist() == [200, 0, 100]  # 200*128/255 = 100.4


def test_palette_and_la(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[:2] = [10, 20, 30]
    rgb[2:] = [200, 100, 50]
    path = _save(Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=4), tmp_path / "p.png")
    np.testing.assert_array_equal(decode_image(path), rgb)
    la = Image.merge("LA", [Image.fromarray(np.full((2, 2), 100, np.uint8)), Image.fromarray(np.full((2, 2), 255, np.uint8))])
    p2 = _save(la, tmp_path / "la.png")
    out = decode_image(p2)
    assert out.shape == (2, 2, 1) and out.max() == 100


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16bit_scaled_by_shift_8(tmp_path, suffix):
    values = np.array([[0, 255, 256, 4660], [32768, 65280, 65535, 1000]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / f"w{suffix}")
    out = decode_image(path, where=path)
    assert out.dtype == np.uint8 and out.shape == (2, 4, 1)
    np.testing.assert_array_equal(out[..., 0], values >> 8)


def test_16bit_big_endian_mode_and_int32_mode():
    values = np.array([[0, 512, 65535]], dtype=np.uint16)
    img = Image.frombytes("I;16B", (3, 1), values.astype(">u2").tobytes())
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    np.testing.assert_array_equal(decode_image(buf.getvalue())[..., 0], [[0, 2, 255]])
    big = Image.fromarray(np.array([[70000, -5, 1024]], dtype=np.int32), "I")
    buf = io.BytesIO()
    big.save(buf, format="TIFF")
    np.testing.assert_array_equal(decode_image(buf.getvalue())[..., 0], [[255, 0, 4]])


def test_gray_tiff_and_cmyk(tmp_path):
    gray = _gradient(5, 5)
    path = _save(Image.fromarray(gray), tmp_path / "KA.AN1.39.tiff")
    np.testing.assert_array_equal(decode_image(path)[..., 0], gray)
    cmyk = Image.new("CMYK", (3, 2), (0, 255, 255, 0))  # pure red
    p2 = _save(cmyk, tmp_path / "cmyk.tiff")
    out = decode_image(p2)
    assert out.shape == (2, 3, 3)
    assert out[0, 0].tolist() == [255, 0, 0]
    p3 = _save(cmyk, tmp_path / "cmyk.jpg", quality=100)
    assert decode_image(p3).shape == (2, 3, 3)


def test_corrupt_bytes_error_names_file_and_expectation():
    with pytest.raises(ImageDecodeError) as info:
        decode_image(b"\x89PNG\r\n\x1a\n this is not a png", where="faces/bad.png")
    message = str(info.value)
    assert "faces/bad.png" in message and "PNG/JPEG/TIFF" in message
    assert isinstance(info.value, ValueError)


def test_truncated_png_fails_at_decode(tmp_path):
    rng = np.random.default_rng(1)
    full = tmp_path / "full.png"
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="cut.png"):
        decode_image(str(cut))
    with pytest.raises(ImageDecodeError, match="nothere.png"):
        decode_image(str(tmp_path / "nothere.png"))


def test_resize_image():
    img = np.arange(48 * 48, dtype=np.int64).reshape(48, 48, 1).astype(np.uint8)
    out = resize_image(img, (24, 12))
    assert out.shape == (24, 12, 1) and out.dtype == np.uint8
    assert resize_image(np.zeros((10, 20, 3), np.uint8), 7).shape == (7, 7, 3)
    flat = np.full((10, 10, 1), 77, np.uint8)
    assert np.all(resize_image(flat, 64) == 77)
    assert resize_image(img, 48) is img


def test_max_side_decodes_a_large_jpeg_small_and_upright(tmp_path):
    """A 1800x1200 JPEG (EXIF: turn 90 degrees) at max_side=300: the upright 300x200, the
    same picture as decoding whole and resizing; image_size reads the upright size unread."""
    yy, xx = np.mgrid[0:1200, 0:1800].astype(np.uint16)
    pixels = np.stack([xx * 255 // 1800, yy * 255 // 1200, np.full_like(xx, 128)], -1).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: decoded 1200 wide, 1800 high
    Image.fromarray(pixels).save(tmp_path / "large.jpg", quality=95, exif=exif)
    assert image_size(tmp_path / "large.jpg") == (1800, 1200)
    small = decode_image(tmp_path / "large.jpg", max_side=300)
    assert small.shape == (300, 200, 3) and bounded_size((1800, 1200), 300) == (300, 200)
    whole = resize_image(decode_image(tmp_path / "large.jpg"), (300, 200))
    assert np.abs(small.astype(int) - whole).mean() < 2.0
    assert decode_image(tmp_path / "large.jpg", max_side=2000).shape == (1800, 1200, 3)  # fits: decoded whole
