"""May this person pass this door now? (issue 11, item 1): groups, zones, weekly windows on the site's
wall clock (midnight, daylight saving, a time zone that is not UTC), holidays, and devices without a door.

Every time here is fixed; nothing sleeps. 2024-01-08 is a Monday; Europe/Berlin's clocks go forward at
02:00 on 2024-03-31 and back at 03:00 on 2024-10-27 (both Sundays).
"""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from verification import services
from verification.models import AccessGroup, AccessWindow, CheckIn, Door, Holiday, Person, Zone
from verification.services import access, access_rules
from verification.services.access import WindowSpec, schedule_label, schedule_open

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MON, TUE, WED, THU, FRI, SAT, SUN, HOL = range(8)
NOT_AUTHORIZED = CheckIn.Reason.NOT_AUTHORIZED_HERE
OUTSIDE = CheckIn.Reason.OUTSIDE_SCHEDULE


def w(day: int, start: str, end: str) -> WindowSpec:
    return WindowSpec(day=day, start=time.fromisoformat(start), end=time.fromisoformat(end))


def local(text: str, zone: ZoneInfo = BERLIN, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold)


# --- The week, on the wall clock (no database) ---------------------------------------------------


def test_a_window_is_open_from_its_start_up_to_but_not_including_its_end():
    office = [w(MON, "08:00", "18:00")]
    assert not schedule_open(windows=office, holidays=(), local=local("2024-01-08 07:59:59"))
    assert schedule_open(windows=office, holidays=(), local=local("2024-01-08 08:00"))
    assert schedule_open(windows=office, holidays=(), local=local("2024-01-08 17:59:59"))
    assert not schedule_open(windows=office, holidays=(), local=local("2024-01-08 18:00"))
    assert not schedule_open(windows=office, holidays=(), local=local("2024-01-09 09:00")), "Tuesday has no window"


def test_a_window_crossing_midnight_runs_into_the_next_day():
    night = [w(FRI, "22:00", "06:00")]
    assert not schedule_open(windows=night, holidays=(), local=local("2024-01-12 21:59"))
    assert schedule_open(windows=night, holidays=(), local=local("2024-01-12 23:30"))
    assert schedule_open(windows=night, holidays=(), local=local("2024-01-13 00:00"))
    assert schedule_open(windows=night, holidays=(), local=local("2024-01-13 05:59:59"))
    assert not schedule_open(windows=night, holidays=(), local=local("2024-01-13 06:00"))
    # Friday morning before 06:00 belongs to Thursday's night, which has no window.
    assert not schedule_open(windows=night, holidays=(), local=local("2024-01-12 03:00"))


def test_a_sunday_night_window_runs_into_monday_morning():
    night = [w(SUN, "22:00", "02:00")]
    assert schedule_open(windows=night, holidays=(), local=local("2024-01-08 01:00"))  # Monday
    assert not schedule_open(windows=night, holidays=(), local=local("2024-01-08 02:00"))


def test_midnight_to_midnight_is_the_whole_day_and_no_more():
    day = [w(WED, "00:00", "00:00")]
    assert schedule_open(windows=day, holidays=(), local=local("2024-01-10 00:00"))
    assert schedule_open(windows=day, holidays=(), local=local("2024-01-10 23:59:59"))
    assert not schedule_open(windows=day, holidays=(), local=local("2024-01-11 00:00"))
    assert not schedule_open(windows=day, holidays=(), local=local("2024-01-09 23:59:59"))


def test_a_holiday_cancels_the_windows_that_start_on_it_and_its_holiday_windows_apply():
    christmas = {date(2024, 12, 25)}  # a Wednesday
    week = [w(WED, "08:00", "18:00"), w(HOL, "10:00", "12:00")]
    assert not schedule_open(windows=week, holidays=christmas, local=local("2024-12-25 09:00"))
    assert schedule_open(windows=week, holidays=christmas, local=local("2024-12-25 11:00"))
    assert not schedule_open(windows=week, holidays=christmas, local=local("2024-12-25 13:00"))
    # Holiday windows never apply on an ordinary day.
    assert schedule_open(windows=week, holidays=christmas, local=local("2024-12-18 09:00"))
    assert not schedule_open(windows=[w(HOL, "10:00", "12:00")], holidays=christmas, local=local("2024-12-18 11:00"))


def test_a_night_window_that_started_the_evening_before_a_holiday_runs_to_its_end():
    night = [w(TUE, "22:00", "06:00")]
    christmas = {date(2024, 12, 25)}
    assert schedule_open(windows=night, holidays=christmas, local=local("2024-12-25 05:00"))


def test_a_night_window_starting_on_a_holiday_does_not_run_into_the_next_morning():
    night = [w(WED, "22:00", "06:00")]
    christmas = {date(2024, 12, 25)}
    assert not schedule_open(windows=night, holidays=christmas, local=local("2024-12-25 23:00"))
    assert not schedule_open(windows=night, holidays=christmas, local=local("2024-12-26 05:00"))
    # A holiday night window does.
    assert schedule_open(windows=[w(HOL, "22:00", "06:00")], holidays=christmas, local=local("2024-12-26 05:00"))


def test_schedule_label_joins_days_with_the_same_hours():
    week = [w(day, "08:00", "18:00") for day in (MON, TUE, WED, THU, FRI)] + [w(SAT, "09:00", "13:00"),
                                                                             w(SUN, "22:00", "06:00")]
    assert schedule_label(week) == "Mon-Fri 08:00-18:00; Sat 09:00-13:00; Sun 22:00-06:00 (next day)"
    assert schedule_label([w(MON, "08:00", "12:00"), w(TUE, "08:00", "12:00"), w(HOL, "00:00", "00:00")]) == (
        "Mon, Tue 08:00-12:00; Holidays 00:00-00:00 (whole day)"
    )
    assert schedule_label([]) == "no windows (never open)"


# --- The rule, with the database ------------------------------------------------------------------


@pytest.fixture
def site(db, settings, device, person):
    """Zone "Lab" with door "Lab door" (the device stands there) and group "Lab staff" (Ada), Mon-Fri
    08:00-18:00, in Europe/Berlin."""
    settings.TIME_ZONE = "Europe/Berlin"
    lab = access_rules.zone_save(zone=Zone(name="Lab"))
    door = access_rules.door_save(door=Door(name="Lab door", zone=lab))
    access_rules.device_door_set(device=device, door=door)
    group = access_rules.access_group_save(group=AccessGroup(name="Lab staff"), zones=[lab])
    access_rules.access_windows_set(group=group, windows=[w(day, "08:00", "18:00") for day in (MON, TUE, WED, THU, FRI)])
    access_rules.access_member_add(group=group, person=person)
    device.refresh_from_db()
    return {"zone": lab, "door": door, "group": group, "device": device, "person": person}


def check(site, at: datetime, person: Person | None = None) -> access.AccessVerdict:
    return access.access_check(person=person or site["person"], device=site["device"], at=at)


@pytest.mark.django_db
def test_a_member_inside_a_window_may_pass_and_the_verdict_names_door_zone_and_group(site):
    verdict = check(site, local("2024-01-08 09:00"))
    assert verdict.allowed and verdict.reason == ""
    assert (verdict.door, verdict.zone, verdict.open_groups) == ("Lab door", "Lab", ("Lab staff",))
    assert verdict.audit_detail()["access"]["local_time"] == "2024-01-08T09:00:00+01:00"
    assert verdict.audit_detail()["access"]["time_zone"] == "Europe/Berlin"


@pytest.mark.django_db
def test_a_member_outside_every_window_is_refused_outside_schedule(site):
    verdict = check(site, local("2024-01-08 18:00"))
    assert (verdict.allowed, verdict.reason, verdict.groups) == (False, OUTSIDE, ("Lab staff",))
    assert check(site, local("2024-01-13 10:00")).reason == OUTSIDE  # Saturday


@pytest.mark.django_db
def test_a_person_in_no_group_is_refused_not_authorized_here(site):
    stranger = services.person_create(name="Grace Hopper", external_id="B-2002")
    verdict = check(site, local("2024-01-08 09:00"), person=stranger)
    assert (verdict.allowed, verdict.reason, verdict.rule) == (False, NOT_AUTHORIZED, "no_group")


@pytest.mark.django_db
def test_a_group_granting_another_zone_gives_no_right_at_this_door(site):
    stranger = services.person_create(name="Grace Hopper", external_id="B-2002")
    office = access_rules.zone_save(zone=Zone(name="Office"))
    clerks = access_rules.access_group_save(group=AccessGroup(name="Clerks"), zones=[office])
    access_rules.access_windows_set(group=clerks, windows=[w(MON, "00:00", "00:00")])
    access_rules.access_member_add(group=clerks, person=stranger)
    assert check(site, local("2024-01-08 09:00"), person=stranger).reason == NOT_AUTHORIZED


@pytest.mark.django_db
def test_any_one_open_group_admits(site):
    nights = access_rules.access_group_save(group=AccessGroup(name="Night shift"), zones=[site["zone"]])
    access_rules.access_windows_set(group=nights, windows=[w(MON, "22:00", "06:00")])
    access_rules.access_member_add(group=nights, person=site["person"])
    verdict = check(site, local("2024-01-09 05:00"))  # Tuesday early: only the night shift's Monday window
    assert verdict.allowed and verdict.open_groups == ("Night shift",)
    assert set(verdict.groups) == {"Lab staff", "Night shift"}


@pytest.mark.django_db
def test_windows_are_read_in_the_site_time_zone_not_utc(site, settings):
    settings.TIME_ZONE = "America/New_York"
    # 13:30 UTC is 08:30 in New York (EST, UTC-5): open. It would be 13:30 in UTC and 14:30 in Berlin.
    assert check(site, datetime(2024, 1, 8, 13, 30, tzinfo=UTC)).allowed
    # 12:30 UTC is 07:30 in New York: closed, although 12:30 UTC is inside 08:00-18:00 in UTC itself.
    assert check(site, datetime(2024, 1, 8, 12, 30, tzinfo=UTC)).reason == OUTSIDE
    # 23:30 UTC is 18:30 in New York: closed.
    assert check(site, datetime(2024, 1, 8, 23, 30, tzinfo=UTC)).reason == OUTSIDE


@pytest.mark.django_db
def test_on_the_day_clocks_go_forward_a_window_opens_at_its_wall_clock_time(site):
    early_sunday = access_rules.access_group_save(group=AccessGroup(name="Sunday"), zones=[site["zone"]])
    access_rules.access_windows_set(group=early_sunday, windows=[w(SUN, "01:00", "03:30"), w(SUN, "09:00", "17:00")])
    access_rules.access_member_add(group=early_sunday, person=site["person"])
    # 2024-03-31: 02:00 CET does not exist, clocks jump to 03:00 CEST (UTC+2).
    assert check(site, datetime(2024, 3, 31, 0, 59, tzinfo=UTC)).allowed  # 01:59 CET
    assert check(site, datetime(2024, 3, 31, 1, 0, tzinfo=UTC)).allowed  # 03:00 CEST
    assert check(site, datetime(2024, 3, 31, 1, 30, tzinfo=UTC)).reason == OUTSIDE  # 03:30 CEST
    # 09:00 CEST is 07:00 UTC: open at 09:00 on the wall, not at 08:00 UTC as a fixed +01:00 would say.
    assert check(site, datetime(2024, 3, 31, 6, 59, tzinfo=UTC)).reason == OUTSIDE
    assert check(site, datetime(2024, 3, 31, 7, 0, tzinfo=UTC)).allowed
    assert check(site, datetime(2024, 3, 31, 14, 59, tzinfo=UTC)).allowed  # 16:59 CEST
    assert check(site, datetime(2024, 3, 31, 15, 0, tzinfo=UTC)).reason == OUTSIDE  # 17:00 CEST


@pytest.mark.django_db
def test_in_the_repeated_hour_when_clocks_go_back_both_passes_are_inside_the_window(site):
    early_sunday = access_rules.access_group_save(group=AccessGroup(name="Sunday"), zones=[site["zone"]])
    access_rules.access_windows_set(group=early_sunday, windows=[w(SUN, "02:00", "02:30")])
    access_rules.access_member_add(group=early_sunday, person=site["person"])
    # 2024-10-27: 03:00 CEST goes back to 02:00 CET, so 02:15 happens at 00:15 and at 01:15 UTC.
    assert check(site, datetime(2024, 10, 27, 0, 15, tzinfo=UTC)).allowed
    assert check(site, datetime(2024, 10, 27, 1, 15, tzinfo=UTC)).allowed
    assert check(site, datetime(2024, 10, 27, 1, 30, tzinfo=UTC)).reason == OUTSIDE  # 02:30 CET


@pytest.mark.django_db
def test_a_site_wide_holiday_closes_every_group_that_has_no_holiday_window(site):
    access_rules.holiday_save(holiday=Holiday(date=date(2024, 12, 25), name="Christmas"))
    assert check(site, local("2024-12-25 09:00")).reason == OUTSIDE
    assert check(site, local("2024-12-24 09:00")).allowed
    access_rules.access_windows_set(
        group=site["group"], windows=[w(day, "08:00", "18:00") for day in range(5)] + [w(HOL, "10:00", "12:00")]
    )
    assert check(site, local("2024-12-25 11:00")).allowed
    assert check(site, local("2024-12-25 09:00")).reason == OUTSIDE


@pytest.mark.django_db
def test_a_groups_own_holiday_closes_only_that_group(site):
    nights = access_rules.access_group_save(group=AccessGroup(name="Also weekdays"), zones=[site["zone"]])
    access_rules.access_windows_set(group=nights, windows=[w(WED, "08:00", "18:00")])
    other = services.person_create(name="Grace Hopper", external_id="B-2002")
    access_rules.access_member_add(group=nights, person=other)
    access_rules.holiday_save(holiday=Holiday(date=date(2024, 12, 18), name="Lab retreat", group=site["group"]))
    assert check(site, local("2024-12-18 09:00")).reason == OUTSIDE
    assert check(site, local("2024-12-18 09:00"), person=other).allowed


@pytest.mark.django_db
def test_a_holiday_is_a_date_in_the_site_time_zone(site):
    christmas = access_rules.holiday_save(holiday=Holiday(date=date(2024, 12, 25), name="Christmas"))
    access_rules.access_windows_set(group=site["group"], windows=[w(WED, "00:00", "00:00")])
    # 2024-12-24 23:30 UTC is already Wednesday the 25th in Berlin (00:30): the holiday.
    assert check(site, datetime(2024, 12, 24, 23, 30, tzinfo=UTC)).reason == OUTSIDE
    access_rules.holiday_delete(holiday=christmas)
    assert check(site, datetime(2024, 12, 24, 23, 30, tzinfo=UTC)).allowed


# --- Devices without a door: the compatibility rule ------------------------------------------------


@pytest.mark.django_db
def test_a_site_without_any_door_has_no_access_rules(device, person, settings):
    assert settings.DEVICE_WITHOUT_DOOR == "auto"
    verdict = access.access_check(person=person, device=device, at=local("2024-01-13 03:00"))
    assert verdict.allowed and not verdict.restricted


@pytest.mark.django_db
def test_once_any_door_exists_a_device_without_one_refuses_everyone(site, other_device_and_token):
    other_device = other_device_and_token[0]
    verdict = access.access_check(person=site["person"], device=other_device, at=local("2024-01-08 09:00"))
    assert (verdict.allowed, verdict.reason, verdict.rule) == (False, NOT_AUTHORIZED, "no_door")


@pytest.mark.django_db
def test_device_without_door_can_be_set_unrestricted_or_refused(site, other_device_and_token, settings):
    other_device = other_device_and_token[0]
    settings.DEVICE_WITHOUT_DOOR = "unrestricted"
    assert access.access_check(person=site["person"], device=other_device, at=local("2024-01-13 03:00")).allowed
    settings.DEVICE_WITHOUT_DOOR = "refused"
    access_rules.device_door_set(device=site["device"], door=None)
    access_rules.door_delete(door=site["door"])
    assert access.access_check(person=site["person"], device=other_device).reason == NOT_AUTHORIZED


# --- Who may enter now (the door page) ------------------------------------------------------------


@pytest.mark.django_db
def test_door_now_lists_active_members_of_open_groups_only(site):
    grace = services.person_create(name="Grace Hopper", external_id="B-2002")
    inactive = services.person_create(name="Zed Inactive", external_id="B-3003", is_active=False)
    nights = access_rules.access_group_save(group=AccessGroup(name="Night shift"), zones=[site["zone"]])
    access_rules.access_windows_set(group=nights, windows=[w(MON, "22:00", "06:00")])
    access_rules.access_member_add(group=nights, person=grace)
    access_rules.access_member_add(group=site["group"], person=inactive)
    now = access.door_now(door=site["door"], at=local("2024-01-08 09:00"))
    assert [person.external_id for person in now.people] == ["B-1001"]
    assert now.open_group_ids == {site["group"].pk}
    assert {group.name for group in now.groups} == {"Lab staff", "Night shift"}
    later = access.door_now(door=site["door"], at=local("2024-01-08 23:00"))
    assert [person.external_id for person in later.people] == ["B-2002"]


@pytest.mark.django_db
def test_window_model_reads_end_at_or_before_start_as_the_next_day():
    assert AccessWindow(day=MON, start=time(22), end=time(6)).crosses_midnight
    assert AccessWindow(day=MON, start=time(0), end=time(0)).crosses_midnight
    assert not AccessWindow(day=MON, start=time(8), end=time(18)).crosses_midnight


# --- The settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TIME_ZONE": "Mars/Olympus_Mons"}, "TIME_ZONE='Mars/Olympus_Mons' is not an IANA time zone"),
        ({"DEVICE_WITHOUT_DOOR": "sometimes"}, "DEVICE_WITHOUT_DOOR='sometimes' is not one of auto, unrestricted, refused"),
    ],
)
def test_a_misspelt_time_zone_or_door_rule_stops_start_up(env, message):
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "DEBUG": "1",
            "DATABASE_URL": "sqlite:///:memory:"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=Path(__file__).resolve().parents[2], env={**base, **env},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_the_site_time_zone_comes_from_the_environment():
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "DEBUG": "1",
           "DATABASE_URL": "sqlite:///:memory:", "TIME_ZONE": "Europe/Berlin", "DJANGO_SETTINGS_MODULE": "accesscontrol.settings"}
    code = "import django; django.setup(); from verification.services.access import site_time_zone; print(site_time_zone().key)"
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "Europe/Berlin", result.stderr
