"""Failed admin logins per user name and client address, counted in the shared cache (issue 9, item 8).

After ``ADMIN_LOGIN_MAX_FAILURES`` failed logins for one user name from one address within
``ADMIN_LOGIN_WINDOW_SECONDS``, the admin's login form refuses that pair until the window ends,
without checking the password (so a refused guess is not tested and costs no password hash). A
successful login clears the count. The counter lives in the ``default`` cache, Redis in a deployment,
so every gunicorn process and web container shares it (``verification/ratelimits.py``).

The address is ``REMOTE_ADDR``, or, behind a reverse proxy, the header named by ``CLIENT_IP_HEADER``
(e.g. ``HTTP_X_REAL_IP``), which the proxy must overwrite on every request; its last comma-separated
value is used, the one the nearest proxy added.
"""
from __future__ import annotations

import logging
import math

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from verification import ratelimits

logger = logging.getLogger(__name__)


def client_address(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    header = settings.CLIENT_IP_HEADER
    value = request.META.get(header, "") if header else ""
    if value:
        return value.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def _key(username: str, request: HttpRequest | None) -> str:
    return "admin-login:" + ratelimits.counter_key(username.casefold(), client_address(request))


def login_refused_for(*, username: str, request: HttpRequest | None) -> float | None:
    """Seconds until ``username`` may try again from this request's address; None when it may now."""
    count = ratelimits.counter_peek(key=_key(username, request), window=settings.ADMIN_LOGIN_WINDOW_SECONDS)
    return count.retry_after if count.value >= settings.ADMIN_LOGIN_MAX_FAILURES else None


def login_failure_note(*, username: str, request: HttpRequest | None) -> int:
    """Count one failed login; return the failures in the current window."""
    count = ratelimits.counter_hit(key=_key(username, request), window=settings.ADMIN_LOGIN_WINDOW_SECONDS)
    if count.value == settings.ADMIN_LOGIN_MAX_FAILURES:
        logger.warning(
            "admin login: %s failed logins for user %r from %s; refused for up to %d s",
            count.value, username, client_address(request), math.ceil(count.retry_after),
        )
    return count.value


def login_failures_clear(*, username: str, request: HttpRequest | None) -> None:
    ratelimits.counter_clear(key=_key(username, request), window=settings.ADMIN_LOGIN_WINDOW_SECONDS)


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, refusing a user name and address after too many failures."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "too_many_attempts": (
            "Too many failed logins for this account from your address. Try again in %(minutes)d "
            "minute(s), or ask an administrator to check the account."
        ),
    }

    def clean(self):  # noqa: ANN201 - Django signature
        username = self.cleaned_data.get("username")
        if not username or not self.cleaned_data.get("password"):
            return super().clean()
        retry_after = login_refused_for(username=username, request=self.request)
        if retry_after is not None:
            raise ValidationError(
                self.error_messages["too_many_attempts"],
                code="too_many_attempts",
                params={"minutes": max(1, math.ceil(retry_after / 60))},
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            login_failure_note(username=username, request=self.request)
            raise
        login_failures_clear(username=username, request=self.request)
        return cleaned
