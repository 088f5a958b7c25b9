"""The access admin's inlines (issue 11, item 1): a group's weekly windows, its own holidays and its
members, and the person page's "Access groups and rights". Their formsets save through
``services/access_rules.py`` (audited, with the acting user) whichever page they sit on.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.forms.formsets import TOTAL_FORM_COUNT
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from verification.models import AccessGroupMembership, AccessWindow, Holiday
from verification.services import access, access_rules


def operator_of(request: HttpRequest) -> str:
    return request.user.get_username()


def link(obj: Any, label: str | None = None) -> str:
    meta = obj._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or str(obj))


def links(objects: Any, empty: str = "-") -> str:
    objects = list(objects)
    if not objects:
        return empty
    return format_html_join(", ", "{}", ((link(obj),) for obj in objects))


def site_time(at) -> str:  # noqa: ANN001 - aware datetime
    local = access.site_local(at)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({access.site_time_zone().key})"


# --- Inline formsets that save through the services --------------------------------------------


class _AuditedInlineFormSet(BaseInlineFormSet):
    """An inline formset whose ``save`` calls the access services (``operator`` set per request).

    A POST that carries none of this inline's fields (not even its management form: a script that posts
    the person form as it was before access groups existed) leaves it alone: valid, nothing saved.
    """

    operator = ""

    def __init__(self, data: Any = None, files: Any = None, *args: Any, prefix: str | None = None, **kwargs: Any) -> None:
        total = f"{prefix or self.get_default_prefix()}-{TOTAL_FORM_COUNT}"
        self.absent = data is not None and total not in data
        if self.absent:
            data = files = None
        super().__init__(data, files, *args, prefix=prefix, **kwargs)

    def is_valid(self) -> bool:
        return True if self.absent else super().is_valid()

    def save(self, commit: bool = True) -> list:  # noqa: FBT001, FBT002 - Django's signature
        self.new_objects, self.changed_objects, self.deleted_objects = [], [], []
        if self.absent:
            return []
        self.save_through_services()
        return self.new_objects + [obj for obj, _ in self.changed_objects]

    def save_through_services(self) -> None:
        raise NotImplementedError

    def kept_forms(self) -> list[forms.ModelForm]:
        """Forms that stay: not deleted, valid, and either an existing row or a filled-in new one."""
        return [
            form for form in self.forms
            if form not in self.deleted_forms and form.cleaned_data and (form.instance.pk or form.has_changed())
        ]


class _OperatorInline(admin.TabularInline):
    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any):  # noqa: ANN201
        formset = super().get_formset(request, obj, **kwargs)
        formset.operator = operator_of(request)
        return formset


class WindowFormSet(_AuditedInlineFormSet):
    def clean(self) -> None:
        super().clean()
        seen: set[tuple] = set()
        for form in self.kept_forms():
            key = (form.cleaned_data.get("day"), form.cleaned_data.get("start"), form.cleaned_data.get("end"))
            if key in seen:
                raise forms.ValidationError("The same window is listed twice.")
            seen.add(key)

    def save_through_services(self) -> None:
        specs = [
            access.WindowSpec(day=form.cleaned_data["day"], start=form.cleaned_data["start"], end=form.cleaned_data["end"])
            for form in self.kept_forms()
        ]
        access_rules.access_windows_set(group=self.instance, windows=specs, operator=self.operator)


class WindowInline(_OperatorInline):
    model = AccessWindow
    formset = WindowFormSet
    extra = 1
    fields = ["day", "start", "end", "reads"]
    readonly_fields = ["reads"]
    verbose_name_plural = "weekly windows (site time; end at or before start: the next day)"

    @admin.display(description="Reads as")
    def reads(self, obj: AccessWindow) -> str:
        return access.window_label(obj) if obj.pk else "-"


class HolidayFormSet(_AuditedInlineFormSet):
    def save_through_services(self) -> None:
        for form in self.deleted_forms:
            if form.instance.pk:
                access_rules.holiday_delete(holiday=form.instance, operator=self.operator)
                self.deleted_objects.append(form.instance)
        for form in self.kept_forms():
            if form.instance.pk and not form.has_changed():
                continue
            holiday = form.save(commit=False)
            holiday.group = self.instance
            created = holiday.pk is None
            access_rules.holiday_save(holiday=holiday, operator=self.operator)
            if created:
                self.new_objects.append(holiday)
            else:
                self.changed_objects.append((holiday, form.changed_data))


class GroupHolidayInline(_OperatorInline):
    model = Holiday
    formset = HolidayFormSet
    fk_name = "group"
    extra = 0
    fields = ["date", "name"]
    verbose_name_plural = "holidays of this group only (site-wide ones are under Holidays)"


class MembershipFormSet(_AuditedInlineFormSet):
    """Members on the group page, groups on the person page: each added or removed one audited."""

    def save_through_services(self) -> None:
        for form in self.deleted_forms:
            if form.instance.pk:
                access_rules.access_member_remove(
                    group=form.instance.group, person=form.instance.person, operator=self.operator
                )
                self.deleted_objects.append(form.instance)
        for form in self.kept_forms():
            if form.instance.pk and not form.has_changed():
                continue
            if form.instance.pk:  # another group (or person) picked on an existing row: remove, then add
                old = AccessGroupMembership.objects.select_related("group", "person").get(pk=form.instance.pk)
                access_rules.access_member_remove(group=old.group, person=old.person, operator=self.operator)
            membership = form.save(commit=False)
            access_rules.access_member_add(group=membership.group, person=membership.person, operator=self.operator)
            self.new_objects.append(membership)


class GroupMembershipInline(_OperatorInline):
    model = AccessGroupMembership
    formset = MembershipFormSet
    fk_name = "group"
    extra = 0
    fields = ["person", "external_id", "active", "created_at"]
    readonly_fields = ["external_id", "active", "created_at"]
    autocomplete_fields = ["person"]
    verbose_name = "member"
    verbose_name_plural = "members"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessGroupMembership]:
        return super().get_queryset(request).select_related("person").order_by("person__name")

    @admin.display(description="External ID")
    def external_id(self, obj: AccessGroupMembership) -> str:
        return obj.person.external_id if obj.pk else "-"

    @admin.display(description="Active", boolean=True)
    def active(self, obj: AccessGroupMembership) -> bool | None:
        return obj.person.is_active if obj.pk else None

    @admin.display(description="Member since")
    def created_at(self, obj: AccessGroupMembership) -> str:
        return site_time(obj.created_at) if obj.pk else "-"


class PersonAccessInline(_OperatorInline):
    """On the person page: the person's access groups, what each grants, and whether it is open now."""

    model = AccessGroupMembership
    formset = MembershipFormSet
    fk_name = "person"
    extra = 0
    fields = ["group", "doors", "schedule", "open_now"]
    readonly_fields = ["doors", "schedule", "open_now"]
    verbose_name = "access group"
    verbose_name_plural = "access groups and rights (doors by zone; times are the site's)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessGroupMembership]:
        return (
            super().get_queryset(request)
            .select_related("group")
            .prefetch_related("group__windows", "group__zones__doors")
            .order_by("group__name")
        )

    @admin.display(description="Zones and their doors")
    def doors(self, obj: AccessGroupMembership) -> str:
        if not obj.pk:
            return "-"
        zones = list(obj.group.zones.all())
        if not zones:
            return "no zone (grants nothing)"
        return format_html_join(
            "; ", "{}: {}", ((link(zone), links(zone.doors.all(), "no door")) for zone in zones)
        )

    @admin.display(description="Weekly windows")
    def schedule(self, obj: AccessGroupMembership) -> str:
        return access.schedule_label(obj.group.windows.all()) if obj.pk else "-"

    @admin.display(description="Open now", boolean=True)
    def open_now(self, obj: AccessGroupMembership) -> bool | None:
        if not obj.pk:
            return None
        return obj.group.pk in access.groups_open(groups=[obj.group], at=timezone.now())
