"""The Celery application. Settings come from Django's settings under the ``CELERY_`` namespace.

Worker: ``celery -A accesscontrol worker -l info``.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accesscontrol.settings")

app = Celery("accesscontrol")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
