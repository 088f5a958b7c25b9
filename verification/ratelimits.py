"""Attempt counters that every process shares through Django's cache (issue 9, item 8).

Gunicorn runs several worker processes, and compose can run several web containers: a counter in one
process's memory lets each of them grant the full limit. These counters live in the ``default`` cache,
which is Redis whenever a broker is configured (``CACHE_URL``, see settings), so every process counts
into the same key. Local memory is used only by the laptop default without a broker.

A counter is a fixed window: the key carries the window's number, is created with ``add`` and counted
with ``incr``, both single atomic operations in Redis (and under a lock in local memory), so two
processes hitting the same key at the same instant cannot lose a count the way a read-modify-write of
a history list does. The price of a fixed window: a client can spend its limit at the end of one
window and again at the start of the next.

A cache that cannot be reached counts nothing (logged at WARNING): in compose the cache is the broker's
Redis, and a check-in submitted while Redis is away must still be stored for the sweep to queue later,
not be answered 500; admins must still be able to log in during that incident.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import redis
from django.core.cache import BaseCache, cache as default_cache

logger = logging.getLogger(__name__)

# What a cache that is down raises (Redis refused, timed out; a socket error).
CACHE_DOWN = (redis.RedisError, OSError)

# Keys outlive their window a little, so none can expire between the ``add`` and the ``incr``.
_EXPIRY_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class Count:
    """A counter's value in the current window and the seconds until that window ends."""

    value: int
    retry_after: float


def _window_key(key: str, window: int, now: float) -> tuple[str, float]:
    index = int(now // window)
    return f"ratelimit:{key}:{window}:{index}", (index + 1) * window - now


def counter_hit(*, key: str, window: int, cache: BaseCache | None = None, now: float | None = None) -> Count:
    """Count one event for ``key`` in the current ``window`` (seconds); return the count including it."""
    cache = cache or default_cache
    window_key, remaining = _window_key(key, window, time.time() if now is None else now)
    try:
        for _ in range(2):
            cache.add(window_key, 0, timeout=window + _EXPIRY_MARGIN_SECONDS)
            try:
                return Count(value=cache.incr(window_key), retry_after=remaining)
            except ValueError:  # evicted between add and incr (a full cache): create it again
                continue
    except CACHE_DOWN as exc:
        logger.warning("rate limit %s not counted, the cache is unreachable: %r", key.split(":")[0], exc)
        return Count(value=0, retry_after=remaining)
    return Count(value=1, retry_after=remaining)


def counter_peek(*, key: str, window: int, cache: BaseCache | None = None, now: float | None = None) -> Count:
    """The count for ``key`` in the current window, without counting."""
    cache = cache or default_cache
    window_key, remaining = _window_key(key, window, time.time() if now is None else now)
    try:
        return Count(value=int(cache.get(window_key, 0)), retry_after=remaining)
    except CACHE_DOWN as exc:
        logger.warning("rate limit %s not read, the cache is unreachable: %r", key.split(":")[0], exc)
        return Count(value=0, retry_after=remaining)


def counter_clear(*, key: str, window: int, cache: BaseCache | None = None, now: float | None = None) -> None:
    """Forget the current window's count for ``key``."""
    cache = cache or default_cache
    window_key, _ = _window_key(key, window, time.time() if now is None else now)
    try:
        cache.delete(window_key)
    except CACHE_DOWN as exc:
        logger.warning("rate limit %s not cleared, the cache is unreachable: %r", key.split(":")[0], exc)


def counter_key(*parts: str) -> str:
    """A cache-safe key for arbitrary parts (user names, addresses): their digest, never the text."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
