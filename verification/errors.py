"""Domain errors. The API renders them as {"code", "message", "detail"}; the admin as form errors."""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A request the service refuses; ``code`` is stable and machine-readable."""

    code = "invalid"
    status = 400
    # Seconds for the API's Retry-After header; None sends none.
    retry_after: int | None = None

    def __init__(
        self, message: str, *, code: str | None = None, detail: Any = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retry_after is not None:
            self.retry_after = retry_after
        self.detail = detail if detail is not None else {}


class InvalidImage(DomainError):
    """Empty, too big, not an image, truncated, or too many pixels."""

    code = "invalid_image"


class DeviceRevoked(DomainError):
    code = "device_revoked"
    status = 401


class DeviceLockedOut(DomainError):
    """The device is locked out after repeated refusals: nothing is stored until the lockout ends."""

    code = "device_locked_out"
    status = 429


class ServiceUnavailable(DomainError):
    """The check-in could not even be stored; the device should retry later."""

    code = "unavailable"
    status = 503
    retry_after = 5


class ModelUnavailable(Exception):
    """The worker could not load the face model (missing or broken files). Retried: an operator can
    fix it; not a ``DomainError`` because no request caused it."""
