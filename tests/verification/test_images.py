"""Web-side image checks: what is accepted, what is refused and with which code, before decoding."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.conftest import image_bytes
from verification.errors import InvalidImage
from verification.images import validate_image

LIMITS = {"max_bytes": 10_000_000, "max_pixels": 25_000_000}


def encoded(image: Image.Image, fmt: str, **params) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    ("make", "fmt"),
    [
        (lambda: encoded(Image.new("RGB", (64, 48), "red"), "JPEG"), "JPEG"),
        (lambda: encoded(Image.new("RGBA", (64, 48), "red"), "PNG"), "PNG"),
        (lambda: encoded(Image.new("L", (64, 48), 90), "JPEG"), "JPEG"),
        (lambda: encoded(Image.new("CMYK", (64, 48), (0, 50, 50, 0)), "JPEG"), "JPEG"),
        (lambda: encoded(Image.new("I;16", (64, 48), 4000), "PNG"), "PNG"),
        (lambda: encoded(Image.new("P", (64, 48), 3), "GIF"), "GIF"),
        (lambda: encoded(Image.new("RGB", (64, 48), "blue"), "WEBP"), "WEBP"),
    ],
    ids=["jpeg", "png-alpha", "greyscale", "cmyk", "png-16bit", "gif", "webp"],
)
def test_common_formats_and_modes_are_accepted(make, fmt):
    info = validate_image(make(), **LIMITS)
    assert (info.format, info.width, info.height) == (fmt, 64, 48)


def test_exif_rotated_photo_is_accepted():
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise
    info = validate_image(encoded(Image.new("RGB", (64, 48), "red"), "JPEG", exif=exif), **LIMITS)
    assert info.format == "JPEG"


def test_png_bomb_over_the_pixel_limit_is_refused_before_decoding(monkeypatch):
    bomb = encoded(Image.new("L", (10_000, 5_000), 0), "PNG")  # 50 megapixels, a few kB on disk
    assert len(bomb.getvalue()) < 200_000
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(True))
    with pytest.raises(InvalidImage) as caught:
        validate_image(bomb, **LIMITS)
    assert caught.value.code == "image_too_large"
    assert decoded == []


def test_file_over_the_size_limit_is_refused():
    with pytest.raises(InvalidImage) as caught:
        validate_image(io.BytesIO(image_bytes()), max_bytes=100, max_pixels=LIMITS["max_pixels"])
    assert caught.value.code == "file_too_large"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"hello, I am a text file", "unreadable_image"),
        (image_bytes()[:300], "unreadable_image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "unreadable_image"),
    ],
    ids=["empty", "text", "truncated-jpeg", "svg"],
)
def test_non_images_are_refused_with_a_code(data, code):
    with pytest.raises(InvalidImage) as caught:
        validate_image(io.BytesIO(data), **LIMITS)
    assert caught.value.code == code


def test_format_outside_the_allowed_list_is_refused():
    with pytest.raises(InvalidImage) as caught:
        validate_image(encoded(Image.new("RGB", (8, 8)), "ICO"), **LIMITS)
    assert caught.value.code == "unsupported_format"


def test_validation_leaves_the_file_at_its_start():
    file = io.BytesIO(image_bytes())
    validate_image(file, **LIMITS)
    assert file.tell() == 0
