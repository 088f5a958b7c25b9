"""May this person pass this door now? (issue 11, item 1). Reads only; changes are ``access_rules.py``.

The rule, asked by ``checkin_submit`` before anything is queued (and again by the worker before any face
work, for check-ins that waited while the rules changed):

1. The device's door. A device with no door follows ``DEVICE_WITHOUT_DOOR``: ``auto`` (the default)
   leaves it without access rules while the site has no door at all, so an install from before doors
   keeps working exactly as it did, and refuses it ``not_authorized_here`` as soon as any door exists
   (a device someone forgot to place must not open for everyone); ``unrestricted`` and ``refused`` say
   so whatever else exists.
2. The person's access groups that grant the door's zone. None: ``not_authorized_here``.
3. The time, on the site's wall clock (``TIME_ZONE``, daylight saving included): admitted when any of
   those groups has a window open now, else ``outside_schedule``.

Windows are weekly (day, start, end) wall-clock times. ``end`` at or before ``start`` ends the next day
(22:00-06:00; 00:00-00:00 is the whole day). A window belongs to the day it starts on: on a holiday of
the group (site-wide, or the group's own) the group's windows starting that day do not apply and its
``Holidays`` windows do instead (none: closed all day); a night window that started the evening before
still runs to its end, and a holiday window that crosses midnight runs into the next day. Wall-clock
times mean that on the day clocks go forward a window 08:00-17:00 still opens at 08:00 local time (it is
an hour shorter only if it spans the skipped hour), and in the repeated hour when they go back both
passes of 02:30 are 02:30.

Refusals here are decided before any face work: no snapshot is decoded, no task queued, and nothing
about the face is learnt. At a device under access rules ``checkin_submit`` also decides the other
refusals that need no face (an unknown or inactive ID) in the request, so that every claim refused
without a face is answered alike (``refusal_before_face_work``). ``outside_schedule`` does not count
toward a device's lockout (``services/lockouts.py``): a queue of people arriving before their shift is
not an attack.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from verification.models import AccessGroup, AccessWindow, CheckIn, Device, Door, Holiday, Person
from verification.selectors import person_is_admitted

Reason = CheckIn.Reason
HOLIDAY = AccessWindow.Day.HOLIDAY

# DEVICE_WITHOUT_DOOR values.
WITHOUT_DOOR_AUTO = "auto"
WITHOUT_DOOR_UNRESTRICTED = "unrestricted"
WITHOUT_DOOR_REFUSED = "refused"


class WindowLike(Protocol):
    day: int
    start: time
    end: time


@dataclass(frozen=True)
class WindowSpec:
    """A window as plain values (the rule's tests and the admin's formset build these)."""

    day: int
    start: time
    end: time


# --- The clock -------------------------------------------------------------------------------------


def site_time_zone():  # noqa: ANN201 - a zoneinfo.ZoneInfo
    """The site's time zone (``TIME_ZONE``), never the request's."""
    return timezone.get_default_timezone()


def site_local(at: datetime) -> datetime:
    """``at`` (aware) on the site's wall clock."""
    return timezone.localtime(at, site_time_zone())


def _day_of(day: date, holidays: Collection[date]) -> int:
    return HOLIDAY if day in holidays else day.weekday()


def schedule_open(*, windows: Iterable[WindowLike], holidays: Collection[date], local: datetime) -> bool:
    """Whether any of ``windows`` is open at the wall-clock time ``local`` (see the module docstring).

    ``holidays``: the dates (site calendar) on which these windows' group keeps a holiday; only ``local``'s
    date and the day before matter.
    """
    today = local.date()
    now = local.time().replace(tzinfo=None)
    today_day = _day_of(today, holidays)
    yesterday_day = _day_of(today - timedelta(days=1), holidays)
    for window in windows:
        crosses = window.end <= window.start
        if window.day == today_day and window.start <= now and (crosses or now < window.end):
            return True
        if crosses and window.day == yesterday_day and now < window.end:
            return True
    return False


def holidays_by_group(*, group_ids: Collection[int], dates: Collection[date]) -> dict[int, set[date]]:
    """For each group, which of ``dates`` are its holidays (site-wide ones and its own)."""
    site_wide: set[date] = set()
    own: dict[int, set[date]] = {group_id: set() for group_id in group_ids}
    rows = Holiday.objects.filter(date__in=list(dates)).filter(Q(group__isnull=True) | Q(group_id__in=list(group_ids)))
    for group_id, day in rows.values_list("group_id", "date"):
        if group_id is None:
            site_wide.add(day)
        else:
            own[group_id].add(day)
    return {group_id: site_wide | days for group_id, days in own.items()}


def groups_open(*, groups: Collection[AccessGroup], at: datetime) -> set[int]:
    """The ids of ``groups`` with a window open at ``at``. Prefetch ``windows`` on them (one query for
    the holidays of the day and the day before)."""
    if not groups:
        return set()
    local = site_local(at)
    holidays = holidays_by_group(
        group_ids=[group.pk for group in groups], dates=[local.date(), local.date() - timedelta(days=1)]
    )
    return {
        group.pk for group in groups
        if schedule_open(windows=group.windows.all(), holidays=holidays[group.pk], local=local)
    }


def _groups_granting(zone_id: int) -> QuerySet[AccessGroup]:
    return AccessGroup.objects.filter(zones=zone_id).prefetch_related(
        Prefetch("windows", queryset=AccessWindow.objects.order_by("day", "start"))
    )


# --- The rule --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessVerdict:
    """The answer for one check-in: ``allowed``, else ``reason``; the rest goes into its audit entry."""

    allowed: bool
    reason: str = ""
    # False: the device has no door and DEVICE_WITHOUT_DOOR leaves it without access rules.
    restricted: bool = True
    rule: str = ""  # which step answered: no_door, no_group, no_window, window
    door: str = ""
    zone: str = ""
    groups: tuple[str, ...] = ()  # the person's groups that grant the zone
    open_groups: tuple[str, ...] = ()  # of those, the ones with a window open now
    local_time: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def audit_detail(self) -> dict[str, Any]:
        """What the decision's audit entry records (names of doors, zones and groups; never a person)."""
        return {
            "access": {
                "allowed": self.allowed,
                "rule": self.rule,
                "door": self.door,
                "zone": self.zone,
                "groups": list(self.groups),
                "open_groups": list(self.open_groups),
                "local_time": self.local_time,
                "time_zone": settings.TIME_ZONE,
                **self.extra,
            }
        }


def devices_without_door_refused() -> bool:
    """What DEVICE_WITHOUT_DOOR means now: True when a device with no door refuses every check-in."""
    rule = settings.DEVICE_WITHOUT_DOOR
    if rule == WITHOUT_DOOR_AUTO:
        return Door.objects.exists()
    return rule == WITHOUT_DOOR_REFUSED


def _door_of(device: Device) -> Door | None:
    # As the database has it now (the admin may have moved the device since ``device`` was read).
    return Door.objects.select_related("zone").filter(devices=device.pk).first()


def access_check(*, person: Person, device: Device, at: datetime | None = None) -> AccessVerdict:
    """May ``person`` pass ``device``'s door at ``at`` (default now)? See the module docstring."""
    return _check(person=person, door=_door_of(device), at=at or timezone.now())


def _check(*, person: Person, door: Door | None, at: datetime) -> AccessVerdict:
    local_time = site_local(at).isoformat(timespec="seconds")
    if door is None:
        if devices_without_door_refused():
            return AccessVerdict(
                allowed=False, reason=Reason.NOT_AUTHORIZED_HERE, rule="no_door", local_time=local_time,
                extra={"device_without_door": settings.DEVICE_WITHOUT_DOOR},
            )
        return AccessVerdict(allowed=True, restricted=False, rule="no_door", local_time=local_time)
    granting = list(_groups_granting(door.zone_id).filter(memberships__person=person.pk).distinct())
    names = tuple(group.name for group in granting)
    where = {"door": door.name, "zone": door.zone.name, "local_time": local_time}
    if not granting:
        return AccessVerdict(allowed=False, reason=Reason.NOT_AUTHORIZED_HERE, rule="no_group", **where)
    open_ids = groups_open(groups=granting, at=at)
    open_names = tuple(group.name for group in granting if group.pk in open_ids)
    if not open_names:
        return AccessVerdict(
            allowed=False, reason=Reason.OUTSIDE_SCHEDULE, rule="no_window", groups=names, **where
        )
    return AccessVerdict(allowed=True, rule="window", groups=names, open_groups=open_names, **where)


def refusal_before_face_work(*, person: Person | None, device: Device, at: datetime) -> AccessVerdict | None:
    """At a device under access rules (at a door, or refused for standing at none), the refusal of a claim
    that needs no face to decide: ``unknown_person``, ``inactive_person``, ``not_authorized_here``,
    ``outside_schedule``; None when the face decides (or the device is under no rule: the usual way).

    ``checkin_submit`` decides these in the request. All of them, not only the access ones: a known ID
    without rights answered at once while an unknown one waited for a worker (202 with ``wait=0``) would
    tell a device holder which badge IDs exist (docs/SECURITY.md, "The door learns only what it needs").
    """
    door = _door_of(device)
    if door is None and not devices_without_door_refused():
        return None
    local_time = site_local(at).isoformat(timespec="seconds")
    where = {"door": door.name, "zone": door.zone.name} if door else {}
    if person is None:
        return AccessVerdict(allowed=False, reason=Reason.UNKNOWN_PERSON, rule="unknown_person", local_time=local_time, **where)
    if not person_is_admitted(person=person, at=at):
        return AccessVerdict(allowed=False, reason=Reason.INACTIVE_PERSON, rule="inactive_person", local_time=local_time, **where)
    verdict = _check(person=person, door=door, at=at)
    return None if verdict.allowed else verdict


# --- What the admin shows --------------------------------------------------------------------------


def people_admitted_q(at: datetime) -> Q:
    """People active and inside their validity dates at ``at`` (``selectors.person_is_admitted`` as a query)."""
    return (
        Q(is_active=True)
        & (Q(valid_from__isnull=True) | Q(valid_from__lte=at))
        & (Q(valid_until__isnull=True) | Q(valid_until__gt=at))
    )


@dataclass(frozen=True)
class DoorNow:
    """Who may pass a door at one moment: the groups granting its zone, which are open, and their people."""

    at: datetime
    local: datetime
    groups: list[AccessGroup]
    open_group_ids: set[int]
    people: QuerySet[Person]  # active, valid, in an open group; distinct, by name


def door_now(*, door: Door, at: datetime | None = None) -> DoorNow:
    """The door page's "who may enter now"."""
    at = at or timezone.now()
    groups = list(_groups_granting(door.zone_id))
    open_ids = groups_open(groups=groups, at=at)
    people = (
        Person.objects.filter(people_admitted_q(at), access_memberships__group__in=open_ids)
        .distinct()
        .order_by("name", "pk")
    )
    return DoorNow(at=at, local=site_local(at), groups=groups, open_group_ids=open_ids, people=people)


def window_label(window: WindowLike) -> str:
    """``Mon 08:00-18:00``, ``Fri 22:00-06:00 (next day)``, ``Holidays 00:00-00:00 (whole day)``."""
    day = "Holidays" if window.day == HOLIDAY else AccessWindow.Day(window.day).label[:3]
    span = f"{window.start:%H:%M}-{window.end:%H:%M}"
    if window.start == window.end == time(0):
        return f"{day} {span} (whole day)"
    return f"{day} {span}{' (next day)' if window.end <= window.start else ''}"


def schedule_label(windows: Iterable[WindowLike]) -> str:
    """A group's week in one line: days with the same hours joined (``Mon-Fri 08:00-18:00; Sat 09:00-13:00``)."""
    by_hours: dict[tuple[time, time], list[int]] = {}
    for window in sorted(windows, key=lambda w: (w.day, w.start, w.end)):
        by_hours.setdefault((window.start, window.end), []).append(window.day)
    parts = []
    for (start, end), days in sorted(by_hours.items(), key=lambda item: (item[1][0], item[0])):
        sample = WindowSpec(day=days[0], start=start, end=end)
        hours = window_label(sample).split(" ", 1)[1]
        parts.append(f"{_days_label(days)} {hours}")
    return "; ".join(parts) if parts else "no windows (never open)"


def _days_label(days: list[int]) -> str:
    names = {day: ("Holidays" if day == HOLIDAY else AccessWindow.Day(day).label[:3]) for day in days}
    runs: list[list[int]] = []
    for day in days:
        if runs and day == runs[-1][-1] + 1 and day != HOLIDAY:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(
        names[run[0]] if len(run) == 1 else f"{names[run[0]]}-{names[run[-1]]}" if len(run) > 2
        else f"{names[run[0]]}, {names[run[-1]]}"
        for run in runs
    )
