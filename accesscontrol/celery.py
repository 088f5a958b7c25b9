"""The Celery application. Settings come from Django's settings under the ``CELERY_`` namespace.

Worker: ``celery -A accesscontrol worker -l info``.
"""
import os

from celery import Celery
from celery.signals import celeryd_after_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accesscontrol.settings")

app = Celery("accesscontrol")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Read by verification.inference in each pool process to split the CPUs between them.
POOL_PROCESSES_ENV = "WORKER_POOL_PROCESSES"


@celeryd_after_setup.connect
def _export_pool_size(sender: str, instance, **kwargs) -> None:  # noqa: ANN001 - Celery's signal signature
    """Runs in the worker's main process after ``--concurrency`` is resolved and before the pool forks."""
    os.environ[POOL_PROCESSES_ENV] = str(instance.concurrency)
