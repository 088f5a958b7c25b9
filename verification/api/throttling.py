from rest_framework.throttling import SimpleRateThrottle

from verification.models import Device


class DeviceRateThrottle(SimpleRateThrottle):
    """Requests per device token (``API_RATE_LIMIT``)."""

    scope = "device"

    def get_cache_key(self, request, view) -> str | None:  # noqa: ANN001 - DRF signature
        if isinstance(request.auth, Device):
            return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
        return None
