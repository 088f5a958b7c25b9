"""Lockouts in force and past (read-only; unlocking is an audited action)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from verification import roles, services
from verification.admin.common import (
    ADMIN_CSS,
    ReadOnlyAdmin,
    when,
)
from verification.formatting import duration_text
from verification.models import (
    Lockout,
)


class InForceFilter(admin.SimpleListFilter):
    title = "in force"
    parameter_name = "in_force"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):  # noqa: ANN201
        return [("yes", "In force now"), ("no", "Ended or unlocked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Lockout]) -> QuerySet[Lockout]:
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(unlocked_at__isnull=True, locked_until__gt=now)
        if self.value() == "no":
            return queryset.exclude(unlocked_at__isnull=True, locked_until__gt=now)
        return queryset


@admin.register(Lockout)
class LockoutAdmin(ReadOnlyAdmin):
    list_display = [
        "started", "scope", "label", "failures", "level", "until", "active", "unlocked", "unlocked_by",
    ]
    list_filter = [InForceFilter, "scope"]
    search_fields = ["key", "label"]
    actions = ["unlock"]

    class Media:
        css = {"all": [ADMIN_CSS]}

    @admin.display(description="Started", ordering="created_at")
    def started(self, obj: Lockout) -> str:
        return when(obj.created_at)

    @admin.display(description="Locked until", ordering="locked_until")
    def until(self, obj: Lockout) -> str:
        remaining = (obj.locked_until - timezone.now()).total_seconds()
        if obj.unlocked_at is None and remaining > 0:
            return format_html("{} (in {})", when(obj.locked_until), duration_text(remaining))
        return when(obj.locked_until)

    @admin.display(description="Unlocked", ordering="unlocked_at")
    def unlocked(self, obj: Lockout) -> str:
        return when(obj.unlocked_at)

    @admin.display(description="In force", boolean=True)
    def active(self, obj: Lockout) -> bool:
        return obj.unlocked_at is None and obj.locked_until > timezone.now()

    def has_unlock_permission(self, request: HttpRequest) -> bool:
        # Unlocking changes who may try again: its own permission, not merely the right to see lockouts.
        return request.user.has_perm(roles.perm(roles.UNLOCK_LOCKOUTS))

    @admin.action(description="Unlock the selected lockouts now", permissions=["unlock"])
    def unlock(self, request: HttpRequest, queryset: QuerySet[Lockout]) -> None:
        released = sum(services.lockout_release(lockout=lockout, operator=request.user.get_username()) for lockout in queryset)
        messages.success(request, f"Unlocked {released} lockout(s); each unlock is in the audit log.")
