"""Settings for the test run: the production settings (DEBUG off) with a throwaway key and test hosts.

``accesscontrol/settings.py`` gives development defaults only when ``DEBUG`` is on; it no longer looks
for ``PYTEST_VERSION``, which a stray export could set in production (issue 9, item 9). pytest-django
loads this module (``DJANGO_SETTINGS_MODULE`` in pyproject.toml) before any conftest; the values go into
the environment, so the processes tests start (manage.py, gunicorn, celery) inherit them too. A value
already in the environment wins.
"""
import os

os.environ.setdefault("SECRET_KEY", "test-run-only-insecure-key-never-deployed-0123456789abcdef")
os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

from accesscontrol.settings import *  # noqa: E402,F403
