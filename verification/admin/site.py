"""The admin site itself: the product's name in the header, a "View site" that leads somewhere, the
dashboard as the front page, and model names as people say them (issue 11, item 2).

The names are set on the models' ``_meta`` here, not in their ``Meta``: a ``verbose_name`` in ``Meta``
is migration state (``AlterModelOptions``), and these are words on screens, not schema. Django's
migration autodetector reads ``Meta`` as declared (``_meta.original_attrs``), so nothing here makes a
migration. Move them into ``Meta`` with the next migration that touches these models anyway.
"""
from __future__ import annotations

from django.contrib import admin

from verification.apps import PRODUCT_NAME
from verification.models import CheckIn, Person, ReferenceImage

# (model, singular, plural) as the admin shows them: "People", not "Persons"; "Check-ins", not "Check ins".
MODEL_NAMES = (
    (Person, "person", "people"),
    (CheckIn, "check-in", "check-ins"),
    (ReferenceImage, "reference photo", "reference photos"),
)


def names_apply() -> None:
    for model, singular, plural in MODEL_NAMES:
        model._meta.verbose_name = singular
        model._meta.verbose_name_plural = plural


names_apply()

admin.site.site_header = PRODUCT_NAME
admin.site.site_title = "Access control admin"
admin.site.index_title = "Dashboard"
# "/" is the small landing page (verification.views.home): product name, the admin, the API docs.
admin.site.site_url = "/"
# The front page: security banners and the dashboard above the list of screens.
admin.site.index_template = "admin/verification/index.html"
