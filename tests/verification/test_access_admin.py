"""The admin for doors, zones, access groups and holidays (issue 11, item 1), through the test client as
the roles would use it: the operator sets up who may pass which door when (every change in the audit
chain under their name), the door page says who may enter now, the person page shows the person's groups
and rights, the security officer only looks, and roles without rights get 403.
"""
from __future__ import annotations

from datetime import date, time

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import Client, RequestFactory
from django.urls import reverse

from verification import roles, services
from verification.admin.access_inlines import PersonAccessInline
from verification.models import AccessGroup, AccessWindow, AuditEntry, Door, Holiday, Person, Zone
from verification.services import access_rules
from verification.services.access import WindowSpec

pytestmark = pytest.mark.django_db

ALWAYS = [WindowSpec(day=day, start=time(0), end=time(0)) for day in range(7)]
Kind = AuditEntry.Kind


def staff(django_user_model, role: roles.Role):  # noqa: ANN201
    username = role.name.lower().replace(" ", "-")
    user = django_user_model.objects.create_user(username, f"{username}@example.org", "pw-not-used-123", is_staff=True)
    user.groups.add(Group.objects.get(name=role.name))
    return user


def client_for(user) -> Client:  # noqa: ANN001
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator(django_user_model) -> Client:
    return client_for(staff(django_user_model, roles.OPERATOR))


@pytest.fixture
def officer(django_user_model) -> Client:
    return client_for(staff(django_user_model, roles.SECURITY_OFFICER))


@pytest.fixture
def auditor(django_user_model) -> Client:
    return client_for(staff(django_user_model, roles.AUDITOR))


@pytest.fixture
def lab(device, person):
    zone = access_rules.zone_save(zone=Zone(name="Lab"))
    door = access_rules.door_save(door=Door(name="Lab door", zone=zone))
    access_rules.device_door_set(device=device, door=door)
    group = access_rules.access_group_save(group=AccessGroup(name="Lab staff"), zones=[zone])
    access_rules.access_windows_set(group=group, windows=ALWAYS)
    access_rules.access_member_add(group=group, person=person)
    return {"zone": zone, "door": door, "group": group}


def url(model: str, action: str, *args) -> str:
    return reverse(f"admin:verification_{model}_{action}", args=args)


def inline_management(prefix: str, total: int, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total), f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def entries(kind: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(kind=kind).order_by("seq"))


# --- The operator sets a site up, audited ----------------------------------------------------------


def test_operator_creates_a_zone_and_a_door_with_its_device_each_change_audited(operator, device):
    response = operator.post(url("zone", "add"), {"name": "Lab", "description": ""})
    assert response.status_code == 302, response.content
    zone = Zone.objects.get(name="Lab")
    response = operator.post(
        url("door", "add"), {"name": "Lab door", "zone": zone.pk, "description": "", "devices_here": [device.pk]}
    )
    assert response.status_code == 302, response.content
    door = Door.objects.get(name="Lab door")
    device.refresh_from_db()
    assert device.door == door
    [zone_entry], [door_entry], [moved] = entries(Kind.ZONE_CREATED), entries(Kind.DOOR_CREATED), entries(Kind.DEVICE_DOOR_CHANGED)
    assert (zone_entry.actor, zone_entry.detail["zone"]) == ("operator", "Lab")
    assert (door_entry.actor, door_entry.detail["zone"]) == ("operator", "Lab")
    assert (moved.actor, moved.device_name, moved.detail["old_door"], moved.detail["new_door"]) == (
        "operator", "front-door", None, "Lab door")


def test_operator_creates_a_group_with_zones_windows_holidays_and_members_all_audited(operator, person):
    zone = access_rules.zone_save(zone=Zone(name="Lab"))
    data = {
        "name": "Lab staff", "description": "", "zones": [zone.pk],
        **inline_management("windows", 2), "windows-0-day": "0", "windows-0-start": "08:00", "windows-0-end": "18:00",
        "windows-1-day": "4", "windows-1-start": "22:00", "windows-1-end": "06:00",
        **inline_management("holidays", 1), "holidays-0-date": "2024-12-18", "holidays-0-name": "Lab retreat",
        **inline_management("memberships", 1), "memberships-0-person": str(person.pk),
    }
    response = operator.post(url("accessgroup", "add"), data)
    assert response.status_code == 302, response.content
    group = AccessGroup.objects.get(name="Lab staff")
    assert list(group.zones.all()) == [zone]
    assert {(w.day, w.start, w.end) for w in group.windows.all()} == {(0, time(8), time(18)), (4, time(22), time(6))}
    assert list(Holiday.objects.values_list("date", "group")) == [(date(2024, 12, 18), group.pk)]
    assert list(group.members.all()) == [person]
    [created] = entries(Kind.ACCESS_GROUP_CREATED)
    assert (created.actor, created.detail["zones"]) == ("operator", ["Lab"])
    [windows] = entries(Kind.ACCESS_GROUP_CHANGED)
    assert windows.detail["changes"]["windows"] == {
        "added": ["Mon 08:00-18:00", "Fri 22:00-06:00 (next day)"], "removed": []}
    [holiday] = entries(Kind.HOLIDAY_ADDED)
    assert (holiday.detail["group"], holiday.detail["date"]) == ("Lab staff", "2024-12-18")
    [member] = entries(Kind.ACCESS_MEMBER_ADDED)
    # The person is in the erasable columns only, never in the hashed detail.
    assert (member.person_external_id, member.person_name) == ("B-1001", "Ada Lovelace")
    assert member.detail == {"person_id": person.pk, "group_id": group.pk, "group": "Lab staff"}


def test_changing_a_groups_windows_and_zones_is_one_audited_change_each(operator, lab):
    group = lab["group"]
    office = access_rules.zone_save(zone=Zone(name="Office"))
    windows = list(group.windows.order_by("day"))
    data = {
        "name": "Lab staff", "description": "", "zones": [lab["zone"].pk, office.pk],
        **inline_management("windows", len(windows), len(windows)),
        **inline_management("holidays", 0), **inline_management("memberships", 1, 1),
        "memberships-0-id": str(group.memberships.get().pk), "memberships-0-group": str(group.pk),
        "memberships-0-person": str(lab["group"].members.get().pk),
    }
    for index, window in enumerate(windows):
        data |= {f"windows-{index}-id": str(window.pk), f"windows-{index}-group": str(group.pk),
                 f"windows-{index}-day": str(window.day), f"windows-{index}-start": "00:00", f"windows-{index}-end": "00:00"}
    data["windows-6-DELETE"] = "on"  # Sunday goes
    data["windows-0-start"], data["windows-0-end"] = "07:00", "19:00"  # Monday changes
    response = operator.post(url("accessgroup", "change", group.pk), data)
    assert response.status_code == 302, response.content
    changes = [entry.detail["changes"] for entry in entries(Kind.ACCESS_GROUP_CHANGED)]
    assert {"zones": {"granted": ["Office"], "withdrawn": []}} in changes
    assert {"windows": {"added": ["Mon 07:00-19:00"],
                        "removed": ["Mon 00:00-00:00 (whole day)", "Sun 00:00-00:00 (whole day)"]}} in changes
    assert group.windows.count() == 6
    assert not entries(Kind.ACCESS_MEMBER_ADDED)[1:] and not entries(Kind.ACCESS_MEMBER_REMOVED)


def test_deleting_a_group_a_door_and_a_holiday_is_audited(operator, lab):
    christmas = access_rules.holiday_save(holiday=Holiday(date=date(2024, 12, 25), name="Christmas"))
    assert operator.post(url("holiday", "delete", christmas.pk), {"post": "yes"}).status_code == 302
    assert operator.post(url("accessgroup", "delete", lab["group"].pk), {"post": "yes"}).status_code == 302
    assert not AccessGroup.objects.exists() and not AccessWindow.objects.exists()
    [removed] = entries(Kind.HOLIDAY_REMOVED)
    assert (removed.actor, removed.detail["group"], removed.detail["name"]) == ("operator", None, "Christmas")
    [deleted] = entries(Kind.ACCESS_GROUP_DELETED)
    assert deleted.detail["members"] == 1 and deleted.detail["zones"] == ["Lab"]


def test_a_zone_with_doors_and_a_door_with_devices_cannot_be_deleted(operator, lab):
    response = operator.post(url("zone", "delete", lab["zone"].pk), {"post": "yes"})
    assert response.status_code == 200 and b"would require deleting the following protected" in response.content
    response = operator.post(url("door", "delete", lab["door"].pk), {"post": "yes"})
    assert response.status_code == 200
    assert Zone.objects.exists() and Door.objects.exists() and not entries(Kind.ZONE_DELETED)


# --- What the pages show ---------------------------------------------------------------------------


def test_the_door_page_shows_who_may_enter_now_and_which_groups_are_open(operator, lab):
    grace = services.person_create(name="Grace Hopper", external_id="B-2002")
    closed = access_rules.access_group_save(group=AccessGroup(name="Never"), zones=[lab["zone"]])
    access_rules.access_member_add(group=closed, person=grace)
    response = operator.get(url("door", "change", lab["door"].pk))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Who may enter now" in page and "1 person (active, in a group open now)" in page
    assert "Ada Lovelace" in page and "B-1001" in page
    assert "Grace Hopper" not in page
    assert "open now" in page and "closed now" in page and "no windows (never open)" in page
    assert "(UTC)" in page  # the site's time zone is named


def test_the_person_page_shows_their_groups_zones_doors_and_windows(operator, lab, person):
    response = operator.get(url("person", "change", person.pk))
    assert response.status_code == 200
    page = response.content.decode()
    assert "access groups and rights" in page.lower()
    assert "Lab staff" in page and "Lab door" in page
    assert "Mon-Sun 00:00-00:00 (whole day)" in page


def test_adding_a_group_on_the_person_page_is_audited(django_user_model, lab):
    grace = services.person_create(name="Grace Hopper", external_id="B-2002")
    request = RequestFactory().post("/")
    request.user = staff(django_user_model, roles.OPERATOR)
    formset_class = PersonAccessInline(Person, admin.site).get_formset(request, grace)
    data = {**inline_management("access_memberships", 1), "access_memberships-0-group": str(lab["group"].pk)}
    formset = formset_class(data, instance=grace, prefix="access_memberships")
    assert formset.is_valid(), formset.errors
    formset.save()
    assert list(grace.access_groups.all()) == [lab["group"]]
    [added] = [entry for entry in entries(Kind.ACCESS_MEMBER_ADDED) if entry.person_external_id == "B-2002"]
    assert added.actor == "operator"


def test_the_door_and_zone_lists_warn_about_devices_standing_at_no_door(operator, lab, other_device_and_token):
    response = operator.get(url("door", "changelist"), follow=True)
    messages = [str(message) for message in response.context["messages"]]
    assert any("back-door" in message and "refuse every check-in" in message for message in messages)


# --- Who may change it -----------------------------------------------------------------------------


def test_the_security_officer_sees_doors_and_groups_but_cannot_change_them(officer, lab):
    assert officer.get(url("door", "change", lab["door"].pk)).status_code == 200
    assert officer.get(url("accessgroup", "change", lab["group"].pk)).status_code == 200
    assert officer.post(url("door", "change", lab["door"].pk), {"name": "Renamed", "zone": lab["zone"].pk}).status_code == 403
    assert officer.get(url("zone", "add")).status_code == 403
    assert officer.post(url("accessgroup", "delete", lab["group"].pk), {"post": "yes"}).status_code == 403
    assert Door.objects.get().name == "Lab door" and AccessGroup.objects.exists()
    assert not entries(Kind.DOOR_CHANGED)


@pytest.mark.parametrize("model", ["zone", "door", "accessgroup", "holiday"])
def test_a_role_without_access_rights_gets_403(auditor, lab, model):
    assert auditor.get(url(model, "changelist")).status_code == 403
    assert auditor.get(url(model, "add")).status_code == 403


def test_placing_devices_at_a_door_takes_the_right_to_change_devices(django_user_model, lab):
    user = staff(django_user_model, roles.OPERATOR)
    user.groups.clear()
    user.user_permissions.add(
        *Group.objects.get(name=roles.OPERATOR.name).permissions.exclude(codename="change_device")
    )
    client = client_for(user)
    response = client.post(
        url("door", "change", lab["door"].pk), {"name": "Lab door", "zone": lab["zone"].pk, "description": "x"}
    )
    assert response.status_code == 302, response.content
    assert lab["door"].devices.count() == 1, "the device stays where it was"
    assert not entries(Kind.DEVICE_DOOR_CHANGED)[1:]


def test_a_person_form_posted_without_the_access_inline_leaves_the_persons_groups_alone(operator, lab, person):
    data = {
        "name": "Ada King", "external_id": "B-1001", "is_active": "on",
        **inline_management("references", 0),
    }
    response = operator.post(url("person", "change", person.pk), data)
    assert response.status_code == 302, response.content[:2000]
    person.refresh_from_db()
    assert person.name == "Ada King"
    assert list(person.access_groups.all()) == [lab["group"]]
    assert not entries(Kind.ACCESS_MEMBER_REMOVED)
