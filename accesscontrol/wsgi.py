"""WSGI entry point (gunicorn accesscontrol.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accesscontrol.settings")

application = get_wsgi_application()
