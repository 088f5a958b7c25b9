"""One exception handler: every error body is {"code", "message", "detail"}."""
from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from verification.errors import DomainError


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "detail": detail if detail is not None else {}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return Response(error_body(exc.code, exc.message, exc.detail), status=exc.status, headers=headers)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("invalid", "The request is invalid.", exc.detail)
    elif isinstance(exc, exceptions.NotAuthenticated):
        response.data = error_body("not_authenticated", "Send 'Authorization: Token <token>'.")
    elif isinstance(exc, exceptions.AuthenticationFailed):
        # A specific code (``signature_*``, verification/api/signatures.py) is kept; the rest say
        # ``authentication_failed``.
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) and codes.startswith("signature_") else "authentication_failed"
        response.data = error_body(code, str(exc.detail))
    elif isinstance(exc, exceptions.Throttled):
        response.data = error_body("throttled", str(exc.detail), {"retry_after": exc.wait})
    elif isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
        response.data = error_body(code, str(exc.detail))
    if response.status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = "Token"
    return response
