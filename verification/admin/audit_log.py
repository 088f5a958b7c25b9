"""The audit log: read-only for everyone, filters and CSV export."""

from __future__ import annotations

import csv

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from verification import roles, services
from verification.admin.common import (
    ReadOnlyAdmin,
    may_view_reference_photos,
    may_view_snapshots,
    thumbnail,
)
from verification.audit import CSV_COLUMNS as AUDIT_CSV_COLUMNS
from verification.audit import csv_row
from verification.models import (
    AuditEntry,
    CheckIn,
)


class DistinctValueFilter(admin.SimpleListFilter):
    """Filter on the distinct values of a snapshot column (no FK: audit rows outlive people/devices)."""

    field_name = ""
    limit = 200

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):  # noqa: ANN201
        values = (
            AuditEntry.objects.exclude(**{self.field_name: ""})
            .order_by(self.field_name)
            .values_list(self.field_name, flat=True)
            .distinct()[: self.limit]
        )
        return [(value, value) for value in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEntry]) -> QuerySet[AuditEntry]:
        if self.value():
            return queryset.filter(**{self.field_name: self.value()})
        return queryset


class DeviceFilter(DistinctValueFilter):
    title = "device"
    parameter_name = "device"
    field_name = "device_name"


class PersonFilter(DistinctValueFilter):
    title = "person"
    parameter_name = "person"
    field_name = "person_external_id"


class ReasonFilter(DistinctValueFilter):
    title = "reason"
    parameter_name = "reason"
    field_name = "reason"


class DecisionFilter(admin.SimpleListFilter):
    title = "decision"
    parameter_name = "decision"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):  # noqa: ANN201
        return [("1", "1 (admitted)"), ("0", "0 (refused)"), ("none", "none (failure or event)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEntry]) -> QuerySet[AuditEntry]:
        if self.value() in ("0", "1"):
            return queryset.filter(decision=int(self.value()))
        if self.value() == "none":
            return queryset.filter(decision__isnull=True)
        return queryset


# Every hashed column plus prev_hash / entry_hash: an export verifies on its own
# (``manage.py verify_audit_log --csv FILE``; issue 9, item 3).
CSV_COLUMNS = AUDIT_CSV_COLUMNS


class _Echo:
    def write(self, value: str) -> str:
        return value


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    change_list_template = "admin/verification/auditentry/change_list.html"
    list_display = [
        "seq", "created_at", "kind", "actor", "device_name", "person_external_id", "person_name", "decision_badge",
        "score_display", "threshold", "reason", "model_version", "processing_ms",
    ]
    list_filter = [DecisionFilter, "kind", DeviceFilter, PersonFilter, ReasonFilter, ("created_at", admin.DateFieldListFilter)]
    search_fields = ["person_name", "person_external_id", "actor"]
    date_hierarchy = "created_at"
    list_per_page = 50
    fields = [
        "seq", "created_at", "kind", "actor", "decision_badge", "score", "threshold", "reason", "model_version",
        "processing_ms", "device_name", "device_ref", "person_external_id", "person_name", "person_erased_at",
        "images", "checkin", "detail", "hash_scheme", "prev_hash", "entry_hash",
    ]
    readonly_fields = fields

    @admin.display(description="Decision", ordering="decision")
    def decision_badge(self, obj: AuditEntry) -> str:
        if obj.decision is None:
            return "-"
        colour, label = ("#1b7f3b", "1 admitted") if obj.decision == 1 else ("#b3261e", "0 refused")
        return format_html(
            '<span style="color:#fff;background:{};padding:2px 8px;border-radius:8px;font-weight:bold">{}</span>',
            colour, label,
        )

    @admin.display(description="Score", ordering="score")
    def score_display(self, obj: AuditEntry) -> str:
        return "-" if obj.score is None else f"{obj.score:.3f}"

    def get_fields(self, request: HttpRequest, obj: AuditEntry | None = None) -> list[str]:
        # Biometric images only for those who may view them: both, the snapshot alone, the reference alone, none.
        images = {
            (True, True): "images", (True, False): "images_snapshot", (False, True): "images_reference",
        }.get((may_view_snapshots(request), may_view_reference_photos(request)))
        return [name if name != "images" else images for name in self.fields if name != "images" or images]

    def get_readonly_fields(self, request: HttpRequest, obj: AuditEntry | None = None) -> list[str]:
        return self.get_fields(request, obj)

    @admin.display(description="Snapshot and best-matching reference")
    def images(self, obj: AuditEntry) -> str:
        return self._images(obj, snapshot=True, reference=True)

    @admin.display(description="Snapshot")
    def images_snapshot(self, obj: AuditEntry) -> str:
        return self._images(obj, snapshot=True, reference=False)

    @admin.display(description="Best-matching reference")
    def images_reference(self, obj: AuditEntry) -> str:
        return self._images(obj, snapshot=False, reference=True)

    def _images(self, obj: AuditEntry, *, snapshot: bool, reference: bool) -> str:
        checkin = CheckIn.objects.filter(pk=obj.checkin_id).select_related("best_reference").first()
        if checkin is None:
            return "(check-in deleted)"
        cells = []
        if snapshot and checkin.snapshot_purged_at is not None:
            cells.append(("Snapshot", f"removed {checkin.snapshot_purged_at:%Y-%m-%d} (retention or erasure)"))
        elif snapshot:
            cells.append(("Snapshot", thumbnail(checkin.snapshot, size=240, alt="snapshot")))
        if reference and checkin.best_reference is not None:
            cells.append(("Best reference", thumbnail(checkin.best_reference.image, size=240, alt="reference")))
            cells.append(("Aligned reference face", thumbnail(checkin.best_reference.face_crop, size=120, alt="face")))
        if not cells:
            return "-"
        return format_html(
            '<div style="display:flex;gap:16px">{}</div>',
            format_html_join("", '<figure style="margin:0">{}<figcaption>{}</figcaption></figure>',
                             ((image, label) for label, image in cells)),
        )

    def has_export_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) and request.user.has_perm(roles.perm(roles.EXPORT_AUDIT))

    def has_verify_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(roles.perm(roles.VERIFY_AUDIT_CHAIN))

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "has_export_permission": self.has_export_permission(request),
            "has_verify_permission": self.has_verify_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def get_urls(self):  # noqa: ANN201
        export = path(
            "export.csv", self.admin_site.admin_view(self.export_csv), name="verification_auditentry_export"
        )
        verify = path("verify/", self.admin_site.admin_view(self.verify_chain), name="verification_auditentry_verify")
        return [export, verify, *super().get_urls()]

    def verify_chain(self, request: HttpRequest) -> HttpResponse:
        """Walk the hash chain (as ``manage.py verify_audit_log``) and report on the audit list."""
        if request.method != "POST":
            return redirect("admin:verification_auditentry_changelist")
        if not self.has_verify_permission(request):
            raise PermissionDenied
        check = services.audit_chain_check(source=f"admin:{request.user.get_username()}")
        if check.ok:
            messages.success(request, f"Audit chain intact: {check.checked} entries verified.")
        else:
            messages.error(
                request,
                f"Audit chain BROKEN at entry {check.broken_seq}: {check.problem} ({check.checked} entries verified before it).",
            )
        return redirect("admin:verification_auditentry_changelist")

    def export_csv(self, request: HttpRequest) -> HttpResponse:
        """The changelist's current filters and search, as CSV (streamed)."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        queryset = self.get_changelist_instance(request).get_queryset(request)
        writer = csv.writer(_Echo())

        def rows():
            yield writer.writerow(CSV_COLUMNS)
            for entry in queryset.order_by("seq").iterator(chunk_size=1000):
                yield writer.writerow(csv_row(entry))

        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response = StreamingHttpResponse(rows(), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
        return response
