"""Staff-only access to uploaded biometric images; there is no public media URL."""
from __future__ import annotations

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import SuspiciousFileOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.static import serve


@never_cache
@staff_member_required
def media(request: HttpRequest, path: str) -> HttpResponse:
    # ``serve`` refuses paths that escape MEDIA_ROOT; staff-only plus no caching by proxies.
    try:
        response = serve(request, path, document_root=settings.MEDIA_ROOT)
    except SuspiciousFileOperation:
        raise Http404("No such file.") from None
    response["X-Content-Type-Options"] = "nosniff"
    return response
