"""``Authorization: Token <token>`` checked against the hashed device tokens.

A revoked device's token is unknown here (``selectors.device_by_token``). With
``DEVICE_TOKEN_MAX_AGE_DAYS`` set, a token older than that is refused too, until an operator issues a
new one (issue 9, item 4).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from verification import selectors, services
from verification.api.signatures import verify_signature
from verification.models import Device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevicePrincipal:
    """``request.user`` for a device: DRF asks it whether it is authenticated."""

    device: Device
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def pk(self) -> int:
        return self.device.pk

    def __str__(self) -> str:
        return f"device:{self.device.name}"


class DeviceTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[DevicePrincipal, Device] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: use 'Token <token>'.")
        try:
            raw_token = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token header: the token is not text.") from None
        device = selectors.device_by_token(raw_token=raw_token)
        if device is None:
            # Unknown and revoked tokens look the same to the caller; the log says which prefix.
            logger.warning("rejected device token %s... from %s", raw_token[:8], request.META.get("REMOTE_ADDR"))
            raise exceptions.AuthenticationFailed("Unknown or revoked token.")
        if _token_expired(device):
            logger.warning("expired device token %s... of %s", raw_token[:8], device.name)
            raise exceptions.AuthenticationFailed("The token has expired; an operator must issue a new one.")
        if device.signs_requests:
            verify_signature(request, device)
        services.device_seen(device=device)
        return DevicePrincipal(device), device

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (with WWW-Authenticate) rather than 403.
        return self.keyword


def _token_expired(device: Device) -> bool:
    max_age_days = settings.DEVICE_TOKEN_MAX_AGE_DAYS
    if not max_age_days:
        return False
    if device.token_issued_at is None:
        return True  # Age unknown: fail closed while expiry is on.
    return timezone.now() - device.token_issued_at > timedelta(days=max_age_days)


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    """Documents the device token in the OpenAPI schema."""

    target_class = "verification.api.authentication.DeviceTokenAuthentication"
    name = "DeviceToken"

    def get_security_definition(self, auto_schema):  # noqa: ANN001, ANN201 - drf-spectacular signature
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <device token>` (from the admin or `manage.py create_device`).",
        }
