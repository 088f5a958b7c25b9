"""Waking the requests that wait (``wait``) for their check-in's answer (issue 12, item 3).

The worker announces a check-in that became final (decided or failed) once the transaction that made
it so has committed: a Redis ``PUBLISH`` on the check-in's own channel (``CHECKIN_WAKEUP_URL``, the
broker's Redis by default). The API's waiting request subscribes to that channel, then reads the row
once more (the decision may have been committed before the subscription existed), then sleeps until
the message, its deadline, or a slow safety re-read, whichever comes first. It holds no database
connection while it sleeps and, served by the ASGI server, no thread either.

Nothing is lost when the notification is: without Redis (laptop mode: tasks run in-process, the row
is final before the wait starts), with Redis down or dying mid-wait, the wait re-reads the row as it
did before this module (every 10-25 ms); a notification lost in a Redis restart costs at most the
safety interval. Any writer that makes a check-in final outside ``checkin_decide``/``checkin_fail``
(e.g. a guard's review) calls :func:`checkin_announce_final` in its transaction, or its waiters find
the answer at their next safety re-read.
"""
from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction

from verification.models import CheckIn

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "accesscontrol:checkin-final:"
FINAL_STATUSES = (CheckIn.Status.DECIDED, CheckIn.Status.FAILED)
# Without notifications: re-read the row often (a PK lookup is cheap; each interval adds up to its
# length to the door's wait), backing off a little for long waits.
POLL_FIRST_SECONDS = 0.01
POLL_MAX_SECONDS = 0.025
# With notifications: re-read the row this often anyway, so a lost message costs at most this much.
SAFETY_REREAD_SECONDS = 1.0
# Redis that does not answer within this is treated as down (the wait falls back to re-reading).
REDIS_TIMEOUT_SECONDS = 1.0

_publishers: dict[str, object] = {}  # one client per URL and process


def channel(checkin_id: int) -> str:
    return f"{CHANNEL_PREFIX}{checkin_id}"


# --- Worker side ---------------------------------------------------------------------------------


def checkin_announce_final(*, checkin_id: int) -> None:
    """Wake the requests waiting for ``checkin_id`` once the current transaction commits (at once
    outside one). Never raises: a notification that cannot be sent only makes the waiters re-read."""
    if settings.CHECKIN_WAKEUP_URL:
        transaction.on_commit(lambda: _publish(checkin_id))


def _publish(checkin_id: int) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    url = settings.CHECKIN_WAKEUP_URL
    try:
        publisher = _publishers.get(url)
        if publisher is None:
            # redis-py's pool notices a fork and reconnects in the child: one client per process is safe.
            # One attempt (redis-py retries 3 times with backoff by default): a Redis that is down costs
            # the worker at most REDIS_TIMEOUT_SECONDS per decision, and the waiters re-read anyway.
            publisher = _publishers[url] = redis.Redis.from_url(
                url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS,
                retry=Retry(NoBackoff(), 0),
            )
        publisher.publish(channel(checkin_id), b"final")
    except (redis.RedisError, OSError) as exc:
        logger.warning("could not announce check-in %s (%r); its waiters find it when they re-read", checkin_id, exc)


# --- Web side --------------------------------------------------------------------------------------


# The door's wait also ends at ``review`` (services/reviews.py): it shows "please wait" and polls for the
# guard's decision; opening a review announces it like a decision.
WAIT_ENDS_AT = (*FINAL_STATUSES, CheckIn.Status.REVIEW)


class CheckinRowReader:
    """An ``is_final`` for :func:`checkin_wait_final` that keeps the row it read last (with its device), so
    that the answer after a wait that ended final is built from that row instead of reading it once more
    (one query fewer on every door's answer)."""

    def __init__(self) -> None:
        self.row: CheckIn | None = None

    def __call__(self, checkin_id: int) -> bool:
        self.row = CheckIn.objects.select_related("device").filter(pk=checkin_id).first()
        _release_connection()
        return self.row is not None and self.row.status in WAIT_ENDS_AT


def _release_connection() -> None:
    """Give a pooled connection back while the request sleeps (``DATABASE_POOL``, on under ASGI).

    Never inside a transaction (the tests' ``db`` fixture wraps each test in one); without a pool the
    connection stays (closing it would only cost a reconnect)."""
    if connection.connection is not None and not connection.in_atomic_block and getattr(connection, "pool", None):
        connection.close()


async def checkin_wait_final(*, checkin_id: int, until: float, is_final: Callable[[int], bool] | None = None) -> bool:
    """Return once check-in ``checkin_id`` is final (True) or when ``time.monotonic()`` reaches ``until``
    (False). ``is_final`` reads the row (default: a :class:`CheckinRowReader`; tests count its calls); it
    runs in the request's thread."""
    read = sync_to_async(is_final or CheckinRowReader())
    if settings.CHECKIN_WAKEUP_URL:
        try:
            return await _wait_notified(checkin_id, until, read)
        except _NotificationsDown as exc:
            logger.warning("check-in %s: decision notifications unavailable (%r); re-reading the row instead",
                           checkin_id, exc.__cause__)
    return await _wait_polling(checkin_id, until, read)


class _NotificationsDown(Exception):
    pass


async def _wait_notified(checkin_id: int, until: float, read: Callable) -> bool:
    import redis

    pubsub = _subscriber_client().pubsub()  # a connection of its own, from the loop's client's pool
    try:
        try:
            await asyncio.wait_for(pubsub.subscribe(channel(checkin_id)), REDIS_TIMEOUT_SECONDS)
            # Wait for Redis to confirm: only then is a PUBLISH after the re-read below sure to reach us.
            confirmed = await pubsub.get_message(timeout=REDIS_TIMEOUT_SECONDS)
            if not confirmed or confirmed.get("type") != "subscribe":
                raise _NotificationsDown(f"no subscription confirmation: {confirmed!r}")
        except (redis.RedisError, OSError, asyncio.TimeoutError) as exc:
            raise _NotificationsDown(repr(exc)) from exc
        # The decision may have been committed (and announced) before the subscription: look once more.
        if await read(checkin_id):
            return True
        while True:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return False  # the read just before was at or after the deadline
            try:
                await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(remaining, SAFETY_REREAD_SECONDS))
            except (redis.RedisError, OSError) as exc:
                # Redis went away mid-wait: the caller re-reads the row for the rest of the wait.
                raise _NotificationsDown(repr(exc)) from exc
            # A message, the safety interval or the deadline: the row says whether it is final (a message
            # is only a hint: whoever sent it, the row is the answer).
            if await read(checkin_id):
                return True
    finally:
        try:
            await pubsub.aclose()
        except (redis.RedisError, OSError):
            pass


# One client per event loop and URL (a web process has one loop; the test client runs each request in a
# loop of its own): building a client per wait cost the web ~3 % of its CPU at rush hour (redis-py reads
# its own package metadata for every new client). Each wait still subscribes on a connection of its own.
_subscriber_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]]" = weakref.WeakKeyDictionary()


def _subscriber_client() -> Any:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    clients = _subscriber_clients.setdefault(asyncio.get_running_loop(), {})
    url = settings.CHECKIN_WAKEUP_URL
    if url not in clients:
        clients[url] = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=None,  # get_message's own timeout bounds each read
            retry=Retry(NoBackoff(), 0),  # a dropped connection ends the wait on Redis at once: re-read the row
        )
    return clients[url]


async def _wait_polling(checkin_id: int, until: float, read: Callable) -> bool:
    interval = POLL_FIRST_SECONDS
    while True:
        if await read(checkin_id):
            return True
        remaining = until - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(interval, remaining))
        interval = min(POLL_MAX_SECONDS, interval * 1.5)
