"""Door devices: tokens, signing secrets, revocation."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from verification import roles, services
from verification.errors import DomainError
from verification.models import (
    Device,
)


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["name", "token_prefix", "signs_requests", "created_at", "last_seen_at", "revoked_at"]
    search_fields = ["name"]
    # The door is chosen on the door's page (audited there, issue 11, item 1).
    fields = ["name", "door", "token_prefix", "signs_requests", "created_at", "revoked_at"]
    readonly_fields = ["door", "token_prefix", "signs_requests", "created_at", "revoked_at"]
    actions = [
        "revoke_tokens", "issue_new_tokens", "reinstate_devices", "issue_signing_secrets", "remove_signing_secrets",
    ]

    @admin.display(boolean=True, description="Signs requests")
    def signs_requests(self, obj: Device) -> bool:
        return obj.signs_requests

    def get_readonly_fields(self, request: HttpRequest, obj: Device | None = None) -> list[str]:
        # The name identifies the device in the audit log; tokens change through the actions.
        return [*self.readonly_fields, "name"] if obj is not None else self.readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Adding a device issues its first token.
        return super().has_add_permission(request) and self.has_issue_token_permission(request)

    def has_issue_token_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(roles.perm(roles.ISSUE_DEVICE_TOKENS))

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(roles.perm(roles.REVOKE_DEVICES))

    def has_reinstate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(roles.perm(roles.REINSTATE_DEVICES))

    def save_model(self, request: HttpRequest, obj: Device, form, change: bool) -> None:  # noqa: ANN001
        if change:
            return  # Nothing on an existing device is editable here.
        token = services.device_issue_token(device=obj, operator=request.user.get_username())
        self._show_token_once(request, obj, token)

    def _show_token_once(self, request: HttpRequest, device: Device, token: str) -> None:
        messages.warning(
            request,
            format_html(
                "API token for <b>{}</b>, shown only now (only its hash is stored): <code>{}</code>",
                device.name, token,
            ),
        )

    @admin.action(description="Revoke the selected devices' tokens", permissions=["revoke"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            services.device_revoke(device=device, operator=request.user.get_username())
        messages.success(request, f"Revoked {queryset.count()} device token(s).")

    @admin.action(
        description="Issue new tokens (the old ones stop working; not for revoked devices)", permissions=["issue_token"]
    )
    def issue_new_tokens(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            try:
                token = services.device_issue_token(device=device, operator=request.user.get_username())
            except DomainError as refused:  # revoked: it stays revoked until reinstated
                messages.error(request, refused.message)
            else:
                self._show_token_once(request, device, token)

    @admin.action(
        description="Reinstate the selected revoked devices (new token; audited)", permissions=["reinstate"]
    )
    def reinstate_devices(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            try:
                token = services.device_reinstate(device=device, operator=request.user.get_username())
            except DomainError as refused:
                messages.error(request, refused.message)
            else:
                self._show_token_once(request, device, token)

    @admin.action(
        description="Require signed requests: issue new signing secrets (shown once; the device must sign)",
        permissions=["issue_token"],
    )
    def issue_signing_secrets(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            try:
                secret = services.device_issue_signing_secret(device=device, operator=request.user.get_username())
            except DomainError as refused:
                messages.error(request, refused.message)
            else:
                messages.warning(
                    request,
                    format_html(
                        "Request-signing secret for <b>{}</b>, shown only now; from now on every request of "
                        "this device must be signed with it: <code>{}</code>",
                        device.name, secret,
                    ),
                )

    @admin.action(description="Stop requiring signed requests (remove signing secrets)", permissions=["issue_token"])
    def remove_signing_secrets(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            services.device_remove_signing_secret(device=device, operator=request.user.get_username())
        messages.success(request, f"{queryset.count()} device(s) no longer sign their requests.")
