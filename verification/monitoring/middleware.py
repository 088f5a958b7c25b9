"""Answers the container probes before any other middleware runs.

``/healthz`` and ``/readyz`` are asked by Docker's healthcheck over plain HTTP at 127.0.0.1:8000, by a
load balancer or by an orchestrator, none of which knows the site's host name or speaks TLS to the
process. Behind this middleware the request would meet ``ALLOWED_HOSTS`` (400) and
``SECURE_SSL_REDIRECT`` (301) first. Both answers reveal nothing about the site beyond which component
is down, and neither builds a URL from the Host header, so they skip those checks. ``/metrics`` does not:
it goes through every middleware (``views.py`` says why).
"""
from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

from verification.monitoring import views

PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": views.healthz, "/readyz": views.readyz}


class ProbeMiddleware:
    # Both modes: under ASGI a sync-only middleware would make Django run every request through a thread
    # that blocks until the response, a waiting door's wait included (``verification/api/views.py``).
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if iscoroutinefunction(self):
            return self._acall(request)
        probe = PROBES.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return probe(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is None:
            return await self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return await sync_to_async(probe)(request)
