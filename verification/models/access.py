"""Doors, zones, access groups, their weekly windows and holidays (issue 11, item 1).

A device stands at a door (``Device.door``); a door belongs to one zone; an access group grants zones to
its members during weekly windows in the site's time zone (``TIME_ZONE``), except on holidays (site-wide
or the group's own), when only the group's holiday windows apply. The rule itself, "may this person
pass this door now?", is ``verification/services/access.py``; every change goes through
``verification/services/access_rules.py``, audited.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from verification.models.base import TimeStamped
from verification.models.people import Person


class Zone(TimeStamped):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(name="zone_name_not_blank", condition=~Q(name=""))]

    def __str__(self) -> str:
        return self.name


class Door(TimeStamped):
    name = models.CharField(max_length=100, unique=True)
    # PROTECT: a zone with doors cannot disappear from under them (their devices would change rules).
    zone = models.ForeignKey(Zone, on_delete=models.PROTECT, related_name="doors")
    description = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(name="door_name_not_blank", condition=~Q(name=""))]

    def __str__(self) -> str:
        return self.name


class AccessGroup(TimeStamped):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    zones = models.ManyToManyField(Zone, related_name="access_groups", blank=True)
    members = models.ManyToManyField(
        Person, through="AccessGroupMembership", related_name="access_groups", blank=True
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "access group"
        constraints = [models.CheckConstraint(name="access_group_name_not_blank", condition=~Q(name=""))]

    def __str__(self) -> str:
        return self.name


class AccessGroupMembership(TimeStamped):
    group = models.ForeignKey(AccessGroup, on_delete=models.CASCADE, related_name="memberships")
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="access_memberships")

    class Meta:
        ordering = ["group__name"]
        verbose_name = "access group membership"
        constraints = [
            # Also the index of "members of group G"; the person FK's own index serves "groups of person P"
            # (every check-in at a door).
            models.UniqueConstraint(fields=["group", "person"], name="access_membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.person_id} in {self.group_id}"


class AccessWindow(TimeStamped):
    """A weekly time window in the site's time zone, on the wall clock.

    ``end`` at or before ``start`` ends on the next day (22:00-06:00 is a night shift; 00:00-00:00 is the
    whole day). A window belongs to the day it starts on: a holiday cancels the windows that start on it
    and lets the ``HOLIDAY`` windows apply instead, and a night window that started the evening before
    runs to its end.
    """

    class Day(models.IntegerChoices):
        MONDAY = 0, "Monday"
        TUESDAY = 1, "Tuesday"
        WEDNESDAY = 2, "Wednesday"
        THURSDAY = 3, "Thursday"
        FRIDAY = 4, "Friday"
        SATURDAY = 5, "Saturday"
        SUNDAY = 6, "Sunday"
        HOLIDAY = 7, "Holidays"

    group = models.ForeignKey(AccessGroup, on_delete=models.CASCADE, related_name="windows")
    day = models.PositiveSmallIntegerField(choices=Day.choices)
    start = models.TimeField()
    end = models.TimeField(help_text="At or before the start: ends the next day (00:00-00:00 is the whole day).")

    class Meta:
        ordering = ["group", "day", "start"]
        verbose_name = "access window"
        constraints = [
            models.CheckConstraint(name="access_window_day_valid", condition=Q(day__gte=0) & Q(day__lte=7)),
            models.UniqueConstraint(fields=["group", "day", "start", "end"], name="access_window_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.get_day_display()} {self.start:%H:%M}-{self.end:%H:%M}"

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


class Holiday(TimeStamped):
    """A date (in the site's time zone) on which weekly windows do not apply: site-wide, or one group's."""

    date = models.DateField()
    name = models.CharField(max_length=100)
    group = models.ForeignKey(
        AccessGroup, on_delete=models.CASCADE, null=True, blank=True, related_name="holidays",
        help_text="Empty: a site-wide holiday, for every group.",
    )

    class Meta:
        ordering = ["date", "name"]
        constraints = [
            # "Holidays on date D (site-wide or of these groups)" on every check-in at a door: the date
            # leads both indexes.
            models.UniqueConstraint(
                fields=["date", "group"], condition=Q(group__isnull=False), name="holiday_unique_per_group",
                violation_error_message="This group already has a holiday on that date.",
            ),
            models.UniqueConstraint(
                fields=["date"], condition=Q(group__isnull=True), name="holiday_unique_site_wide",
                violation_error_message="There is already a site-wide holiday on that date.",
            ),
            models.CheckConstraint(name="holiday_name_not_blank", condition=~Q(name="")),
        ]

    def __str__(self) -> str:
        return f"{self.date:%Y-%m-%d} {self.name}"
