"""Doors, zones, access groups (with their windows, holidays and members) and site-wide holidays
(issue 11, item 1). The inlines, the person page's "Access groups and rights" among them, are in
``access_inlines.py``.

Every save and delete goes through ``services/access_rules.py`` (audited with the acting user). The rule
itself is ``services/access.py``; the door page asks it "who may enter now", the group list "open now".
Rights: the operator changes all of it, the security officer sees it (``verification.roles``).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.db.models import Count, Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from verification.admin.access_inlines import (
    GroupHolidayInline,
    GroupMembershipInline,
    WindowInline,
    link,
    links,
    operator_of,
    site_time,
)
from verification.models import AccessGroup, AccessGroupMembership, Device, Door, Holiday, Zone
from verification.services import access, access_rules

# The door page lists at most this many people by name ("and N more" after them).
WHO_MAY_ENTER_SHOWN = 200


def _warn_devices_without_door(request: HttpRequest) -> None:
    """On the door and zone lists: devices that refuse everyone because they stand at no door."""
    if not access.devices_without_door_refused():
        return
    names = list(Device.objects.filter(door__isnull=True, revoked_at__isnull=True).values_list("name", flat=True)[:20])
    if names:
        messages.warning(
            request,
            f"{len(names)} device(s) stand at no door and refuse every check-in (not_authorized_here, "
            f"DEVICE_WITHOUT_DOOR): {', '.join(names)}. Place them at a door on the door's page.",
        )


# --- Zones -----------------------------------------------------------------------------------------


@admin.register(Zone)
class ZoneAdmin(admin.ModelAdmin):
    list_display = ["name", "door_list", "group_list"]
    search_fields = ["name"]
    fields = ["name", "description", "door_list", "group_list"]
    readonly_fields = ["door_list", "group_list"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Zone]:
        return super().get_queryset(request).prefetch_related("doors", "access_groups")

    @admin.display(description="Doors")
    def door_list(self, obj: Zone) -> str:
        return links(obj.doors.all()) if obj.pk else "-"

    @admin.display(description="Granted by groups")
    def group_list(self, obj: Zone) -> str:
        return links(obj.access_groups.all(), "none: nobody may pass its doors") if obj.pk else "-"

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        _warn_devices_without_door(request)
        return super().changelist_view(request, extra_context)

    def save_model(self, request: HttpRequest, obj: Zone, form, change: bool) -> None:  # noqa: ANN001
        access_rules.zone_save(zone=obj, operator=operator_of(request))

    def delete_model(self, request: HttpRequest, obj: Zone) -> None:
        access_rules.zone_delete(zone=obj, operator=operator_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Zone]) -> None:
        for zone in queryset:
            access_rules.zone_delete(zone=zone, operator=operator_of(request))


# --- Doors -----------------------------------------------------------------------------------------


class DoorForm(forms.ModelForm):
    devices_here = forms.ModelMultipleChoiceField(
        queryset=Device.objects.all(),
        required=False,
        label="Devices at this door",
        widget=FilteredSelectMultiple("devices", is_stacked=False),
        help_text="A device stands at one door at most: choosing it here moves it from its other door.",
    )

    class Meta:
        model = Door
        fields = ["name", "zone", "description"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and "devices_here" in self.fields:
            self.fields["devices_here"].initial = list(self.instance.devices.all())


@admin.register(Door)
class DoorAdmin(admin.ModelAdmin):
    form = DoorForm
    list_display = ["name", "zone", "device_list"]
    list_filter = ["zone"]
    search_fields = ["name", "zone__name"]
    list_select_related = ["zone"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Door]:
        return super().get_queryset(request).prefetch_related("devices")

    def get_fields(self, request: HttpRequest, obj: Door | None = None) -> list[str]:
        fields = ["name", "zone", "description", "devices_here"]
        return fields + ["who_may_enter_now", "groups_here"] if obj is not None else fields

    def get_form(self, request: HttpRequest, obj: Door | None = None, change: bool = False, **kwargs: Any):  # noqa: ANN201
        form = super().get_form(request, obj, change=change, **kwargs)
        if "devices_here" in self.get_readonly_fields(request, obj):
            # A declared field stays in the form even when shown read-only: unposted, it would clear them.
            form.base_fields.pop("devices_here", None)
        return form

    def get_readonly_fields(self, request: HttpRequest, obj: Door | None = None) -> list[str]:
        readonly = ["who_may_enter_now", "groups_here"]
        # Placing a device is a change to the device: it takes the right to change devices too.
        if not request.user.has_perm("verification.change_device"):
            readonly.append("devices_here")
        return readonly

    @admin.display(description="Devices")
    def device_list(self, obj: Door) -> str:
        return links(obj.devices.all(), "none") if obj.pk else "-"

    @admin.display(description="Devices at this door")
    def devices_here(self, obj: Door) -> str:
        return self.device_list(obj)

    @staticmethod
    def _now(obj: Door) -> access.DoorNow:
        # Both read-only fields show the same moment (and ask the rule once).
        if not hasattr(obj, "_door_now"):
            obj._door_now = access.door_now(door=obj)
        return obj._door_now

    @admin.display(description="Access groups granting its zone")
    def groups_here(self, obj: Door) -> str:
        now = self._now(obj)
        if not now.groups:
            return f"None: no group grants {obj.zone.name}, so nobody may pass."
        rows = (
            (link(group), "open now" if group.pk in now.open_group_ids else "closed now",
             access.schedule_label(group.windows.all()))
            for group in now.groups
        )
        return format_html(
            "<table><thead><tr><th>Group</th><th>Now</th><th>Weekly windows</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description="Who may enter now")
    def who_may_enter_now(self, obj: Door) -> str:
        now = self._now(obj)
        people = now.people
        total = people.count()
        head = f"At {site_time(now.at)}: {total} {'person' if total == 1 else 'people'} (active, in a group open now)"
        if not total:
            return head + "."
        shown = list(
            people.prefetch_related(
                Prefetch(
                    "access_memberships",
                    queryset=AccessGroupMembership.objects.filter(group__in=now.open_group_ids).select_related("group"),
                    to_attr="open_memberships",
                )
            )[:WHO_MAY_ENTER_SHOWN]
        )
        rows = (
            (link(person, person.name), person.external_id,
             ", ".join(sorted(membership.group.name for membership in person.open_memberships)))
            for person in shown
        )
        more = f" and {total - len(shown)} more" if total > len(shown) else ""
        return format_html(
            "{}:<table><thead><tr><th>Name</th><th>External ID</th><th>Through</th></tr></thead><tbody>{}</tbody>"
            "</table>{}",
            head, format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows), more,
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        _warn_devices_without_door(request)
        return super().changelist_view(request, extra_context)

    def save_model(self, request: HttpRequest, obj: Door, form, change: bool) -> None:  # noqa: ANN001
        access_rules.door_save(door=obj, operator=operator_of(request))

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:  # noqa: ANN001
        super().save_related(request, form, formsets, change)
        if "devices_here" in form.changed_data and "devices_here" in form.cleaned_data:
            access_rules.door_devices_set(
                door=form.instance, devices=form.cleaned_data["devices_here"], operator=operator_of(request)
            )
        if not form.instance.zone.access_groups.exists():
            messages.warning(
                request, f"Nobody may pass {form.instance.name} yet: no access group grants {form.instance.zone.name}."
            )

    def delete_model(self, request: HttpRequest, obj: Door) -> None:
        access_rules.door_delete(door=obj, operator=operator_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Door]) -> None:
        for door in queryset:
            access_rules.door_delete(door=door, operator=operator_of(request))


# --- Access groups ---------------------------------------------------------------------------------


@admin.register(AccessGroup)
class AccessGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "zone_list", "schedule", "member_count", "open_now"]
    search_fields = ["name"]
    fields = ["name", "description", "zones"]
    filter_horizontal = ["zones"]
    inlines = [WindowInline, GroupHolidayInline, GroupMembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessGroup]:
        return (
            super().get_queryset(request)
            .prefetch_related("zones", "windows")
            .annotate(n_members=Count("memberships", distinct=True))
        )

    @admin.display(description="Zones")
    def zone_list(self, obj: AccessGroup) -> str:
        return links(obj.zones.all(), "none")

    @admin.display(description="Weekly windows")
    def schedule(self, obj: AccessGroup) -> str:
        return access.schedule_label(obj.windows.all())

    @admin.display(description="Members", ordering="n_members")
    def member_count(self, obj: AccessGroup) -> int:
        return obj.n_members

    @admin.display(description="Open now", boolean=True)
    def open_now(self, obj: AccessGroup) -> bool:
        return obj.pk in access.groups_open(groups=[obj], at=timezone.now())

    def save_model(self, request: HttpRequest, obj: AccessGroup, form, change: bool) -> None:  # noqa: ANN001
        # The zones are set here, with the group's own fields: one audit entry for the form.
        zones = form.cleaned_data.get("zones") if "zones" in form.cleaned_data else None
        access_rules.access_group_save(group=obj, zones=zones, operator=operator_of(request))

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:  # noqa: ANN001
        # Not form.save_m2m(): save_model set the zones through the service. Inlines save through theirs.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: AccessGroup) -> None:
        access_rules.access_group_delete(group=obj, operator=operator_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AccessGroup]) -> None:
        for group in queryset:
            access_rules.access_group_delete(group=group, operator=operator_of(request))


# --- Holidays (site-wide and per group) ------------------------------------------------------------


class HolidayScopeFilter(admin.SimpleListFilter):
    title = "applies to"
    parameter_name = "scope"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):  # noqa: ANN201
        return [("site", "the whole site"), ("group", "one group")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Holiday]) -> QuerySet[Holiday]:
        if self.value() == "site":
            return queryset.filter(group__isnull=True)
        if self.value() == "group":
            return queryset.filter(group__isnull=False)
        return queryset


@admin.register(Holiday)
class HolidayAdmin(admin.ModelAdmin):
    list_display = ["date", "name", "applies_to"]
    list_filter = [HolidayScopeFilter, "group"]
    search_fields = ["name"]
    date_hierarchy = "date"
    fields = ["date", "name", "group"]
    list_select_related = ["group"]

    @admin.display(description="Applies to", ordering="group__name")
    def applies_to(self, obj: Holiday) -> str:
        return link(obj.group) if obj.group_id else "the whole site"

    def save_model(self, request: HttpRequest, obj: Holiday, form, change: bool) -> None:  # noqa: ANN001
        access_rules.holiday_save(holiday=obj, operator=operator_of(request))

    def delete_model(self, request: HttpRequest, obj: Holiday) -> None:
        access_rules.holiday_delete(holiday=obj, operator=operator_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Holiday]) -> None:
        for holiday in queryset:
            access_rules.holiday_delete(holiday=holiday, operator=operator_of(request))

