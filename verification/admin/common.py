"""What every admin screen shares: thumbnails, image-viewing rights, read-only screens."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from verification import roles
from verification.formatting import local_timestamp

THUMB_PX = 96
# The admin screens' own styles (dashboard, badges, audit entries): a ModelAdmin's ``Media.css``.
ADMIN_CSS = "verification/admin/admin.css"
BADGE_TONES = {"good": "va-badge-good", "bad": "va-badge-bad", "warn": "va-badge-warn", "quiet": "va-badge-quiet"}


def when(moment, *, stacked: bool = False) -> str:  # noqa: ANN001 - datetime or None
    """A time as every admin list shows it: the site's time zone, to the second, with the zone's name;
    ``stacked`` puts the time under the date (a narrow column in a wide list)."""
    if moment is None:
        return "-"
    text = local_timestamp(moment)
    if stacked:
        day, _, clock = text.partition(" ")
        return format_html('<time datetime="{}">{}<span class="va-sub">{}</span></time>', moment.isoformat(), day, clock)
    return format_html('<time datetime="{}">{}</time>', moment.isoformat(), text)


def badge(text: str, tone: str = "quiet") -> str:
    """A coloured label (tone: good, bad, warn, quiet)."""
    return format_html('<span class="va-badge {}">{}</span>', BADGE_TONES.get(tone, BADGE_TONES["quiet"]), text)


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


def may_view_reference_photos(request: HttpRequest) -> bool:
    return request.user.has_perm(roles.perm(roles.VIEW_REFERENCE_PHOTOS))


def may_view_snapshots(request: HttpRequest) -> bool:
    return request.user.has_perm(roles.perm(roles.VIEW_SNAPSHOTS))


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False
