"""The audit log: read-only for everyone, filters and CSV export."""

from __future__ import annotations

import csv
import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from verification import roles, selectors, services
from verification.admin.common import (
    ADMIN_CSS,
    ReadOnlyAdmin,
    may_view_reference_photos,
    may_view_snapshots,
    thumbnail,
    when,
)
from verification.audit import CSV_COLUMNS as AUDIT_CSV_COLUMNS
from verification.audit import csv_row
from verification.formatting import score_text
from verification.models import (
    AuditEntry,
    CheckIn,
    ReferenceImage,
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


# The decision score in words, per the model's rule (``ml.operating_point``); entries before the rule was
# recorded were all made with the mean.
DECISION_RULE_WORDS = {
    "mean": "the mean of these",
    "template": "the snapshot's score against the mean of these references' embeddings (the person's template)",
}

# What an entry's ``detail`` keys mean, in words; a key not listed reads as its name with spaces.
DETAIL_LABELS = {
    "timings": "Timings",
    "best_reference_id": "Best-matching reference",
    "reference_scores": "Score of each reference",
    "decision_rule": "Decision rule",
    "threshold_source": "Threshold from",
    "superseded": "Overruled by a lockout (what the face said)",
    "operator": "Operator",
    "person_id": "Person id",
    "reference_id": "Reference photo id",
    "fields": "Values",
    "changes": "Changes",
    "source": "Source",
    "token_prefix": "Token prefix",
    "revoked_at": "Revoked at",
    "locked_until": "Locked until",
    "error": "Error",
    "attempts": "Attempts",
}
TIMING_LABELS = {
    "queue_ms": "queue", "decode_ms": "decode", "detect_ms": "detect", "embed_ms": "embed", "score_ms": "score",
    "reembed_ms": "re-embed", "process_ms": "processing", "total_ms": "total",
}

READ_ONLY_WHY = (
    "The audit log is append-only and hash-chained: each entry's hash covers its own content and the hash of "
    "the entry before it, so changing, adding or removing any entry breaks the chain from that point on, and "
    "“Verify the chain” (or manage.py verify_audit_log) reports it. That is what lets an auditor trust that "
    "the log says what happened. Nobody may edit it, superusers included; the database refuses it too."
)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    change_list_template = "admin/verification/auditentry/change_list.html"
    change_form_template = "admin/verification/auditentry/change_form.html"
    # The columns that matter, narrow enough for a 1400 px screen without scrolling sideways; the rest
    # (model, timings, hashes) is on the entry's page.
    list_display = [
        "seq", "time", "event", "device_name", "person", "decision_badge", "score_threshold", "reason_text",
    ]
    list_display_links = ["seq", "time"]
    list_filter = [DecisionFilter, "kind", DeviceFilter, PersonFilter, ReasonFilter, ("created_at", admin.DateFieldListFilter)]
    search_fields = ["person_name", "person_external_id", "actor", "device_name"]
    date_hierarchy = "created_at"
    list_per_page = 50
    fieldsets = [
        ("Event", {"fields": ["seq", "time", "kind", "actor", "checkin"]}),
        ("Decision", {"fields": ["decision_badge", "score_display", "threshold_display", "reason_text",
                                 "model_version", "processing"]}),
        ("Who and where", {"fields": ["device_name", "device_ref", "person_external_id", "person_name",
                                      "person_erased_at"]}),
        ("Faces and scores", {"fields": ["images", "reference_scores"]}),
        ("Detail", {"fields": ["detail_readable"]}),
        ("Chain", {"fields": ["hash_scheme", "prev_hash", "entry_hash"], "classes": ["collapse"]}),
    ]

    class Media:
        css = {"all": [ADMIN_CSS]}

    def get_fieldsets(self, request: HttpRequest, obj: AuditEntry | None = None):  # noqa: ANN201
        # Biometric images only for those who may view them: both, the snapshot alone, the reference alone, none.
        images = {
            (True, True): "images", (True, False): "images_snapshot", (False, True): "images_reference",
        }.get((may_view_snapshots(request), may_view_reference_photos(request)))
        # The scores are numbers for everyone; the references' aligned faces only with the right to see them.
        scores = "reference_scores_with_faces" if may_view_reference_photos(request) else "reference_scores"
        chosen = {"images": images, "reference_scores": scores}
        fieldsets = []
        for name, options in self.fieldsets:
            fields = [chosen.get(field, field) for field in options["fields"]]
            fieldsets.append((name, {**options, "fields": [field for field in fields if field]}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: AuditEntry | None = None) -> list[str]:
        return [field for _, options in self.get_fieldsets(request, obj) for field in options["fields"]]

    # --- Columns ---

    @admin.display(description="When", ordering="created_at")
    def time(self, obj: AuditEntry) -> str:
        return when(obj.created_at, stacked=True)

    @admin.display(description="Event", ordering="kind")
    def event(self, obj: AuditEntry) -> str:
        return format_html('{}<span class="va-sub">by {}</span>', obj.get_kind_display(), obj.actor or "-")

    @admin.display(description="Person", ordering="person_external_id")
    def person(self, obj: AuditEntry) -> str:
        if not obj.person_external_id and not obj.person_name:
            return "-"
        return format_html('{}<span class="va-sub">{}</span>', obj.person_name or "-", obj.person_external_id)

    @admin.display(description="Decision", ordering="decision")
    def decision_badge(self, obj: AuditEntry) -> str:
        if obj.decision is None:
            return "-"
        colour, label = ("#1b7f3b", "1 admitted") if obj.decision == 1 else ("#b3261e", "0 refused")
        return format_html(
            '<span style="color:#fff;background:{};padding:2px 8px;border-radius:8px;font-weight:bold;'
            'white-space:nowrap">{}</span>',
            colour, label,
        )

    @admin.display(description="Score / threshold", ordering="score")
    def score_threshold(self, obj: AuditEntry) -> str:
        if obj.score is None and obj.threshold is None:
            return "-"
        return f"{score_text(obj.score)} / {score_text(obj.threshold)}"

    @admin.display(description="Score", ordering="score")
    def score_display(self, obj: AuditEntry) -> str:
        return score_text(obj.score)

    @admin.display(description="Threshold")
    def threshold_display(self, obj: AuditEntry) -> str:
        return score_text(obj.threshold)

    @admin.display(description="Reason", ordering="reason")
    def reason_text(self, obj: AuditEntry) -> str:
        if not obj.reason:
            return "-"
        label = dict(CheckIn.Reason.choices).get(obj.reason) or dict(ReferenceImage.Reason.choices).get(obj.reason)
        if not label or label == obj.reason:
            return obj.reason
        return format_html('{}<span class="va-sub">{}</span>', label, obj.reason)

    @admin.display(description="Processing")
    def processing(self, obj: AuditEntry) -> str:
        return "-" if obj.processing_ms is None else f"{obj.processing_ms:.0f} ms from receipt to decision"

    # --- The entry's page ---

    @admin.display(description="Detail")
    def detail_readable(self, obj: AuditEntry) -> str:
        """``detail`` as a table in words, with the exact JSON (as hashed) one click away."""
        raw = json.dumps(obj.detail, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        if not obj.detail:
            return "-"
        return format_html(
            '{}<details><summary>Exact detail as hashed (JSON)</summary><pre>{}</pre></details>',
            _readable(obj.detail), raw,
        )

    @admin.display(description="Score of each reference")
    def reference_scores(self, obj: AuditEntry) -> str:
        return self._reference_scores(obj, faces=False)

    @admin.display(description="Score of each reference")
    def reference_scores_with_faces(self, obj: AuditEntry) -> str:
        return self._reference_scores(obj, faces=True)

    def _reference_scores(self, obj: AuditEntry, *, faces: bool) -> str:
        """Every reference photo's score in this decision (recorded since issue 11, item 2), best first."""
        if obj.kind != AuditEntry.Kind.DECISION or obj.score is None:
            return "-"
        scores = selectors.decision_reference_scores(detail=obj.detail or {})
        if not scores:
            return format_html(
                "Only the decision score ({}) was recorded for this decision: per-reference scores are kept "
                "for decisions made since this version.", score_text(obj.score),
            )
        rows = format_html_join(
            "",
            '<tr class="{}"><td>{}</td><td>{}</td><td class="num">{}</td><td>{}</td></tr>',
            (
                (
                    "best" if item.best else "",
                    f"#{item.reference_id}",
                    thumbnail(item.reference.face_crop, size=64, alt="aligned reference face")
                    if faces and item.reference is not None else ("(deleted since)" if item.reference is None else ""),
                    score_text(item.score),
                    "best match" if item.best else "",
                )
                for item in scores
            ),
        )
        return format_html(
            '<table class="va-scores"><thead><tr><th>Reference</th><th>Aligned face</th><th>Score</th><th></th></tr>'
            '</thead><tbody>{}</tbody></table><p class="help">The decision compares {} ({}) '
            "with the threshold ({}).</p>",
            rows, DECISION_RULE_WORDS.get((obj.detail or {}).get("decision_rule") or "mean", "the decision score"),
            score_text(obj.score), score_text(obj.threshold),
        )

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
        if obj.checkin_id is None:
            return "-"
        checkin = CheckIn.objects.filter(pk=obj.checkin_id).select_related("best_reference").first()
        if checkin is None:
            return "(check-in deleted)"
        cells = []
        if snapshot and checkin.snapshot_purged_at is not None:
            cells.append(("Snapshot", f"removed {checkin.snapshot_purged_at:%Y-%m-%d} (retention or erasure)"))
        elif snapshot:
            cells.append(("Snapshot", thumbnail(checkin.snapshot, size=240, alt="snapshot")))
            if checkin.probe_face:
                cells.append(("Aligned face in the snapshot", thumbnail(checkin.probe_face, size=120, alt="snapshot face")))
        if reference and checkin.best_reference is not None:
            cells.append(("Best reference", thumbnail(checkin.best_reference.image, size=240, alt="reference")))
            cells.append(("Aligned reference face", thumbnail(checkin.best_reference.face_crop, size=120, alt="face")))
        if not cells:
            return "-"
        return format_html(
            '<div class="va-figures">{}</div>',
            format_html_join("", "<figure>{}<figcaption>{}</figcaption></figure>",
                             ((image, label) for label, image in cells)),
        )

    # --- Why nothing here can be edited ---

    def read_only_page(self, request: HttpRequest, entry: AuditEntry | None = None) -> HttpResponse:
        """What an attempt to add, change or delete an entry gets: 403 with the reason, not a bare "Forbidden"."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Audit entries cannot be changed",
            "entry": entry,
            "why": READ_ONLY_WHY,
        }
        return TemplateResponse(request, "admin/verification/auditentry/read_only.html", context, status=403)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        return self.read_only_page(request)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return self.read_only_page(request, self.get_object(request, object_id))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None):  # noqa: ANN201
        if request.method == "POST" and self.has_view_permission(request):
            return self.read_only_page(request, self.get_object(request, object_id))
        extra_context = {**(extra_context or {}), "read_only_why": READ_ONLY_WHY}
        return super().change_view(request, object_id, form_url, extra_context)

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


def _readable(value: Any, key: str = "") -> str:
    """A ``detail`` value as HTML in words: dicts as tables, timings in ms, scores to 3 decimals."""
    if key == "timings" and isinstance(value, dict):
        parts = [f"{TIMING_LABELS.get(name, name)} {ms:.1f} ms" for name, ms in value.items() if isinstance(ms, (int, float))]
        return " · ".join(parts) or "-"
    if key == "reference_scores" and isinstance(value, list):
        parts = [f"#{item.get('reference_id')}: {score_text(item.get('score'))}" for item in value if isinstance(item, dict)]
        return ", ".join(parts) or "-"
    if isinstance(value, dict):
        if not value:
            return "-"
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td></tr>",
            ((DETAIL_LABELS.get(name, name.replace("_", " ").capitalize()), _readable(item, name))
             for name, item in value.items()),
        )
        return format_html('<table class="va-detail">{}</table>', rows)
    if isinstance(value, list):
        if all(not isinstance(item, (dict, list)) for item in value):
            return ", ".join(str(item) for item in value) or "-"
        return format_html_join("", "<div>{}</div>", ((_readable(item),) for item in value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return score_text(value) if abs(value) < 10 else f"{value:.1f}"
    if value is None or value == "":
        return "-"
    return str(value)
