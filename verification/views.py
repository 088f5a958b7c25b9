"""Staff-only access to uploaded biometric images; there is no public media URL.

Each kind of image needs its own permission (``roles.media_permission``, issue 9, item 2): snapshots
``view_snapshots``, reference photos and their aligned faces ``view_reference_photos``. A staff member
without it gets 403, before anything about the file (whether it exists) is looked at; a path outside
those folders, or one that could climb out of its folder, is a 404.

Only image files are served, and only as images: the Content-Type comes from the stored name's
suffix (``images.content_type_for``; stored names take it from the decoded format), never from a
guess; anything else is a 404. ``nosniff`` stops a browser from reading an image/HTML polyglot as
HTML, and the Content-Security-Policy sandboxes the response should one be opened on its own, so no
upload can run script on the admin's origin (issue 9, item 1).
"""
from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied, SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from verification import roles
from verification.apps import PRODUCT_NAME
from verification.images import content_type_for

MEDIA_CONTENT_SECURITY_POLICY = "default-src 'none'; img-src 'self'; sandbox"


@never_cache
@staff_member_required
def media(request: HttpRequest, path: str) -> HttpResponse:
    required = roles.media_permission(path)
    if required is None:
        raise Http404("No such image.")
    if not request.user.has_perm(required):
        raise PermissionDenied
    content_type = content_type_for(path)
    if content_type is None:
        raise Http404("No such image.")
    try:
        # The storage refuses names that escape MEDIA_ROOT (SuspiciousFileOperation).
        handle = default_storage.open(path, "rb")
    except (SuspiciousFileOperation, FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise Http404("No such image.") from None
    response = FileResponse(handle, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = MEDIA_CONTENT_SECURITY_POLICY
    response["Content-Disposition"] = "inline"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """The site's front page (the admin's "View site"): what this is and where to go. Public; reads nothing."""
    return render(request, "verification/home.html", {"product_name": PRODUCT_NAME})
