"""How times, durations and scores read on screens and in messages: the site's time zone, seconds, its name.

One place, so the admin's lists, its pages and the API's plain messages say a time the same way
(issue 11, item 2: "times with seconds and time zone"). The site's zone is ``TIME_ZONE``.
"""
from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def local_timestamp(moment: datetime | None) -> str:
    """``2026-11-30 14:05:03 CET``: the site's local time, to the second, with the zone's name; "-" for None."""
    if moment is None:
        return "-"
    local = timezone.localtime(moment) if timezone.is_aware(moment) else moment
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or "")


def duration_text(seconds: float) -> str:
    """``45 s``, ``4 min 10 s``, ``2 h 5 min``, ``3 d 4 h``: a wait or an age, rounded to two units."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


SCORE_DECIMALS = 4
"""AS-normalised scores (siamese-lfw-3.0.2) crowd near 1: the thresholds for 1-5 references lie within
0.005 of each other, so three decimals could show a refused score equal to its threshold."""


def score_text(value: float | None) -> str:
    """A score or threshold as people read it (``0.9817``); "-" for None."""
    return "-" if value is None else f"{value:.{SCORE_DECIMALS}f}"
