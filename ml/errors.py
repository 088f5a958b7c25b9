"""Typed errors for images that cannot be used. Each carries a short machine ``reason``."""

from __future__ import annotations


class ImageError(ValueError):
    """The bytes are not a usable image."""

    reason = "unreadable_image"


class UnreadableImage(ImageError):
    """Empty, truncated, not an image, or a format no decoder here reads."""

    reason = "unreadable_image"


class ImageTooLarge(ImageError):
    """The header announces more pixels than allowed (checked before the full decode)."""

    reason = "image_too_large"


class FaceError(ValueError):
    """The image is readable but does not hold exactly one usable face."""

    reason = "face_error"


class NoFaceFound(FaceError):
    reason = "no_face"


class MultipleFacesFound(FaceError):
    reason = "multiple_faces"
