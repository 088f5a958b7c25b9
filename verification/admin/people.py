"""People and their reference photos (enrolment)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse

from verification import roles, selectors, services
from verification.admin.access_inlines import PersonAccessInline
from verification.admin.common import (
    may_view_reference_photos,
    thumbnail,
)
from verification.errors import InvalidImage
from verification.images import validate_image
from verification.models import (
    Person,
    ReferenceImage,
)


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


class ReferenceImageInline(admin.TabularInline):
    model = ReferenceImage
    form = ReferenceImageForm
    extra = 1
    fields = ["image", "photo", "face", "status", "reason", "embedding_model", "created_at"]
    # An uploaded photo is never replaced in place: delete it and upload another.
    readonly_fields = ["photo", "face", "status", "reason", "embedding_model", "created_at"]

    def get_fields(self, request: HttpRequest, obj: Person | None = None) -> list[str]:
        fields = super().get_fields(request, obj)
        if may_view_reference_photos(request):
            return fields
        # No thumbnail, no aligned face, no link to the stored file (its widget would show one).
        return [name for name in fields if name not in ("image", "photo", "face")]

    def has_add_permission(self, request: HttpRequest, obj: Person | None = None) -> bool:
        # Uploading a reference photo needs the right to see one: the inline's image column is hidden otherwise.
        return super().has_add_permission(request, obj) and may_view_reference_photos(request)

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
    inlines = [ReferenceImageInline, PersonAccessInline]  # access groups and rights (issue 11, item 1)
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
