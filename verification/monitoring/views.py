"""``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` and ``/readyz`` are answered by ``ProbeMiddleware`` ahead of the host check and the HTTPS
redirect (a container probe talks plain HTTP to 127.0.0.1). ``/metrics`` is an ordinary URL behind every
middleware (ALLOWED_HOSTS too: a browser inside an allowed network cannot be made to read it through a
DNS-rebound name), open only to:

- a request whose address (``login_throttle.client_address``: ``REMOTE_ADDR`` or ``CLIENT_IP_HEADER``)
  is in ``METRICS_ALLOWED_NETWORKS``, or
- a request with ``Authorization: Bearer <METRICS_TOKEN>``.

Neither setting configured: 404, as if there were no such page. A missing or wrong token: 401; no token
configured and an address outside the networks: 403.
"""
from __future__ import annotations

import hmac
from ipaddress import ip_address, ip_network

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from verification.login_throttle import client_address
from verification.monitoring import metrics as metrics_exposition
from verification.monitoring import readiness as readiness_checks


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def healthz(request: HttpRequest) -> HttpResponse:
    """The process is alive and answers; touches neither the database nor the broker."""
    return _no_store(JsonResponse({"status": "alive"}))


def readyz(request: HttpRequest) -> HttpResponse:
    """200 when a check-in can be decided now, else 503 naming the failing components."""
    report = readiness_checks.readiness()
    return _no_store(JsonResponse(report.as_dict(), status=200 if report.ok else 503))


def _from_allowed_network(request: HttpRequest) -> bool:
    try:
        address = ip_address(client_address(request))
    except ValueError:
        return False
    return any(address in ip_network(network, strict=False) for network in settings.METRICS_ALLOWED_NETWORKS)


def _bearer_token(request: HttpRequest) -> str:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def metrics_access_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when ``request`` may read /metrics; otherwise the response that refuses it."""
    token = settings.METRICS_TOKEN
    if not token and not settings.METRICS_ALLOWED_NETWORKS:
        return HttpResponse("Not found.", status=404, content_type="text/plain")
    if _from_allowed_network(request):
        return None
    if not token:
        return HttpResponse("Forbidden.", status=403, content_type="text/plain")
    offered = _bearer_token(request)
    if offered and hmac.compare_digest(offered.encode(), token.encode()):
        return None
    response = HttpResponse("A valid bearer token is required.", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = 'Bearer realm="metrics"' + (', error="invalid_token"' if offered else "")
    return response


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = metrics_access_refusal(request)
    if refusal is not None:
        return _no_store(refusal)
    return _no_store(HttpResponse(metrics_exposition.exposition(), content_type=CONTENT_TYPE_LATEST))
