"""Door devices: tokens, signing secrets, revocation."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from verification import roles, services
from verification.admin.common import ADMIN_CSS, when
from verification.errors import DomainError
from verification.formatting import local_timestamp
from verification.models import (
    Device,
)


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["name", "token_prefix", "signs_requests", "created_at", "last_seen", "revoked"]
    search_fields = ["name"]
    # The door is chosen on the door's page (audited there, issue 11, item 1).
    fields = ["name", "door", "token_prefix", "signs_requests", "created_at", "revoked_at"]
    readonly_fields = ["door", "token_prefix", "signs_requests", "created_at", "revoked_at"]
    actions = [
        "revoke_tokens", "issue_new_tokens", "reinstate_devices", "issue_signing_secrets", "remove_signing_secrets",
    ]
    # The device page has Revoke / Reinstate buttons (issue 11, item 2), each with a confirmation page.
    change_form_template = "admin/verification/device/change_form.html"

    class Media:
        css = {"all": [ADMIN_CSS]}

    @admin.display(boolean=True, description="Signs requests")
    def signs_requests(self, obj: Device) -> bool:
        return obj.signs_requests

    def get_readonly_fields(self, request: HttpRequest, obj: Device | None = None) -> list[str]:
        # The name identifies the device in the audit log; tokens change through the actions.
        return [*self.readonly_fields, "name"] if obj is not None else self.readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Adding a device issues its first token.
        return super().has_add_permission(request) and self.has_issue_token_permission(request)

    def get_urls(self):  # noqa: ANN201
        return [
            path("<path:object_id>/revoke/", self.admin_site.admin_view(self.revoke_view),
                 name="verification_device_revoke"),
            path("<path:object_id>/reinstate/", self.admin_site.admin_view(self.reinstate_view),
                 name="verification_device_reinstate"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None):  # noqa: ANN201
        extra_context = {
            **(extra_context or {}),
            "may_revoke": self.has_revoke_permission(request),
            "may_reinstate": self.has_reinstate_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _device_or_404(self, request: HttpRequest, object_id: str) -> Device:
        device = self.get_object(request, object_id)
        if device is None:
            raise Http404("No such device.")
        return device

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The device page's Revoke button: a confirmation page, then ``device_revoke`` (audited)."""
        if not self.has_revoke_permission(request):
            raise PermissionDenied
        device = self._device_or_404(request, object_id)
        if request.method == "POST":
            if device.revoked_at is not None:
                messages.info(request, f"{device.name} was already revoked at {local_timestamp(device.revoked_at)}.")
            else:
                services.device_revoke(device=device, operator=request.user.get_username())
                messages.success(
                    request,
                    f"{device.name} is revoked as of {local_timestamp(device.revoked_at)}: its token no longer works "
                    "and its check-ins still waiting are refused (device_revoked). The revocation is in the audit log.",
                )
            return redirect("admin:verification_device_change", device.pk)
        return self._confirmation(request, device, action="revoke")

    def reinstate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The revoked device page's Reinstate button: a confirmation page, then a new token shown once."""
        if not self.has_reinstate_permission(request):
            raise PermissionDenied
        device = self._device_or_404(request, object_id)
        if request.method == "POST":
            try:
                token = services.device_reinstate(device=device, operator=request.user.get_username())
            except DomainError as refused:
                messages.error(request, refused.message)
            else:
                self._show_token_once(request, device, token)
            return redirect("admin:verification_device_change", device.pk)
        return self._confirmation(request, device, action="reinstate")

    def _confirmation(self, request: HttpRequest, device: Device, *, action: str) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": device,
            "action": action,
            "title": f"{action.capitalize()} {device.name}?",
        }
        return TemplateResponse(request, "admin/verification/device/confirm.html", context)

    @admin.display(description="Revoked", ordering="revoked_at")
    def revoked(self, obj: Device) -> str:
        return when(obj.revoked_at)

    @admin.display(description="Last seen", ordering="last_seen_at")
    def last_seen(self, obj: Device) -> str:
        return when(obj.last_seen_at)

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
        # A revoked device is refused here: it stays revoked until reinstated.
        self._token_for_each(request, queryset, services.device_issue_token)

    @admin.action(
        description="Reinstate the selected revoked devices (new token; audited)", permissions=["reinstate"]
    )
    def reinstate_devices(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        self._token_for_each(request, queryset, services.device_reinstate)

    def _token_for_each(self, request: HttpRequest, queryset: QuerySet[Device], issue) -> None:  # noqa: ANN001
        """``issue(device=, operator=)`` for each device: its new token shown once, or why it was refused."""
        for device in queryset:
            try:
                token = issue(device=device, operator=request.user.get_username())
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
