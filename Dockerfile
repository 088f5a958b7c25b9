# One image for every process of the service: `web` (gunicorn), `worker` and `beat` (celery) and the
# one-shot `migrate` job in docker-compose.yml differ only by their command.
# Debian 12 pinned: the package names below (libgl1, libglib2.0-0) are the bookworm ones.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MEDIA_ROOT=/data/media

# opencv-python links against libGL and GLib even when no window is ever opened.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, read from pyproject.toml itself, so a code change does not reinstall TensorFlow.
COPY pyproject.toml README.md ./
RUN python -m venv "$VIRTUAL_ENV" \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project, installed the way the README installs it (editable, from this checkout).
COPY . .
# Static assets are baked into the image (gunicorn serves them itself, SERVE_STATIC); the throwaway key
# only lets settings load for this build step and never reaches a running container.
RUN pip install --no-deps -e . \
    && SECRET_KEY=collectstatic-build-step-only ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput \
    && useradd --create-home --uid 10001 app \
    && mkdir -p "$MEDIA_ROOT" \
    && chown -R app:app "$MEDIA_ROOT"

USER app
EXPOSE 8000

# Production by default: settings refuse to start without SECRET_KEY and ALLOWED_HOSTS (see README).
CMD ["gunicorn", "accesscontrol.wsgi:application", "--workers", "2", "--access-logfile", "-", "--no-control-socket", "--bind", "0.0.0.0:8000"]
