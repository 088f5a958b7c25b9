"""Importing people from a CSV file and a zip of photos: the admin's page for ``services/people_import.py``.

"Check (dry run)" validates everything and writes nothing; "Import" validates the same way and writes
only when no row has a problem. Either shows the per-row report. Who may: ``add_person``; with a zip of
photos also ``add_referenceimage`` and the right to view reference photos (as an upload on the person
page); updating people already enrolled also ``change_person``.
"""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from verification import roles
from verification.services import people_import


class PeopleImportForm(forms.Form):
    csv_file = forms.FileField(label="CSV file", help_text="UTF-8; one header row; see the columns below.")
    photos_zip = forms.FileField(
        label="Zip of photos", required=False,
        help_text="Optional. The photos the CSV's photos column names, or files named after the external ID.",
    )
    update_existing = forms.BooleanField(
        label="Update existing people", required=False,
        help_text="Rows whose external ID is already enrolled change that person (audited) instead of being errors.",
    )


class PeopleImportViews:
    """Mixed into ``PersonAdmin``: the import page and its example file."""

    def has_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{roles.APP_LABEL}.add_person")

    def _may_import_photos(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{roles.APP_LABEL}.add_referenceimage") and request.user.has_perm(
            roles.perm(roles.VIEW_REFERENCE_PHOTOS)
        )

    def import_urls(self) -> list:
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="verification_person_import"),
            path("import/example.csv", self.admin_site.admin_view(self.import_example_view),
                 name="verification_person_import_example"),
        ]

    @staticmethod
    def import_example_view(request: HttpRequest) -> HttpResponse:
        response = HttpResponse(people_import.EXAMPLE_CSV, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="people-import-example.csv"'
        return response

    def import_view(self, request: HttpRequest) -> HttpResponse:
        # Not atomic on purpose: the service writes each person in a transaction of its own.
        if not self.has_import_permission(request):
            raise PermissionDenied
        report = None
        form = PeopleImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            if data["photos_zip"] and not self._may_import_photos(request):
                raise PermissionDenied
            if data["update_existing"] and not request.user.has_perm(f"{roles.APP_LABEL}.change_person"):
                raise PermissionDenied
            dry_run = "_import" not in request.POST
            report = people_import.people_import(
                csv_file=data["csv_file"], photos_zip=data["photos_zip"], dry_run=dry_run,
                update_existing=data["update_existing"], operator=request.user.get_username(),
                csv_name=data["csv_file"].name,
            )
            level = messages.SUCCESS if report.ok else messages.ERROR
            messages.add_message(request, level, report.summary())
            # The browser forgets chosen files after a post: a fresh form asks for them again.
            form = PeopleImportForm(initial={"update_existing": data["update_existing"]})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import people from CSV",
            "form": form,
            "report": report,
            "columns": people_import.COLUMNS,
            "may_import_photos": self._may_import_photos(request),
            "photo_separator": people_import.PHOTO_SEPARATOR,
        }
        return TemplateResponse(request, "admin/verification/person/import.html", context)
