"""Changing who may pass which door when: zones, doors, devices at doors, access groups, their zones,
windows, members and holidays (issue 11, item 1). The rule that reads them is ``access.py``.

Every change is validated (``full_clean``), saved and audited in one transaction, with the acting user
as the entry's actor; a save that changes nothing appends nothing. Rows are locked ``of=("self",)``:
PostgreSQL refuses FOR UPDATE on the nullable side of an outer join (a device's door, a holiday's group). Entries name doors, zones and
groups in ``detail``; a person only in the entry's person columns (``access_member_*``), which an
erasure can blank, never in the hashed ``detail``.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, time
from typing import Any

from django.db import transaction

from verification.audit import audit_append
from verification.models import (
    AccessGroup,
    AccessGroupMembership,
    AccessWindow,
    AuditEntry,
    Device,
    Door,
    Holiday,
    Person,
    Zone,
)
from verification.services.access import WindowSpec, window_label

Kind = AuditEntry.Kind


def _value(value: Any) -> Any:
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, (Zone, Door, AccessGroup)):
        return value.name
    return value


def _changes(before: Any, after: Any, fields: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {
        name: {"old": _value(getattr(before, name)), "new": _value(getattr(after, name))}
        for name in fields
        if getattr(before, name) != getattr(after, name)
    }


def _audit(kind: str, operator: str, **detail: Any) -> AuditEntry:
    return audit_append(kind=kind, actor=operator, detail=detail)


# --- Zones -----------------------------------------------------------------------------------------


@transaction.atomic
def zone_save(*, zone: Zone, operator: str = "") -> Zone:
    """Create or change a zone (name, description); audited."""
    before = Zone.objects.select_for_update().filter(pk=zone.pk).first() if zone.pk else None
    zone.full_clean()
    zone.save()
    if before is None:
        _audit(Kind.ZONE_CREATED, operator, zone_id=zone.pk, zone=zone.name)
    elif changes := _changes(before, zone, ("name", "description")):
        _audit(Kind.ZONE_CHANGED, operator, zone_id=zone.pk, zone=zone.name, changes=changes)
    return zone


@transaction.atomic
def zone_delete(*, zone: Zone, operator: str = "") -> None:
    """Delete a zone without doors (a zone with doors is protected); the groups that granted it lose it."""
    groups = sorted(zone.access_groups.values_list("name", flat=True))
    _audit(Kind.ZONE_DELETED, operator, zone_id=zone.pk, zone=zone.name, granted_by_groups=groups)
    zone.delete()


# --- Doors and the devices at them -----------------------------------------------------------------


@transaction.atomic
def door_save(*, door: Door, operator: str = "") -> Door:
    """Create or change a door (name, zone, description); audited. Moving a door to another zone changes
    who may pass it: the entry names both zones."""
    before = Door.objects.select_for_update(of=("self",)).select_related("zone").filter(pk=door.pk).first() if door.pk else None
    door.full_clean()
    door.save()
    if before is None:
        _audit(Kind.DOOR_CREATED, operator, door_id=door.pk, door=door.name, zone=door.zone.name)
    elif changes := _changes(before, door, ("name", "zone", "description")):
        _audit(Kind.DOOR_CHANGED, operator, door_id=door.pk, door=door.name, changes=changes)
    return door


@transaction.atomic
def door_delete(*, door: Door, operator: str = "") -> None:
    """Delete a door with no device at it (a door with devices is protected); audited."""
    _audit(Kind.DOOR_DELETED, operator, door_id=door.pk, door=door.name, zone=door.zone.name)
    door.delete()


@transaction.atomic
def device_door_set(*, device: Device, door: Door | None, operator: str = "") -> bool:
    """Place ``device`` at ``door`` (None: at no door); audited. False if it was already there."""
    locked = Device.objects.select_for_update(of=("self",)).select_related("door").get(pk=device.pk)
    if locked.door_id == (door.pk if door else None):
        device.door = door
        return False
    old = locked.door
    locked.door = door
    locked.save(update_fields=["door", "updated_at"])
    audit_append(
        kind=Kind.DEVICE_DOOR_CHANGED,
        actor=operator,
        device_ref=locked.pk,
        device_name=locked.name,
        detail={
            "old_door": old.name if old else None, "old_door_id": old.pk if old else None,
            "new_door": door.name if door else None, "new_door_id": door.pk if door else None,
        },
    )
    device.door, device.updated_at = door, locked.updated_at
    return True


@transaction.atomic
def door_devices_set(*, door: Door, devices: Iterable[Device], operator: str = "") -> int:
    """Make ``devices`` exactly the devices at ``door``: the others there leave it (to no door). Each
    device moved is its own audited change; returns how many moved."""
    wanted = {device.pk: device for device in devices}
    moved = 0
    for device in Device.objects.filter(door=door).exclude(pk__in=list(wanted)):
        moved += device_door_set(device=device, door=None, operator=operator)
    for device in wanted.values():
        moved += device_door_set(device=device, door=door, operator=operator)
    return moved


# --- Access groups ---------------------------------------------------------------------------------


@transaction.atomic
def access_group_save(
    *, group: AccessGroup, zones: Iterable[Zone] | None = None, operator: str = ""
) -> AccessGroup:
    """Create or change a group (name, description) and, when given, set the zones it grants; one
    audited entry with what changed (zones granted and withdrawn by name)."""
    before = AccessGroup.objects.select_for_update().filter(pk=group.pk).first() if group.pk else None
    old_zones = {zone.pk: zone.name for zone in before.zones.all()} if before else {}
    group.full_clean()
    group.save()
    new_zones = old_zones if zones is None else {zone.pk: zone.name for zone in zones}
    if zones is not None:
        group.zones.set(list(new_zones))
    granted = sorted(name for pk, name in new_zones.items() if pk not in old_zones)
    withdrawn = sorted(name for pk, name in old_zones.items() if pk not in new_zones)
    if before is None:
        _audit(Kind.ACCESS_GROUP_CREATED, operator, group_id=group.pk, group=group.name, zones=sorted(new_zones.values()))
        return group
    changes: dict[str, Any] = _changes(before, group, ("name", "description"))
    if granted or withdrawn:
        changes["zones"] = {"granted": granted, "withdrawn": withdrawn}
    if changes:
        _audit(Kind.ACCESS_GROUP_CHANGED, operator, group_id=group.pk, group=group.name, changes=changes)
    return group


@transaction.atomic
def access_group_delete(*, group: AccessGroup, operator: str = "") -> None:
    """Delete a group with its windows, own holidays and memberships; audited (members by count and id)."""
    person_ids = sorted(group.memberships.values_list("person_id", flat=True))
    _audit(
        Kind.ACCESS_GROUP_DELETED, operator, group_id=group.pk, group=group.name,
        zones=sorted(group.zones.values_list("name", flat=True)), members=len(person_ids), person_ids=person_ids,
        windows=[window_label(window) for window in group.windows.all()],
    )
    group.delete()


@transaction.atomic
def access_windows_set(*, group: AccessGroup, windows: Iterable[WindowSpec], operator: str = "") -> bool:
    """Make ``windows`` exactly the group's weekly windows; one audited entry listing the windows added
    and removed. False if they were already these."""
    AccessGroup.objects.select_for_update().get(pk=group.pk)
    wanted: dict[tuple[int, time, time], WindowSpec] = {}
    for spec in windows:
        wanted[(spec.day, spec.start, spec.end)] = spec
    current = {(window.day, window.start, window.end): window for window in group.windows.all()}
    removed = [window for key, window in current.items() if key not in wanted]
    added = [AccessWindow(group=group, day=day, start=start, end=end) for (day, start, end) in wanted if (day, start, end) not in current]
    if not removed and not added:
        return False
    for window in removed:
        window.delete()
    for window in added:
        window.full_clean()
        window.save()
    _audit(
        Kind.ACCESS_GROUP_CHANGED, operator, group_id=group.pk, group=group.name,
        changes={"windows": {"added": [window_label(w) for w in added], "removed": [window_label(w) for w in removed]}},
    )
    return True


@transaction.atomic
def access_member_add(*, group: AccessGroup, person: Person, operator: str = "") -> bool:
    """Add ``person`` to ``group``; audited under the person (erasable columns). False if already in it."""
    membership, created = AccessGroupMembership.objects.get_or_create(group=group, person=person)
    if created:
        _audit_member(Kind.ACCESS_MEMBER_ADDED, group, person, operator)
    return created


@transaction.atomic
def access_member_remove(*, group: AccessGroup, person: Person, operator: str = "") -> bool:
    """Take ``person`` out of ``group``; audited. False if not in it."""
    deleted, _ = AccessGroupMembership.objects.filter(group=group, person=person).delete()
    if deleted:
        _audit_member(Kind.ACCESS_MEMBER_REMOVED, group, person, operator)
    return bool(deleted)


def _audit_member(kind: str, group: AccessGroup, person: Person, operator: str) -> AuditEntry:
    return audit_append(
        kind=kind,
        actor=operator,
        person_external_id=person.external_id,
        person_name=person.name,
        detail={"person_id": person.pk, "group_id": group.pk, "group": group.name},
    )


# --- Holidays --------------------------------------------------------------------------------------


def _holiday_scope(holiday: Holiday) -> str | None:
    return holiday.group.name if holiday.group_id else None


@transaction.atomic
def holiday_save(*, holiday: Holiday, operator: str = "") -> Holiday:
    """Create or change a holiday (site-wide, or one group's); audited."""
    before = Holiday.objects.select_for_update(of=("self",)).select_related("group").filter(pk=holiday.pk).first() if holiday.pk else None
    holiday.full_clean()
    holiday.save()
    common = {"holiday_id": holiday.pk, "date": holiday.date.isoformat(), "name": holiday.name, "group": _holiday_scope(holiday)}
    if before is None:
        _audit(Kind.HOLIDAY_ADDED, operator, **common)
    elif changes := _changes(before, holiday, ("date", "name", "group")):
        _audit(Kind.HOLIDAY_CHANGED, operator, **common, changes=changes)
    return holiday


@transaction.atomic
def holiday_delete(*, holiday: Holiday, operator: str = "") -> None:
    _audit(
        Kind.HOLIDAY_REMOVED, operator, holiday_id=holiday.pk, date=holiday.date.isoformat(), name=holiday.name,
        group=_holiday_scope(holiday),
    )
    holiday.delete()
