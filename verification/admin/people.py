"""People and their reference photos (enrolment).

The person page shows, besides the form: whether the person may enter now and why ("valid now"), a
lockout of their badge ID in force, their recent check-ins (with ``view_checkin``) and their photos,
whose face check updates in place while the worker runs (``static/verification/admin/face_check.js``
polls ``photos/status/``). Several photos can be chosen at once; each is checked on its own, so one bad
file does not drop the others, and each refusal names its file (issue 11, item 2).
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from verification import roles, selectors, services
from verification.admin.access_inlines import PersonAccessInline
from verification.admin.common import (
    ADMIN_CSS,
    badge,
    may_view_reference_photos,
    thumbnail,
    when,
)
from verification.admin.people_import import PeopleImportViews
from verification.errors import InvalidImage
from verification.formatting import duration_text, local_timestamp, score_text
from verification.images import validate_image
from verification.models import (
    CheckIn,
    Lockout,
    Person,
    ReferenceImage,
)
from verification.services.enrolment import references_add

RECENT_CHECKINS = 10
FACE_CHECK_BADGES = {
    ReferenceImage.Status.PENDING: "va-badge va-badge-quiet face-check-pending",
    ReferenceImage.Status.READY: "va-badge va-badge-good face-check-ready",
    ReferenceImage.Status.REJECTED: "va-badge va-badge-bad face-check-rejected",
}


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
                # The error names its file: with several photos chosen, which one is meant must be plain.
                raise ValidationError(f"“{image.name}”: {exc.message}", code=exc.code) from exc
        return image


class ReferenceImageInline(admin.TabularInline):
    model = ReferenceImage
    form = ReferenceImageForm
    # New photos come through the person form's "Add photos" (several at once); a row here still takes one.
    extra = 0
    fields = ["image", "photo", "face", "face_check", "reason_text", "embedding_model", "created_at"]
    # An uploaded photo is never replaced in place: delete it and upload another.
    readonly_fields = ["photo", "face", "face_check", "reason_text", "embedding_model", "created_at"]

    def get_fields(self, request: HttpRequest, obj: Person | None = None) -> list[str]:
        fields = super().get_fields(request, obj)
        if may_view_reference_photos(request):
            return fields
        # No thumbnail, no aligned face, no link to the stored file (its widget would show one).
        return [name for name in fields if name not in ("image", "photo", "face")]

    def has_add_permission(self, request: HttpRequest, obj: Person | None = None) -> bool:
        # Uploading a reference photo needs the right to see one: the inline's image column is hidden otherwise.
        return super().has_add_permission(request, obj) and may_view_reference_photos(request)

    @admin.display(description="Face check")
    def face_check(self, obj: ReferenceImage) -> str:
        """The photo's state as a badge the page's script updates while the worker runs."""
        if not obj.pk:
            return "-"
        return format_html(
            '<span class="{} face-check" data-reference-id="{}" data-status="{}">{}</span>',
            FACE_CHECK_BADGES.get(obj.status, "va-badge"), obj.pk, obj.status, obj.get_status_display(),
        )

    @admin.display(description="Why")
    def reason_text(self, obj: ReferenceImage) -> str:
        if not obj.pk or not obj.reason:
            return "-"
        if obj.reason == ReferenceImage.Reason.INCONSISTENT_REFERENCE:
            return format_html(
                "{}<span class='va-sub'>If it is the same person, accept it with the people list's action.</span>",
                obj.get_reason_display(),
            )
        return obj.get_reason_display()

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


# --- Choosing several photos at once ----------------------------------------------------------------


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Any number of files; each is checked later on its own (``references_add``), never all-or-nothing."""

    widget = MultipleFileInput

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self.widget.attrs.setdefault("accept", "image/jpeg,image/png")

    def clean(self, data, initial=None):  # noqa: ANN001, ANN201 - Django field hook
        files = data if isinstance(data, (list, tuple)) else [data] if data else []
        return [file for file in files if file]


class PersonForm(forms.ModelForm):
    photos = MultipleFileField(
        label="Add photos",
        help_text="Choose one or more JPEG or PNG photos, each with exactly one face. Each is checked on its own: "
        "a file that cannot be used is named in a message and the others are still added.",
    )

    class Meta:
        model = Person
        fields = ["name", "external_id", "is_active", "valid_from", "valid_until"]


# --- List filters ---------------------------------------------------------------------------------


class ValidNowFilter(admin.SimpleListFilter):
    """Active and inside the validity dates now (what the check-in asks before any face work)."""

    title = "valid now"
    parameter_name = "valid_now"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):  # noqa: ANN201
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Person]) -> QuerySet[Person]:
        if self.value() == "yes":
            return selectors.people_valid_now(queryset)
        if self.value() == "no":
            return selectors.people_not_valid_now(queryset)
        return queryset


class PhotosFilter(admin.SimpleListFilter):
    title = "photos"
    parameter_name = "photos"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):  # noqa: ANN201
        return [
            ("ready", "Has ready photos"),
            ("none_ready", "No ready photo"),
            ("pending", "Photos in the face check"),
            ("rejected", "Rejected photos"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Person]) -> QuerySet[Person]:
        statuses = {"ready": ReferenceImage.Status.READY, "none_ready": ReferenceImage.Status.READY,
                    "pending": ReferenceImage.Status.PENDING, "rejected": ReferenceImage.Status.REJECTED}
        if self.value() not in statuses:
            return queryset
        having = ReferenceImage.objects.filter(status=statuses[self.value()]).values("person_id")
        if self.value() == "none_ready":
            return queryset.exclude(pk__in=having)
        return queryset.filter(pk__in=having)


class LockoutFilter(admin.SimpleListFilter):
    """People whose badge ID is locked out now (too many refusals)."""

    title = "in lockout"
    parameter_name = "lockout"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):  # noqa: ANN201
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Person]) -> QuerySet[Person]:
        locked = selectors.lockout_keys_in_force(scope=Lockout.Scope.PERSON)
        if self.value() == "yes":
            return queryset.filter(external_id__in=locked)
        if self.value() == "no":
            return queryset.exclude(external_id__in=locked)
        return queryset


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


# --- People ---------------------------------------------------------------------------------------


@admin.register(Person)
class PersonAdmin(PeopleImportViews, admin.ModelAdmin):
    form = PersonForm
    change_form_template = "admin/verification/person/change_form.html"
    change_list_template = "admin/verification/person/change_list.html"
    list_display = [
        "name", "external_id", "valid_now", "validity", "ready_refs", "current_refs", "pending_refs",
        "rejected_refs", "enough_refs", "locked_until",
    ]
    list_filter = [ValidNowFilter, PhotosFilter, LockoutFilter, "is_active", EmbeddingModelFilter]
    search_fields = ["name", "external_id"]
    fields = ["name", "external_id", "is_active", "valid_from", "valid_until"]
    readonly_fields = ["valid_now_text", "lockout_state", "recent_checkins"]
    inlines = [ReferenceImageInline, PersonAccessInline]  # access groups and rights (issue 11, item 1)
    actions = ["erase_people", "accept_inconsistent_references"]

    class Media:
        css = {"all": [ADMIN_CSS]}
        js = ["verification/admin/face_check.js"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Person]:
        current = selectors.references_latest_model_version()
        return selectors.people_with_lockout_until(super().get_queryset(request)).annotate(
            n_ready=Count("references", filter=Q(references__status=ReferenceImage.Status.READY)),
            n_current=Count(
                "references",
                filter=Q(references__status=ReferenceImage.Status.READY, references__model_version=current),
            ),
            n_pending=Count("references", filter=Q(references__status=ReferenceImage.Status.PENDING)),
            n_rejected=Count("references", filter=Q(references__status=ReferenceImage.Status.REJECTED)),
        )

    def get_fieldsets(self, request: HttpRequest, obj: Person | None = None):  # noqa: ANN201
        fieldsets = [(None, {"fields": self.fields})]
        if obj is not None:
            now = ["valid_now_text", "lockout_state"]
            if request.user.has_perm(f"{roles.APP_LABEL}.view_checkin"):
                now.append("recent_checkins")
            fieldsets.append(("Now", {"fields": now}))
        if self._may_add_photos(request, obj):
            fieldsets.append(("Photos", {"fields": ["photos"]}))
        return fieldsets

    def _may_add_photos(self, request: HttpRequest, obj: Person | None) -> bool:
        may_edit = self.has_add_permission(request) if obj is None else self.has_change_permission(request, obj)
        return (
            may_edit
            and request.user.has_perm(f"{roles.APP_LABEL}.add_referenceimage")
            and may_view_reference_photos(request)
        )

    # --- List columns ---

    @admin.display(description="Valid now", boolean=True)
    def valid_now(self, obj: Person) -> bool:
        return selectors.person_is_admitted(person=obj)

    @admin.display(description="Validity", ordering="valid_until")
    def validity(self, obj: Person) -> str:
        if not obj.is_active:
            return "inactive"
        if obj.valid_from is None and obj.valid_until is None:
            return "no dates"
        start = local_timestamp(obj.valid_from) if obj.valid_from else "…"
        end = local_timestamp(obj.valid_until) if obj.valid_until else "…"
        return f"{start} to {end}"

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
    def rejected_refs(self, obj: Person) -> str:
        return badge(str(obj.n_rejected), "bad") if obj.n_rejected else "0"

    @admin.display(description="Can check in", boolean=True, ordering="n_ready")
    def enough_refs(self, obj: Person) -> bool:
        """Enough ready photos for a check-in to be scored (ENROLMENT_MIN_REFERENCES); else no_references."""
        return obj.n_ready >= settings.ENROLMENT_MIN_REFERENCES

    @admin.display(description="Locked out until", ordering="lockout_until")
    def locked_until(self, obj: Person) -> str:
        return when(obj.lockout_until) if obj.lockout_until else "-"

    # --- The person page's "Now" ---

    @admin.display(description="Valid now")
    def valid_now_text(self, obj: Person) -> str:
        valid, why = selectors.person_validity_text(person=obj)
        return format_html("{} {}", badge("Valid now" if valid else "Not valid now", "good" if valid else "bad"), why)

    @admin.display(description="Lockout")
    def lockout_state(self, obj: Person) -> str:
        lockout = selectors.person_lockout_in_force(person=obj)
        if lockout is None:
            return "Not locked out."
        remaining = (lockout.locked_until - timezone.now()).total_seconds()
        return format_html(
            '{} until {} (in {}; level {}, {} refusals). <a href="{}">Open the lockout</a> to unlock it early.',
            badge("Locked out", "bad"), local_timestamp(lockout.locked_until), duration_text(remaining),
            lockout.level, lockout.failures, reverse("admin:verification_lockout_change", args=[lockout.pk]),
        )

    @admin.display(description="Recent check-ins")
    def recent_checkins(self, obj: Person) -> str:
        checkins = selectors.person_recent_checkins(person=obj, limit=RECENT_CHECKINS)
        if not checkins:
            return "None yet."
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td></tr>',
            (
                (reverse("admin:verification_checkin_change", args=[checkin.pk]), checkin.pk, when(checkin.created_at),
                 checkin.device.name, _checkin_outcome(checkin),
                 score_text(checkin.score))
                for checkin in checkins
            ),
        )
        more = reverse("admin:verification_checkin_changelist") + f"?q={obj.external_id}"
        return format_html(
            '<table class="va-table"><thead><tr><th>Check-in</th><th>Received</th><th>Device</th><th>Outcome</th>'
            '<th>Score</th></tr></thead><tbody>{}</tbody></table><a href="{}">All check-ins of {}</a>',
            rows, more, obj.external_id,
        )

    # --- Actions ---

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
        extra_context = {**(extra_context or {}), "has_import_permission": self.has_import_permission(request)}
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

    # --- Photos: the inline's rows and the "Add photos" picker ---

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:  # noqa: ANN001
        if formset.model is not ReferenceImage:
            return super().save_formset(request, form, formset, change)
        # The admin's change message reads these lists, which formset.save() would have filled.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.forms:
            if not inline_form.has_changed() or inline_form in formset.deleted_forms:
                continue
            if inline_form.instance.pk is None and inline_form.cleaned_data.get("image"):
                image = inline_form.cleaned_data["image"]
                reference = services.reference_add(
                    person=form.instance, image_file=image, operator=request.user.get_username()
                )
                formset.new_objects.append(reference)
                self._new_photos(request)[reference.pk] = image.name
        for inline_form in formset.deleted_forms:
            if inline_form.instance.pk is not None:
                formset.deleted_objects.append(inline_form.instance)
                services.reference_delete(reference=inline_form.instance, operator=request.user.get_username())

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:  # noqa: ANN001
        super().save_related(request, form, formsets, change)
        chosen = form.cleaned_data.get("photos") or []
        if chosen and not self._may_add_photos(request, form.instance if change else None):
            raise PermissionDenied
        added, refused = references_add(person=form.instance, image_files=chosen, operator=request.user.get_username())
        for name, reference in added:
            self._new_photos(request)[reference.pk] = name
        for photo in refused:
            messages.error(request, f"“{photo.name}” was not added: {photo.message}")
        new_photos = dict(self._new_photos(request))
        if new_photos:
            # Runs after the embedding tasks were queued (callbacks run in order): when tasks run
            # in-process the face check is already done and its verdict can be shown right away.
            transaction.on_commit(lambda: self._report_face_checks(request, new_photos))

    @staticmethod
    def _new_photos(request: HttpRequest) -> dict[int, str]:
        """Reference id -> the file's name, for the photos added by this request."""
        if not hasattr(request, "_verification_new_photos"):
            request._verification_new_photos = {}
        return request._verification_new_photos

    def _report_face_checks(self, request: HttpRequest, new_photos: dict[int, str]) -> None:
        references = ReferenceImage.objects.filter(pk__in=new_photos).order_by("pk")
        pending = 0
        for reference in references:
            name = new_photos[reference.pk]
            if reference.status == ReferenceImage.Status.REJECTED:
                messages.error(request, f"“{name}” was rejected: {reference.get_reason_display()}.")
            elif reference.status == ReferenceImage.Status.READY:
                messages.success(request, f"“{name}” is enrolled (one face found and embedded).")
            else:
                pending += 1
        if pending:
            messages.info(
                request,
                f"{pending} photo(s) queued for the face check; the person's page shows each one's progress "
                "as it happens (pending, then ready or rejected and why).",
            )

    def response_add(self, request: HttpRequest, obj: Person, post_url_continue: str | None = None) -> HttpResponse:
        return self._to_face_check(request, obj, super().response_add(request, obj, post_url_continue))

    def response_change(self, request: HttpRequest, obj: Person) -> HttpResponse:
        return self._to_face_check(request, obj, super().response_change(request, obj))

    def _to_face_check(self, request: HttpRequest, obj: Person, response: HttpResponse) -> HttpResponse:
        """After a plain "Save" that added photos, stay on the person's page, where their face check shows.

        (The photos are embedded after this request's transaction commits, so at this point every new one
        is still pending; the page's script follows them.)
        """
        plain_save = not any(key in request.POST for key in ("_addanother", "_continue", "_saveasnew", "_popup"))
        if plain_save and self._new_photos(request) and response.status_code == 302:
            return HttpResponseRedirect(reverse("admin:verification_person_change", args=[obj.pk]))
        return response

    # --- URLs: the face check's progress, the import ---

    def get_urls(self):  # noqa: ANN201
        status = path(
            "<path:object_id>/photos/status/",
            self.admin_site.admin_view(self.photo_status_view),
            name="verification_person_photo_status",
        )
        return [status, *self.import_urls(), *super().get_urls()]

    def photo_status_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """The person's photos and their face check, as JSON, for the page's script (no reload needed)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        # ASCII only: str.isdigit also takes '³', which the primary key lookup cannot convert (a 500).
        person = get_object_or_404(Person, pk=object_id) if object_id.isascii() and object_id.isdigit() else None
        if person is None:
            return JsonResponse({"error": "no such person"}, status=404)
        if not self.has_view_permission(request, person):
            raise PermissionDenied
        show_faces = may_view_reference_photos(request)
        photos = []
        for reference in person.references.order_by("pk"):
            photo = {
                "id": reference.pk,
                "status": reference.status,
                "status_label": reference.get_status_display(),
                "reason": reference.reason,
                "reason_label": reference.get_reason_display() if reference.reason else "",
            }
            if show_faces and reference.face_crop:
                photo["face_url"] = reverse("media", kwargs={"path": reference.face_crop.name})
            photos.append(photo)
        pending = sum(1 for photo in photos if photo["status"] == ReferenceImage.Status.PENDING)
        return JsonResponse({"photos": photos, "pending": pending})


def _checkin_outcome(checkin: CheckIn) -> str:
    if checkin.status == CheckIn.Status.DECIDED and checkin.decision == 1:
        return badge("admitted", "good")
    if checkin.status == CheckIn.Status.DECIDED:
        return format_html("{} {}", badge("refused", "bad"), checkin.get_reason_display())
    if checkin.status == CheckIn.Status.FAILED:
        return format_html("{} {}", badge("failed", "bad"), checkin.get_reason_display())
    return badge(checkin.get_status_display(), "quiet")
