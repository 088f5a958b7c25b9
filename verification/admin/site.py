"""The admin site itself: the product's name in the header, a "View site" that leads somewhere (the front
page, ``verification.views.home``), and the dashboard as the front page (issue 11, item 2).

The models' names as people say them ("People", "Check-ins", "Reference photos") are in their ``Meta``
(migration 0018_admin_labels).
"""
from __future__ import annotations

from django.contrib import admin

from verification.apps import PRODUCT_NAME

admin.site.site_header = PRODUCT_NAME
admin.site.site_title = "Access control admin"
admin.site.index_title = "Dashboard"
# "/" is the small landing page (verification.views.home): product name, the admin, the API docs.
admin.site.site_url = "/"
# The front page: security banners and the dashboard above the list of screens.
admin.site.index_template = "admin/verification/index.html"
