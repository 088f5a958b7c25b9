"""Signed requests for devices that opted in (issue 9, item 7).

A device given a signing secret (admin action or ``create_device --signing``) sends, with its token:

- ``X-Signature-Timestamp``: unix seconds, within ``REQUEST_SIGNATURE_MAX_SKEW_SECONDS`` of the server;
- ``X-Signature-Nonce``: 16-64 url-safe characters (``A-Z a-z 0-9 - _``), never reused;
- ``X-Signature``: hex HMAC-SHA256 keyed with the secret over
  ``f"{timestamp}\\n{nonce}\\n{METHOD}\\n{path}\\n{sha256(body).hexdigest()}"``, where ``path`` is the
  request path with its query string (``?wait=5``) when there is one, and ``body`` the raw request body
  (empty for GET).

Any of these missing or wrong is a 401 with a ``signature_*`` code. A nonce is remembered in the
Django cache (shared Redis in deployment, ``cache.add``) for twice the skew, the longest a timestamp stays
acceptable, so the same signed request cannot be sent twice.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import logging
import re
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions
from rest_framework.request import Request

from verification.models import Device

logger = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Signature-Timestamp"
NONCE_HEADER = "X-Signature-Nonce"
SIGNATURE_HEADER = "X-Signature"
NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
SIGNATURE_PATTERN = re.compile(r"[0-9a-fA-F]{64}")
TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")


def signing_string(*, timestamp: str, nonce: str, method: str, path: str, body: bytes) -> bytes:
    """What the device signs (and the server recomputes)."""
    return f"{timestamp}\n{nonce}\n{method.upper()}\n{path}\n{hashlib.sha256(body).hexdigest()}".encode()


def sign(*, secret: str, timestamp: str, nonce: str, method: str, path: str, body: bytes) -> str:
    """The hex signature of a request: what a device computes (used by the tests and the README recipe)."""
    message = signing_string(timestamp=timestamp, nonce=nonce, method=method, path=path, body=body)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _fail(code: str, message: str, device: Device) -> exceptions.AuthenticationFailed:
    logger.warning("refused request of %s: %s", device.name, code)
    return exceptions.AuthenticationFailed(message, code=code)


def _raw_body(request: Request) -> bytes:
    """The raw body, read once and left readable for the parsers (multipart included). Bounded like the
    check-in view: an oversized body is refused from its Content-Length before it is read."""
    # Imported here: importing DRF's views loads the authentication classes, which import this module.
    from verification.api.views import _reject_oversized_body

    django_request = request._request
    if hasattr(django_request, "_body"):
        return django_request._body
    if django_request._read_started:
        raise exceptions.AuthenticationFailed("The request body was read before its signature was checked.",
                                              code="signature_invalid")
    _reject_oversized_body(request)
    # HttpRequest.body would refuse anything over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), below the snapshot
    # limit; read the (already bounded) stream directly and leave it where Django's parsers look for it.
    body = django_request.read()
    django_request._body = body
    django_request._stream = io.BytesIO(body)
    return body


def verify_signature(request: Request, device: Device) -> None:
    """Refuse (401, ``signature_*``) a request of a signing device that is not correctly signed, is stale,
    or reuses a nonce. Returns nothing when the request is good; its nonce is then spent."""
    headers = request.headers
    timestamp, nonce, signature = (headers.get(h) for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER))
    if not (timestamp and nonce and signature):
        raise _fail(
            "signature_missing",
            f"This device signs its requests: send {TIMESTAMP_HEADER}, {NONCE_HEADER} and {SIGNATURE_HEADER}.",
            device,
        )
    if not TIMESTAMP_PATTERN.fullmatch(timestamp):
        raise _fail("signature_malformed", f"{TIMESTAMP_HEADER} must be unix seconds.", device)
    if not NONCE_PATTERN.fullmatch(nonce):
        raise _fail("signature_malformed", f"{NONCE_HEADER} must be 16-64 characters of A-Z a-z 0-9 - _.", device)
    if not SIGNATURE_PATTERN.fullmatch(signature):
        raise _fail("signature_malformed", f"{SIGNATURE_HEADER} must be a hex HMAC-SHA256 (64 characters).", device)
    max_skew = settings.REQUEST_SIGNATURE_MAX_SKEW_SECONDS
    if abs(time.time() - int(timestamp)) > max_skew:
        raise _fail(
            "signature_stale",
            f"{TIMESTAMP_HEADER} is more than {max_skew} s away from the server's clock.",
            device,
        )
    expected = sign(
        secret=device.signing_secret,
        timestamp=timestamp,
        nonce=nonce,
        method=request.method,
        path=request._request.get_full_path(),
        body=_raw_body(request),
    )
    if not hmac.compare_digest(expected, signature.lower()):
        raise _fail("signature_invalid", "The request signature does not match.", device)
    # Only a correctly signed request spends its nonce; add() is atomic in Redis, so two racing copies of
    # one request cannot both pass.
    if not cache.add(f"signed-request-nonce:{device.pk}:{nonce}", 1, timeout=2 * max_skew + 1):
        raise _fail("signature_nonce_reused", f"This {NONCE_HEADER} was already used.", device)
