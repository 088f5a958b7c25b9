"""Django admin: enrolment (people + inline reference photos), devices, check-ins, the audit log.

Admin classes hold no rules: every write goes through ``services``. The audit log is read-only for
everyone, superusers included. Who may do what comes from ``verification.roles``: every action names
the permission it needs, and biometric images (thumbnails, links) are shown only to users who may view
that kind of image (issue 9, item 2).
"""
from __future__ import annotations

import csv

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from verification import roles, selectors, services
from verification.audit import csv_row
from verification.audit import CSV_COLUMNS as AUDIT_CSV_COLUMNS
from verification.errors import DomainError, InvalidImage
from verification.images import validate_image
from verification.models import AuditEntry, CheckIn, Device, Lockout, Person, ReferenceImage, SiteCalibration

THUMB_PX = 96


def thumbnail(file, *, size: int = THUMB_PX, alt: str = "") -> str:  # noqa: ANN001 - FieldFile or None
    """An <img> of a stored image through the staff-only media view, or a dash.

    Callers show it only to users who may view that kind of image (``roles.may_view_image``).
    """
    if not file:
        return "-"
    url = reverse("media", kwargs={"path": file.name})
    return format_html(
        '<a href="{}" target="_blank"><img src="{}" alt="{}" style="max-width:{}px;max-height:{}px"></a>',
        url, url, alt, size, size,
    )


# --- Enrolment -------------------------------------------------------------------------------


class ReferenceImageForm(forms.ModelForm):
    # A plain file field so our checks (size, pixel limit before decode, truncation) give the message.
    image = forms.FileField(label="Photo", help_text="JPEG or PNG with exactly one face.")

    class Meta:
        model = ReferenceImage
        fields = ["image"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # A stored photo is never replaced in place (its embedding would go stale).
            self.fields["image"].disabled = True
            self.fields["image"].required = False

    def clean_image(self):  # noqa: ANN201 - Django form hook
        image = self.cleaned_data.get("image")
        if image and not self.instance.pk:
            try:
                validate_image(image, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.IMAGE_MAX_PIXELS)
            except InvalidImage as exc:
                raise ValidationError(exc.message, code=exc.code) from exc
        return image


def _may_view_reference_photos(request: HttpRequest) -> bool:
    return request.user.has_perm(roles.perm(roles.VIEW_REFERENCE_PHOTOS))


def _may_view_snapshots(request: HttpRequest) -> bool:
    return request.user.has_perm(roles.perm(roles.VIEW_SNAPSHOTS))


class ReferenceImageInline(admin.TabularInline):
    model = ReferenceImage
    form = ReferenceImageForm
    extra = 1
    fields = ["image", "photo", "face", "status", "reason", "embedding_model", "created_at"]
    # An uploaded photo is never replaced in place: delete it and upload another.
    readonly_fields = ["photo", "face", "status", "reason", "embedding_model", "created_at"]

    def get_fields(self, request: HttpRequest, obj: Person | None = None) -> list[str]:
        fields = super().get_fields(request, obj)
        if _may_view_reference_photos(request):
            return fields
        # No thumbnail, no aligned face, no link to the stored file (its widget would show one).
        return [name for name in fields if name not in ("image", "photo", "face")]

    def has_add_permission(self, request: HttpRequest, obj: Person | None = None) -> bool:
        # Uploading a reference photo needs the right to see one: the inline's image column is hidden otherwise.
        return super().has_add_permission(request, obj) and _may_view_reference_photos(request)

    @admin.display(description="Embedding model")
    def embedding_model(self, obj: ReferenceImage) -> str:
        if not obj.pk or obj.status != ReferenceImage.Status.READY:
            return obj.model_version or "-"
        # Inline instances are made per request: the current version is looked up once per page.
        if not hasattr(self, "_current_version"):
            self._current_version = selectors.references_latest_model_version()
        if obj.model_version == self._current_version:
            return obj.model_version
        return f"{obj.model_version or '?'} (stale: re-embedding by {self._current_version} pending)"

    @admin.display(description="Photo")
    def photo(self, obj: ReferenceImage) -> str:
        return thumbnail(obj.image if obj.pk else None, alt="reference photo")

    @admin.display(description="Aligned face")
    def face(self, obj: ReferenceImage) -> str:
        return thumbnail(obj.face_crop if obj.pk else None, size=64, alt="aligned face")


class EmbeddingModelFilter(admin.SimpleListFilter):
    """People whose ready references are not all embedded by the current model (re-embedding pending)."""

    title = "embeddings"
    parameter_name = "embeddings"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):  # noqa: ANN201
        return [("stale", "some on an older model"), ("current", "all on the current model")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Person]) -> QuerySet[Person]:
        if self.value() not in ("stale", "current"):
            return queryset
        stale_people = selectors.references_stale(
            model_version=selectors.references_latest_model_version()
        ).values("person_id")
        if self.value() == "stale":
            return queryset.filter(pk__in=stale_people)
        return queryset.exclude(pk__in=stale_people)


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    list_display = [
        "name", "external_id", "is_active", "valid_from", "valid_until", "ready_refs", "current_refs", "pending_refs",
        "rejected_refs", "enough_refs",
    ]
    list_filter = ["is_active", EmbeddingModelFilter]
    search_fields = ["name", "external_id"]
    fields = ["name", "external_id", "is_active", "valid_from", "valid_until"]
    inlines = [ReferenceImageInline]
    actions = ["erase_people", "accept_inconsistent_references"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Person]:
        current = selectors.references_latest_model_version()
        return super().get_queryset(request).annotate(
            n_ready=Count("references", filter=Q(references__status=ReferenceImage.Status.READY)),
            n_current=Count(
                "references",
                filter=Q(references__status=ReferenceImage.Status.READY, references__model_version=current),
            ),
            n_pending=Count("references", filter=Q(references__status=ReferenceImage.Status.PENDING)),
            n_rejected=Count("references", filter=Q(references__status=ReferenceImage.Status.REJECTED)),
        )

    @admin.display(description="Ready", ordering="n_ready")
    def ready_refs(self, obj: Person) -> int:
        return obj.n_ready

    @admin.display(description="On current model", ordering="n_current")
    def current_refs(self, obj: Person) -> str:
        return f"{obj.n_current} of {obj.n_ready}"

    @admin.display(description="Pending", ordering="n_pending")
    def pending_refs(self, obj: Person) -> int:
        return obj.n_pending

    @admin.display(description="Rejected", ordering="n_rejected")
    def rejected_refs(self, obj: Person) -> int:
        return obj.n_rejected

    @admin.display(description="Can check in", boolean=True, ordering="n_ready")
    def enough_refs(self, obj: Person) -> bool:
        """Enough ready photos for a check-in to be scored (ENROLMENT_MIN_REFERENCES); else no_references."""
        return obj.n_ready >= settings.ENROLMENT_MIN_REFERENCES

    @admin.action(
        description="Accept the selected people's photos refused as not matching their other photos (audited)",
        permissions=["accept_reference"],
    )
    def accept_inconsistent_references(self, request: HttpRequest, queryset: QuerySet[Person]) -> None:
        refused = ReferenceImage.objects.filter(
            person__in=queryset, status=ReferenceImage.Status.REJECTED,
            reason=ReferenceImage.Reason.INCONSISTENT_REFERENCE,
        )
        accepted = sum(
            services.reference_accept(reference=reference, operator=request.user.get_username()) for reference in refused
        )
        messages.success(request, f"Accepted {accepted} reference photo(s); each acceptance is in the audit log.")

    def has_accept_reference_permission(self, request: HttpRequest) -> bool:
        # Whoever may change reference photos (the operator role) may vouch for one.
        return request.user.has_perm(f"{roles.APP_LABEL}.change_referenceimage")

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        version = selectors.references_latest_model_version()
        current, total = selectors.references_progress(model_version=version)
        if current < total:
            messages.info(
                request,
                f"Re-embedding after a model change: {current} of {total} ready references on the current "
                f"model {version}. Check-ins re-embed a person's stale references before deciding.",
            )
        return super().changelist_view(request, extra_context)

    def save_model(self, request: HttpRequest, obj: Person, form, change: bool) -> None:  # noqa: ANN001
        services.person_save(person=obj, operator=request.user.get_username())

    def delete_model(self, request: HttpRequest, obj: Person) -> None:
        services.person_delete(person=obj, operator=request.user.get_username())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Person]) -> None:
        for person in queryset:
            services.person_delete(person=person, operator=request.user.get_username())

    @admin.action(
        description="Erase the selected people (photos, embeddings, snapshots; audit pseudonymised)",
        permissions=["erase"],
    )
    def erase_people(self, request: HttpRequest, queryset: QuerySet[Person]) -> None:
        receipts = [services.person_erase(person=person, operator=request.user.get_username()) for person in queryset]
        messages.success(
            request,
            f"Erased {len(receipts)} person(s); receipts are audit entries {[receipt.seq for receipt in receipts]}.",
        )

    def has_erase_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(roles.perm(roles.ERASE_PEOPLE))

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:  # noqa: ANN001
        if formset.model is not ReferenceImage:
            return super().save_formset(request, form, formset, change)
        # The admin's change message reads these lists, which formset.save() would have filled.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.forms:
            if not inline_form.has_changed() or inline_form in formset.deleted_forms:
                continue
            if inline_form.instance.pk is None and inline_form.cleaned_data.get("image"):
                reference = services.reference_add(
                    person=form.instance, image_file=inline_form.cleaned_data["image"], operator=request.user.get_username()
                )
                formset.new_objects.append(reference)
        for inline_form in formset.deleted_forms:
            if inline_form.instance.pk is not None:
                formset.deleted_objects.append(inline_form.instance)
                services.reference_delete(reference=inline_form.instance, operator=request.user.get_username())
        if formset.new_objects:
            new_ids = [reference.pk for reference in formset.new_objects]
            # Runs after the embedding tasks were queued (callbacks run in order): when tasks run
            # in-process the face check is already done and its verdict can be shown right away.
            transaction.on_commit(lambda: self._report_face_checks(request, new_ids))

    def _report_face_checks(self, request: HttpRequest, reference_ids: list[int]) -> None:
        references = ReferenceImage.objects.filter(pk__in=reference_ids).order_by("pk")
        pending = 0
        for number, reference in enumerate(references, start=1):
            if reference.status == ReferenceImage.Status.REJECTED:
                messages.error(request, f"New photo {number} was rejected: {reference.get_reason_display()}.")
            elif reference.status == ReferenceImage.Status.READY:
                messages.success(request, f"New photo {number} is enrolled (one face found and embedded).")
            else:
                pending += 1
        if pending:
            messages.info(
                request,
                f"{pending} photo(s) queued for the face check; reload to see the state "
                "(pending / ready / rejected and why).",
            )


# --- Devices ---------------------------------------------------------------------------------


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["name", "token_prefix", "signs_requests", "created_at", "last_seen_at", "revoked_at"]
    search_fields = ["name"]
    fields = ["name", "token_prefix", "signs_requests", "created_at", "revoked_at"]
    readonly_fields = ["token_prefix", "signs_requests", "created_at", "revoked_at"]
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


# --- Check-ins (read-only) -------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False


@admin.register(CheckIn)
class CheckInAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "device", "claimed_external_id", "status", "decision", "reason", "score", "attempts"]
    list_filter = ["status", "decision", "reason", "device"]
    search_fields = ["claimed_external_id"]
    list_select_related = ["device"]
    date_hierarchy = "created_at"

    def get_fields(self, request: HttpRequest, obj: CheckIn | None = None) -> list[str]:
        fields = super().get_fields(request, obj)
        # The snapshot's link leads to a biometric image: shown only with the permission to view snapshots.
        return fields if _may_view_snapshots(request) else [name for name in fields if name != "snapshot"]


# --- Lockouts (attempt limiting): read-only, ended early by the unlock action ------------------


# Operators see every lockout in force on the admin's front page (issue 9, item 5).
admin.site.index_template = "admin/verification/index.html"


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


@admin.register(SiteCalibration)
class SiteCalibrationAdmin(ReadOnlyAdmin):
    """Thresholds a site measured on its own people (``manage.py calibrate --apply``); newest per version wins."""

    list_display = ["created_at", "model_version", "target_far", "thresholds", "people", "references", "created_by"]
    list_filter = ["model_version"]
    readonly_fields = ["model_version", "target_far", "thresholds", "figures", "people", "references", "created_by",
                       "created_at"]


# --- Audit log (read-only for everyone) ------------------------------------------------------


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
        }.get((_may_view_snapshots(request), _may_view_reference_photos(request)))
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

