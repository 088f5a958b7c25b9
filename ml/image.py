"""Decode untrusted image bytes into RGB uint8 arrays, with the pixel limit checked first.

Pillow opens lazily: ``Image.open`` reads only the header, so the size is known (and refused)
before any pixel is decoded. Formats Pillow does not know fall back to OpenCV, whose BGR output
is converted in :func:`_bgr_to_rgb`, the only BGR->RGB conversion in ``ml``.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ml.errors import ImageTooLarge, UnreadableImage
from ml.types import ImageRGB

DEFAULT_MAX_PIXELS = 25_000_000


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageRGB:
    """Decode ``data`` to an RGB ``uint8`` ``(H, W, 3)`` array, EXIF orientation applied.

    Raises :class:`ImageTooLarge` when the header announces more than ``max_pixels`` pixels and
    :class:`UnreadableImage` for anything that is not a complete image.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UnreadableImage(f"expected image bytes, got {type(data).__name__}")
    if max_pixels <= 0:
        raise ValueError("max_pixels must be positive")
    data = bytes(data)
    if not data:
        raise UnreadableImage("empty file")
    try:
        with warnings.catch_warnings():
            # Our own limit replaces Pillow's bomb warning; the error below still fires.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return _decode_with_opencv(data, max_pixels=max_pixels)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImage(f"cannot read image header: {exc}") from exc
    with image:
        _check_pixels(image.width, image.height, max_pixels)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()
                image = ImageOps.exif_transpose(image)
                return _pil_to_rgb(image)
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(str(exc)) from exc
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise UnreadableImage(f"cannot decode image: {exc}") from exc


def read_image(path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageRGB:
    """Read and decode an image file (see :func:`decode_image`)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise UnreadableImage(f"cannot open {path}: {exc.strerror or exc}") from exc
    return decode_image(data, max_pixels=max_pixels)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise UnreadableImage("image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(f"{width}x{height} is {width * height} pixels, more than the limit of {max_pixels}")


def _pil_to_rgb(image: Image.Image) -> ImageRGB:
    """Any Pillow mode (1, L, I;16, I, F, P, LA, RGBA, CMYK, YCbCr...) -> RGB uint8."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # High bit depth greyscale: scale the actual range down to 8 bits rather than clip it.
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if mode.startswith("I;16") else max(float(array.max()), 1.0)
        grey = np.clip(array * (255.0 / high), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Composite transparent pixels on white, as a viewer would show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _decode_with_opencv(data: bytes, *, max_pixels: int) -> ImageRGB:
    import cv2  # OpenCV is only needed for the rare formats Pillow does not identify.

    buffer = np.frombuffer(data, dtype=np.uint8)
    # OpenCV offers no header-only read from memory; its own pixel cap bounds the damage,
    # then our limit applies to what it produced.
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise UnreadableImage("not an image in any format this service reads")
    _check_pixels(decoded.shape[1], decoded.shape[0], max_pixels)
    return _bgr_to_rgb(decoded)


def _bgr_to_rgb(decoded: np.ndarray) -> ImageRGB:
    """The one BGR->RGB conversion in ``ml``: OpenCV output of any depth/channels -> RGB uint8."""
    import cv2

    if decoded.dtype != np.uint8:
        high = 65535.0 if decoded.dtype == np.uint16 else max(float(decoded.max()), 1.0)
        decoded = np.clip(decoded.astype(np.float64) * (255.0 / high), 0, 255).astype(np.uint8)
    if decoded.ndim == 2:
        return np.ascontiguousarray(cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB))
    channels = decoded.shape[2]
    if channels == 1:
        return np.ascontiguousarray(cv2.cvtColor(decoded[:, :, 0], cv2.COLOR_GRAY2RGB))
    if channels == 4:
        return np.ascontiguousarray(cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB))
    return np.ascontiguousarray(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB))
