# Two images from one Dockerfile (docker-compose.yml builds both):
#   web     gunicorn + Django/DRF, also `beat` and the one-shot `migrate`: pyproject.toml's base
#           dependencies only, no TensorFlow and no OpenCV (the web process never imports `ml`).
#   worker  the Celery worker: the same plus the `worker` extra: LiteRT (TensorFlow Lite's runtime, which
#           runs the converted networks) and opencv-python-headless (deploy/image_requirements.py).
#           TensorFlow itself and the training packages (the `train` extra) are in neither.
# Build one with `docker build --target web .` (or worker); the last stage, worker, is the default.
# Python 3.11, the oldest supported version (CI tests 3.11 and the newest); Debian 12 pinned.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MEDIA_ROOT=/data/media
WORKDIR /app
RUN useradd --create-home --uid 10001 app \
    && mkdir -p "$MEDIA_ROOT" \
    && chown -R app:app "$MEDIA_ROOT"

# --- Dependencies, read from pyproject.toml itself, so a code change reinstalls nothing -----------------
# (nor a README change: the project itself is installed only in the final stages)
# Only the finished /opt/venv reaches an image, so what is deleted here costs nothing: setuptools (the
# project's own install builds in an isolated environment), the
# packages' own test suites and translation sources (*.po; Django reads the compiled *.mo).
FROM base AS web-deps
COPY pyproject.toml ./
COPY deploy/image_requirements.py deploy/
RUN python -m venv "$VIRTUAL_ENV" \
    && python deploy/image_requirements.py web > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && pip uninstall --yes setuptools \
    && find "$VIRTUAL_ENV" -type d -name tests -prune -exec rm -rf {} + \
    && find "$VIRTUAL_ENV" -name '*.po' -delete

FROM web-deps AS worker-deps
# The worker runs the networks as TensorFlow Lite files on LiteRT (ml/lite.py): no TensorFlow here.
RUN python deploy/image_requirements.py worker > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && find "$VIRTUAL_ENV" -type d -name tests -prune -exec rm -rf {} + \
    && python -c "import cv2, ai_edge_litert.interpreter" \
    && python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('tensorflow', 'keras', 'mtcnn')))"

# The web reads a model's manifest.json (its version and thresholds) and never runs a network, so its
# copy of the project leaves the weights out (~45 MB over the model versions kept in ml/models).
FROM base AS web-source
COPY . .
RUN find ml/models -type f ! -name manifest.json -delete

# --- The images: the environment, then the project installed the way the README installs it -----------
FROM base AS web
COPY --from=web-deps /opt/venv /opt/venv
COPY --from=web-source /app /app
# Static assets are baked into the image (gunicorn serves them itself, SERVE_STATIC), as links to the
# packages' own files rather than second copies; the throwaway key only lets settings load for this
# build step and never reaches a running container.
RUN pip install --no-deps -e . \
    && SECRET_KEY=collectstatic-build-step-only ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput --link \
    && python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('tensorflow', 'cv2')))"
USER app
EXPOSE 8000
# Production by default: settings refuse to start without SECRET_KEY and ALLOWED_HOSTS (see README).
CMD ["gunicorn", "accesscontrol.asgi:application", "--worker-class", "uvicorn_worker.UvicornWorker", "--workers", "2", "--access-logfile", "-", "--no-control-socket", "--bind", "0.0.0.0:8000"]

FROM base AS worker
COPY --from=worker-deps /opt/venv /opt/venv
COPY . .
RUN pip install --no-deps -e .
USER app
CMD ["celery", "-A", "accesscontrol", "worker", "--loglevel", "info", "--concurrency", "1"]
