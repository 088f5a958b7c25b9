"""ASGI entry point: the web process (``gunicorn -k uvicorn_worker.UvicornWorker accesscontrol.asgi``).

One process serves many requests at once: a door waiting for its decision waits on the event loop
(``verification.api.views.checkin_create``), not in a worker of its own. Each request's synchronous part
runs in a thread of its own, so database connections come from a pool (``DATABASE_POOL``) rather than
one kept per thread.
"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accesscontrol.settings")
_pool_by_default = "DATABASE_POOL" not in os.environ
os.environ.setdefault("DATABASE_POOL", "1")

application = get_asgi_application()  # settings are read here

if _pool_by_default:
    # Only this process's settings: processes it starts (or a test run that imported this module) keep theirs.
    del os.environ["DATABASE_POOL"]


def _import_the_request_path() -> None:
    """Import the URLconf (the API, DRF, the admin and what they import) while the process boots, not in
    the first request it serves: about a second of CPU that otherwise lands on a door's check-in, and on
    the throughput of a burst that a freshly started web process serves (``bench/burst.py`` measured it)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - the property imports the URLconf


_import_the_request_path()
