"""decode_image: every accepted format becomes RGB uint8, every bad input gets a typed error."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

import ml
from ml.image import decode_image


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR announces width x height but whose pixel data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b"")


def test_rgb_jpeg_decodes_to_rgb_uint8():
    image = Image.new("RGB", (40, 30), (200, 10, 20))
    decoded = decode_image(_encode(image, "PNG"))
    assert decoded.shape == (30, 40, 3) and decoded.dtype == np.uint8
    assert tuple(decoded[0, 0]) == (200, 10, 20)


@pytest.mark.parametrize(
    "mode, value",
    [("L", 120), ("1", 255), ("I;16", 65535), ("RGBA", (10, 20, 30, 255)), ("CMYK", (0, 0, 0, 0)), ("P", 3)],
)
def test_other_modes_become_three_channel_uint8(mode, value):
    image = Image.new(mode, (16, 8), value)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(_encode(image, fmt))
    assert decoded.shape == (8, 16, 3) and decoded.dtype == np.uint8


def test_sixteen_bit_greyscale_keeps_its_brightness():
    image = Image.new("I;16", (4, 4), 32768)
    decoded = decode_image(_encode(image, "PNG"))
    assert 120 <= int(decoded[0, 0, 0]) <= 135


def test_transparent_pixels_composite_on_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert tuple(decode_image(_encode(image, "PNG"))[0, 0]) == (255, 255, 255)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    decoded = decode_image(_encode(image, "JPEG", exif=exif, quality=95))
    assert decoded.shape == (40, 20, 3)  # portrait once rotated
    top = decoded[2, 10].astype(int)
    assert top[0] > 180 and top[2] < 80  # the red strip is now at the top


def test_gif_and_webp_decode():
    image = Image.new("RGB", (12, 12), (0, 200, 0))
    for fmt in ("GIF", "WEBP"):
        assert decode_image(_encode(image, fmt)).shape == (12, 12, 3)


def test_format_only_opencv_reads_is_converted_from_bgr():
    bgr = np.zeros((6, 7, 3), dtype=np.uint8)
    bgr[..., 2] = 255  # red, in OpenCV's channel order
    ok, encoded = cv2.imencode(".pam", bgr)
    assert ok
    decoded = decode_image(encoded.tobytes())
    assert tuple(decoded[0, 0]) == (255, 0, 0)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, this is text pretending to be an image", b"\xff\xd8\xff\xe0" + b"\x00" * 20],
    ids=["empty", "text", "jpeg-magic-only"],
)
def test_non_images_are_unreadable(data):
    with pytest.raises(ml.UnreadableImage) as info:
        decode_image(data)
    assert info.value.reason == "unreadable_image"


def test_truncated_jpeg_is_unreadable():
    data = _encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    with pytest.raises(ml.UnreadableImage):
        decode_image(data[: len(data) // 2])


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    # 100k x 100k announced, no pixel data: only a header check can answer without decoding.
    with pytest.raises(ml.ImageTooLarge) as info:
        decode_image(_png_header_only(100_000, 100_000))
    assert info.value.reason == "image_too_large"


def test_custom_pixel_limit_applies():
    data = _encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ml.ImageTooLarge):
        decode_image(data, max_pixels=9_999)
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)


def test_non_bytes_input_is_refused():
    with pytest.raises(ml.UnreadableImage):
        decode_image("not bytes")  # type: ignore[arg-type]


def test_errors_share_bases_for_callers():
    assert issubclass(ml.UnreadableImage, ml.ImageError) and issubclass(ml.ImageTooLarge, ml.ImageError)
    assert issubclass(ml.NoFaceFound, ml.FaceError) and issubclass(ml.MultipleFacesFound, ml.FaceError)
    assert ml.NoFaceFound.reason == "no_face" and ml.MultipleFacesFound.reason == "multiple_faces"
