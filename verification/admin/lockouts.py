"""Lockouts in force and past (read-only; unlocking is an audited action)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from verification import roles, services
from verification.admin.common import (
    ReadOnlyAdmin,
)
from verification.models import (
    Lockout,
)


@admin.register(Lockout)
class LockoutAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at", "scope", "label", "failures", "level", "locked_until", "active", "unlocked_at", "unlocked_by",
    ]
    list_filter = ["scope"]
    search_fields = ["key", "label"]
    actions = ["unlock"]

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
