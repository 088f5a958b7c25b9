"""Security alerts for operators: the log, and an optional webhook (``ALERT_WEBHOOK_URL``).

``alert_send`` logs at the given level and, when a webhook is configured, POSTs a small JSON body
(``{"event", "message", "detail", "at"}``) with a short timeout. A webhook that is down, slow or answers
an error is logged and never raises: the alert must not break the task that raises it.
"""
from __future__ import annotations

import json
import logging
from typing import Any
from urllib.request import Request, urlopen

from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 5


def alert_send(*, event: str, message: str, detail: dict[str, Any] | None = None, level: int = logging.ERROR) -> bool:
    """Log the alert; post it to ``ALERT_WEBHOOK_URL`` if set. True if the webhook took it."""
    logger.log(level, "%s: %s", event, message)
    url = getattr(settings, "ALERT_WEBHOOK_URL", "")
    if not url:
        return False
    body = json.dumps(
        {"event": event, "message": message, "detail": detail or {}, "at": timezone.now().isoformat()}, default=str
    ).encode()
    request = Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310 - http(s) only, settings check it
            status = getattr(response, "status", 200)
    except Exception as exc:  # noqa: BLE001 - an alert channel that fails must not raise
        logger.warning("alert webhook for %s failed: %r", event, exc)
        return False
    if status >= 300:
        logger.warning("alert webhook for %s answered HTTP %s", event, status)
        return False
    return True
