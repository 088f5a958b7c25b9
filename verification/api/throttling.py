from rest_framework.throttling import SimpleRateThrottle

from verification import ratelimits
from verification.models import Device


class DeviceRateThrottle(SimpleRateThrottle):
    """Requests per device token (``API_RATE_LIMIT``), counted in the shared cache (``ratelimits``).

    DRF's own throttle reads a history list, appends and writes it back: two processes doing that at
    once lose each other's requests. Here each request is one atomic increment, and every process
    (gunicorn worker, web container) counts into the same Redis key. Refused requests count too, so a
    device that keeps hammering stays refused until the window ends.
    """

    scope = "device"

    def get_cache_key(self, request, view) -> str | None:  # noqa: ANN001 - DRF signature
        if isinstance(request.auth, Device):
            return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
        return None

    def allow_request(self, request, view) -> bool:  # noqa: ANN001 - DRF signature
        self._retry_after = None
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        count = ratelimits.counter_hit(key=self.key, window=self.duration, cache=self.cache, now=self.timer())
        if count.value <= self.num_requests:
            return True
        self._retry_after = count.retry_after
        return False

    def wait(self) -> float | None:
        return self._retry_after
