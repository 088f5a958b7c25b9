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
    """No confident face anywhere in the frame."""

    reason = "no_face"


class FaceTooSmall(FaceError):
    """A face was found, but it is smaller than the model can verify reliably (``ml.align.MIN_FACE_PX``)."""

    reason = "face_too_small"


class MultipleFacesFound(FaceError):
    """Another face is large enough, next to the principal one, to be a second person at the door."""

    reason = "multiple_faces"
