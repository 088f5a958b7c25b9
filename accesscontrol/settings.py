"""Settings for the access-control service. Every value comes from an environment variable.

Production differs from development only by environment. With ``DEBUG`` off there is no default
secret key and no open host list: the process refuses to start without them.

Environment variables (default in brackets):

- ``DEBUG`` [off]: development mode. Enables the dev-only defaults below.
- ``SECRET_KEY`` [required when DEBUG is off; a fixed dev key when on]: Django's signing key.
- ``ALLOWED_HOSTS`` [required when DEBUG is off; ``localhost,127.0.0.1,[::1],testserver`` when on]:
  comma-separated host names.
- ``CSRF_TRUSTED_ORIGINS`` [empty]: comma-separated origins (``https://door.example.org``) for the admin
  behind a TLS proxy.
- ``DATABASE_URL`` [``sqlite:///<repo>/db.sqlite3``]: e.g. ``postgres://user:pass@db:5432/accesscontrol``
  (percent-encode reserved characters in the password), or instead:
- ``POSTGRES_HOST`` [unset] with ``POSTGRES_PORT`` [5432], ``POSTGRES_DB`` [accesscontrol],
  ``POSTGRES_USER`` [accesscontrol] and ``POSTGRES_PASSWORD`` [required with ``POSTGRES_HOST``]: the parts,
  any characters allowed (the URL is built with each part percent-encoded).
- ``DATABASE_CONN_MAX_AGE`` [60]: seconds a database connection is reused.
- ``DATABASE_POOL`` [off; on in the ASGI web process, ``accesscontrol/asgi.py``]: PostgreSQL connections
  from a pool of at most ``DATABASE_POOL_MAX_SIZE`` [20] per process instead of one kept per thread
  (``DATABASE_CONN_MAX_AGE`` then does not apply).
- ``CELERY_BROKER_URL`` [empty]: e.g. ``redis://redis:6379/0``. Empty runs tasks in-process
  (``CELERY_TASK_ALWAYS_EAGER``), which is only sensible on a laptop.
- ``CELERY_TASK_SOFT_TIME_LIMIT`` [30] / ``CELERY_TASK_TIME_LIMIT`` [60]: seconds per task.
- ``CELERY_WORKER_CONCURRENCY`` [unset: Celery's default, one process per core].
- ``MEDIA_ROOT`` [``<repo>/media``]: reference photos, face crops and snapshots (served to staff only).
- ``STATIC_ROOT`` [``<repo>/staticfiles``]: where ``collectstatic`` puts the admin and API-docs assets.
- ``SERVE_STATIC`` [on]: let Django serve ``STATIC_ROOT`` itself (no separate web server needed).
- ``FACE_MODEL_PATH`` [empty: the model shipped in ``ml/``]: a model directory to load instead.
- ``UPLOAD_MAX_BYTES`` [10_000_000]: largest accepted image upload.
- ``IMAGE_MAX_PIXELS`` [25_000_000]: largest accepted width x height, checked before decoding.
- ``CHECKIN_STUCK_AFTER_SECONDS`` [300]: a check-in pending/processing longer than this is re-queued by
  ``manage.py sweep_checkins``.
- ``CHECKIN_SWEEP_INTERVAL_SECONDS`` [60]: how often ``celery -A accesscontrol beat`` runs that sweep.
- ``CHECKIN_MAX_ATTEMPTS`` [5]: processing attempts (transient errors) before a check-in is marked failed.
- ``CHECKIN_BATCH_SIZE`` [4]: a worker that takes a check-in while others wait takes up to this many in all
  and runs their face work together (``verification/services/processing.py``); 1 turns it off.
- ``REVIEW_BAND`` [on]: check-ins scoring between the review threshold and the admit threshold go to a guard
  (``verification/services/reviews.py``); off: admit or refuse at the admit threshold alone.
- ``REVIEW_TIMEOUT_SECONDS`` [60]: a review no guard answers within this becomes 0 ``review_timeout``.
- ``REVIEW_SWEEP_INTERVAL_SECONDS`` [5]: how often ``celery beat`` expires overdue reviews (a door's poll
  expires its own as well).
- ``API_RATE_LIMIT`` [``120/min``]: requests per device token (DRF throttle syntax).
- ``CACHE_URL`` [the broker's URL when it is Redis]: the Redis that holds throttle and login counters for
  every process; local memory (per process) only without a broker.
- ``ADMIN_LOGIN_MAX_FAILURES`` [5] / ``ADMIN_LOGIN_WINDOW_SECONDS`` [900]: failed admin logins per user name
  and address that refuse further tries until the window ends.
- ``CLIENT_IP_HEADER`` [empty: ``REMOTE_ADDR``]: header with the client's address behind a reverse proxy.
- ``SECURE_SSL_REDIRECT`` [off]: redirect HTTP to HTTPS.
- ``SECURE_PROXY_SSL_HEADER`` [empty]: set to ``HTTP_X_FORWARDED_PROTO`` behind a TLS-terminating proxy.
- ``SESSION_COOKIE_SECURE`` / ``CSRF_COOKIE_SECURE`` [on when DEBUG is off]: cookies over HTTPS only.
- ``SECURE_HSTS_SECONDS`` [0], ``SECURE_HSTS_INCLUDE_SUBDOMAINS`` [off], ``SECURE_HSTS_PRELOAD`` [off].
- ``LOG_LEVEL`` [INFO].
- ``TIME_ZONE`` [UTC]: the site's IANA time zone (``Europe/Berlin``): access windows and holidays are read
  on its wall clock (daylight saving included), and the admin shows times in it.
- ``DEVICE_WITHOUT_DOOR`` [auto]: what a check-in at a device with no door gets. ``auto``: no access rule
  while the site has no door at all (as before doors existed), ``not_authorized_here`` once one exists;
  ``unrestricted`` / ``refused``: always so (docs/ACCESS.md).

``manage.py check --deploy --fail-level WARNING`` passes with ``DEBUG`` off, ``SECRET_KEY`` (50+ random
characters), ``ALLOWED_HOSTS``, ``SECURE_SSL_REDIRECT=1``, ``SECURE_HSTS_SECONDS=31536000``,
``SECURE_HSTS_INCLUDE_SUBDOMAINS=1`` and ``SECURE_HSTS_PRELOAD=1`` (the last two only if every
subdomain is HTTPS-only; without them the check passes at its default level with two warnings).
"""
from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from accesscontrol.env import env_bool, env_choice, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
# Development defaults (the fixed key, local hosts) only with DEBUG on: nothing else in the environment
# turns them on (a stray PYTEST_VERSION used to, issue 9, item 9). The test run sets its own throwaway
# key and hosts in tests/settings.py and keeps DEBUG off, so tests see production behaviour.
_DEV_DEFAULTS = DEBUG

# A fixed key is only tolerable for a laptop; production must provide its own.
_DEV_SECRET_KEY = "dev-only-insecure-key-never-used-when-debug-is-off-0123456789"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY if _DEV_DEFAULTS else None, required=not _DEV_DEFAULTS)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if _DEV_DEFAULTS else [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "verification",
]

MIDDLEWARE = [
    # First: answers /healthz and /readyz before the host check and the HTTPS redirect, so a probe from
    # inside the container (127.0.0.1, plain HTTP) works whatever ALLOWED_HOSTS and SECURE_* say.
    "verification.monitoring.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "accesscontrol.urls"
WSGI_APPLICATION = "accesscontrol.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# DATABASE_URL, or its parts (POSTGRES_*, compose passes these): a password is never pasted into a URL
# unescaped, where "/", "@" or "#" would break or misparse it (issue 9, item 9).
_database_url = env_str("DATABASE_URL", "")
_postgres_host = env_str("POSTGRES_HOST", "")
if _database_url and _postgres_host:
    raise ImproperlyConfigured("Set DATABASE_URL or POSTGRES_HOST (with the other POSTGRES_* parts), not both.")
if _postgres_host:
    _database_url = "postgres://{user}:{password}@{host}:{port}/{name}".format(
        user=quote(env_str("POSTGRES_USER", "accesscontrol"), safe=""),
        password=quote(env_str("POSTGRES_PASSWORD", required=True), safe=""),
        host=f"[{_postgres_host}]" if ":" in _postgres_host else quote(_postgres_host, safe=""),
        port=env_int("POSTGRES_PORT", 5432, minimum=1, maximum=65535),
        name=quote(env_str("POSTGRES_DB", "accesscontrol"), safe=""),
    )
DATABASES = {
    "default": dj_database_url.parse(
        _database_url or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker processes share the file: take the write lock at BEGIN (no upgrade deadlock)
    # and wait for it instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})
if env_bool("DATABASE_POOL", False) and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The ASGI server runs each request's synchronous part in a thread of its own: a connection kept per
    # thread would be opened per request and left to the garbage collector. A pool hands them round, and
    # a request waiting for its decision gives its connection back meanwhile (services/waits.py).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20, minimum=2),
        "timeout": 10,  # seconds a request waits for a free connection before failing (503 via the API)
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# The site's time zone (issue 11, item 1): access windows are wall-clock times in it. Checked here, so a
# misspelt zone stops start-up instead of every door reading its windows in the wrong zone.
TIME_ZONE = env_str("TIME_ZONE", "UTC")
try:
    ZoneInfo(TIME_ZONE)
except (ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(f"TIME_ZONE={TIME_ZONE!r} is not an IANA time zone (e.g. Europe/Berlin).") from None
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
SERVE_STATIC = env_bool("SERVE_STATIC", True)

# Biometric images: never exposed by a public URL; `verification.views.media` serves them to staff.
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))

# --- Limits on uploads (checked in the web process before anything is queued) ---
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 10_000_000, minimum=1)
IMAGE_MAX_PIXELS = env_int("IMAGE_MAX_PIXELS", 25_000_000, minimum=1)
# Django keeps uploads up to this size in memory; bigger ones spool to a temp file.
FILE_UPLOAD_MAX_MEMORY_SIZE = min(UPLOAD_MAX_BYTES, 5_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_500_000

# --- The face model and check-in processing ---
FACE_MODEL_PATH = env_str("FACE_MODEL_PATH", "")
CHECKIN_STUCK_AFTER_SECONDS = env_int("CHECKIN_STUCK_AFTER_SECONDS", 300, minimum=1)
CHECKIN_MAX_ATTEMPTS = env_int("CHECKIN_MAX_ATTEMPTS", 5, minimum=1)
CHECKIN_BATCH_SIZE = env_int("CHECKIN_BATCH_SIZE", 4, minimum=1)
# Ready reference photos a person needs before a check-in is scored (fewer: refused no_references).
# 1 keeps a one-photo enrolment working; 3 is recommended (README "Enrolment quality").
ENROLMENT_MIN_REFERENCES = env_int("ENROLMENT_MIN_REFERENCES", 1, minimum=1)
# The review band (issue 10, item 1; verification/services/reviews.py). Thresholds come from the model's
# calibration (manifest ``review_band``) or the site's (manage.py calibrate), never from here.
REVIEW_BAND = env_bool("REVIEW_BAND", True)
REVIEW_TIMEOUT_SECONDS = env_int("REVIEW_TIMEOUT_SECONDS", 60, minimum=5, maximum=3600)

# --- Attempt limiting (NIST SP 800-53 AC-7), see verification/services/lockouts.py ---
# LOCKOUT_PERSON_MAX_FAILURES [5] / LOCKOUT_DEVICE_MAX_FAILURES [20]: refusals within
# LOCKOUT_WINDOW_SECONDS [600] for one claimed person / at one device that lock it out for
# LOCKOUT_SECONDS [600]; an operator can unlock in the admin. The device limit is higher because a busy
# door legitimately sees several people refused (no face, ...) within ten minutes.
# (Not yet in the module docstring: README.md's settings list must name them first, see its test.)
LOCKOUT_PERSON_MAX_FAILURES = env_int("LOCKOUT_PERSON_MAX_FAILURES", 5, minimum=1)
LOCKOUT_DEVICE_MAX_FAILURES = env_int("LOCKOUT_DEVICE_MAX_FAILURES", 20, minimum=1)
LOCKOUT_WINDOW_SECONDS = env_int("LOCKOUT_WINDOW_SECONDS", 600, minimum=1)
LOCKOUT_SECONDS = env_int("LOCKOUT_SECONDS", 600, minimum=1)
# LOCKOUT_ESCALATION_SECONDS [86400]: a lockout beginning within this many seconds of the end of the
# previous one (of the same person/device) lasts twice as long, and a device's count carries over;
# LOCKOUT_MAX_SECONDS [86400] caps the doubling (issue 9, item 5).
LOCKOUT_ESCALATION_SECONDS = env_int("LOCKOUT_ESCALATION_SECONDS", 86_400, minimum=0)
LOCKOUT_MAX_SECONDS = env_int("LOCKOUT_MAX_SECONDS", 86_400, minimum=1)
if LOCKOUT_MAX_SECONDS < LOCKOUT_SECONDS:
    raise ImproperlyConfigured("LOCKOUT_MAX_SECONDS must be at least LOCKOUT_SECONDS.")

# --- Replays (issue 9, item 7), see verification/services/replays.py ---
# A snapshot whose bytes were seen before is refused ``replayed``; so is a probe whose embedding has a
# cosine similarity above REPLAY_SIMILARITY_MAX [0.995] with a probe of the same claimed person within
# REPLAY_WINDOW_SECONDS [600] (bench/replay_similarity.py measured the bound). 1 turns the second off.
REPLAY_SIMILARITY_MAX = env_float("REPLAY_SIMILARITY_MAX", 0.995, minimum=0.9, maximum=1.0)
REPLAY_WINDOW_SECONDS = env_int("REPLAY_WINDOW_SECONDS", 600, minimum=0)
# A device given a signing secret must sign every API request (verification/api/signatures.py); a
# signature whose X-Signature-Timestamp is more than REQUEST_SIGNATURE_MAX_SKEW_SECONDS [300] away from
# the server's clock is refused, and nonces are remembered (in the shared cache) for twice that long.
REQUEST_SIGNATURE_MAX_SKEW_SECONDS = env_int("REQUEST_SIGNATURE_MAX_SKEW_SECONDS", 300, minimum=1, maximum=3600)

# --- Retention of biometric files, see verification/services/retention.py ---
# RETENTION_SNAPSHOT_DAYS [30]: check-in snapshot files are deleted after this many days (check-in and
# audit rows stay, marked snapshot_purged_at). RETENTION_REJECTED_REFERENCE_DAYS [7]: rejected
# enrolment photos are deleted after this. RETENTION_INTERVAL_SECONDS [3600] (beat schedule below):
# how often `celery beat` applies retention; `manage.py apply_retention` does the same from cron.
RETENTION_SNAPSHOT_DAYS = env_int("RETENTION_SNAPSHOT_DAYS", 30, minimum=1)
RETENTION_REJECTED_REFERENCE_DAYS = env_int("RETENTION_REJECTED_REFERENCE_DAYS", 7, minimum=1)

# --- Media reconciliation (issue 9, item 10), see verification/services/media.py ---
# MEDIA_CHECK_INTERVAL_SECONDS [86400] (beat schedule below): how often a worker reports media files no
# row owns and rows whose file is missing (WARNING; deletes nothing). `manage.py check_media --delete`
# removes orphans older than MEDIA_ORPHAN_GRACE_SECONDS [3600] (younger ones may be mid-upload).
MEDIA_ORPHAN_GRACE_SECONDS = env_int("MEDIA_ORPHAN_GRACE_SECONDS", 3600, minimum=0)

# --- Audit chain (issue 9, item 3), see verification/audit.py ---
# AUDIT_HMAC_KEY [empty: plain SHA-256]: with a key (32+ characters, e.g. secrets.token_urlsafe(48)),
# each new entry's hash and the chain head are HMAC-SHA256 keyed with it, so someone who can write to
# the database but does not hold the key cannot recompute a valid chain. Keep it outside the database
# (environment / secret store); verifying needs it (`manage.py verify_audit_log`, beat, the admin).
AUDIT_HMAC_KEY = env_str("AUDIT_HMAC_KEY", "")
if AUDIT_HMAC_KEY and len(AUDIT_HMAC_KEY) < 32:
    raise ImproperlyConfigured("AUDIT_HMAC_KEY must be at least 32 characters (e.g. secrets.token_urlsafe(48)).")
# AUDIT_VERIFY_INTERVAL_SECONDS [86400] (beat schedule below): how often a worker walks the chain; a
# break is logged at ERROR, shown on the admin's front page and posted to ALERT_WEBHOOK_URL.
# ALERT_WEBHOOK_URL [empty: off]: an http(s) URL that receives security alerts as a JSON POST
# ({"event", "message", "detail", "at"}; 5 s timeout; a failure is logged, never raised).
ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL", "")
if ALERT_WEBHOOK_URL and not ALERT_WEBHOOK_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured("ALERT_WEBHOOK_URL must be an http:// or https:// URL.")

# --- Device tokens, see verification/api/authentication.py ---
# DEVICE_TOKEN_MAX_AGE_DAYS [0: off]: a device token older than this many days is refused (401) until
# an operator issues a new one. None when off.
DEVICE_TOKEN_MAX_AGE_DAYS: int | None = env_int("DEVICE_TOKEN_MAX_AGE_DAYS", 0, minimum=0) or None

# --- Re-embedding references after a model change, see verification/services/reembedding.py ---
# REEMBED_SWEEP_INTERVAL_SECONDS [300] (beat schedule below): how often a worker looks for references
# another model version embedded (it also looks at start-up). REEMBED_BATCH_SIZE [100]: references
# queued per sweep; a full batch queues the next sweep at once.
REEMBED_BATCH_SIZE = env_int("REEMBED_BATCH_SIZE", 100, minimum=1)

# --- Celery ---
_broker_url = env_str("CELERY_BROKER_URL", "")
# No broker: run tasks in the calling process (a laptop without Redis). Never in production.
CELERY_TASK_ALWAYS_EAGER = _broker_url == ""
# Eager tasks never touch a broker; the in-memory transport just keeps kombu from guessing localhost.
CELERY_BROKER_URL = _broker_url or "memory://"
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A task is acknowledged only after it finished; a killed worker's task goes back to the queue.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Verification is long CPU work: one message at a time per process keeps the queue fair.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 30, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 60, minimum=2)
if CELERY_TASK_TIME_LIMIT <= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_TASK_TIME_LIMIT must exceed CELERY_TASK_SOFT_TIME_LIMIT.")
# A new pool process loads and warms the model before it reports "up" (tasks.py). Celery's
# default wait of 4 s is shorter than that on a busy machine: a pool process that died (OOM, SIGKILL)
# was then replaced, killed for being late, replaced again, forever, and the worker never worked again.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = env_int("CELERY_WORKER_PROC_ALIVE_TIMEOUT", 180, minimum=1)
_worker_concurrency = env_int("CELERY_WORKER_CONCURRENCY", 0, minimum=0)
if _worker_concurrency:
    CELERY_WORKER_CONCURRENCY = _worker_concurrency
# CELERY_VISIBILITY_TIMEOUT [3600]: Redis hands an unacknowledged task (its worker was killed or lost)
# to another worker after this many seconds. It must exceed any task's run time, or a slow task would run twice (the row claim makes that
# harmless, but wasteful); stuck rows are re-queued sooner by the sweep (CHECKIN_STUCK_AFTER_SECONDS).
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1)
if CELERY_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_VISIBILITY_TIMEOUT must exceed CELERY_TASK_TIME_LIMIT.")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
# A broker that is down must not hang the request: give up quickly, the sweep re-queues later.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# `celery -A accesscontrol beat` runs the sweep; without beat, run `manage.py sweep_checkins` from cron.
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-checkins": {
        "task": "verification.tasks.sweep_stuck_task",
        "schedule": float(env_int("CHECKIN_SWEEP_INTERVAL_SECONDS", 60, minimum=1)),
    },
    "expire-overdue-reviews": {
        "task": "verification.tasks.reviews_expire_task",
        "schedule": float(env_int("REVIEW_SWEEP_INTERVAL_SECONDS", 5, minimum=1)),
    },
    "apply-retention": {
        "task": "verification.tasks.retention_task",
        "schedule": float(env_int("RETENTION_INTERVAL_SECONDS", 3600, minimum=1)),
    },
    "check-media": {
        "task": "verification.tasks.media_check_task",
        "schedule": float(env_int("MEDIA_CHECK_INTERVAL_SECONDS", 86_400, minimum=1)),
    },
    "reembed-stale-references": {
        "task": "verification.tasks.reembed_stale_task",
        "schedule": float(env_int("REEMBED_SWEEP_INTERVAL_SECONDS", 300, minimum=1)),
    },
    "verify-audit-chain": {
        "task": "verification.tasks.audit_verify_task",
        "schedule": float(env_int("AUDIT_VERIFY_INTERVAL_SECONDS", 86_400, minimum=60)),
    },
}

# --- Shared cache: throttles and login counters (issue 9, item 8), see verification/ratelimits.py ---
# CACHE_URL [the broker's URL when it is Redis; empty without a broker]: redis://, rediss:// or unix://
# for the Redis every process shares. Local memory (counts per process) only without a broker, the
# laptop default; a broker that is not Redis needs an explicit CACHE_URL.
_cache_url = env_str("CACHE_URL", "")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
if not _cache_url and _broker_url.startswith(_REDIS_SCHEMES):
    _cache_url = _broker_url
if _cache_url.startswith(_REDIS_SCHEMES):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
            "KEY_PREFIX": "accesscontrol",
            # A Redis that is down fails the request quickly instead of hanging it.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
elif _cache_url or _broker_url:
    raise ImproperlyConfigured(
        "CACHE_URL must be a redis://, rediss:// or unix:// URL, and set when CELERY_BROKER_URL is not "
        "Redis (throttle and login counters must be shared by every process)."
    )
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "accesscontrol"}}

# CHECKIN_WAKEUP_URL [the cache's Redis URL; empty without one]: the Redis whose pub/sub wakes a request
# waiting (``wait``) for its check-in's decision the moment the worker commits it (services/waits.py).
# Empty (a laptop without Redis): the wait re-reads the row every 10-25 ms, as does any wait while Redis is down.
CHECKIN_WAKEUP_URL = env_str("CHECKIN_WAKEUP_URL", "") or (_cache_url if _cache_url.startswith(_REDIS_SCHEMES) else "")
if CHECKIN_WAKEUP_URL and not CHECKIN_WAKEUP_URL.startswith(_REDIS_SCHEMES):
    raise ImproperlyConfigured("CHECKIN_WAKEUP_URL must be a redis://, rediss:// or unix:// URL.")

# ADMIN_LOGIN_MAX_FAILURES [5] failed admin logins for one user name from one address within
# ADMIN_LOGIN_WINDOW_SECONDS [900] refuse that pair until the window ends (verification/login_throttle.py).
# CLIENT_IP_HEADER [empty: REMOTE_ADDR]: behind a reverse proxy, the request header holding the client's
# address (e.g. HTTP_X_REAL_IP); the proxy must overwrite it, or a client could pick its own address.
ADMIN_LOGIN_MAX_FAILURES = env_int("ADMIN_LOGIN_MAX_FAILURES", 5, minimum=1)
ADMIN_LOGIN_WINDOW_SECONDS = env_int("ADMIN_LOGIN_WINDOW_SECONDS", 900, minimum=1)
CLIENT_IP_HEADER = env_str("CLIENT_IP_HEADER", "")

# --- Health and metrics (issue 11, item 3), see verification/monitoring/ ---
# WORKER_HEARTBEAT_INTERVAL_SECONDS [15]: how often each worker process records that it is alive and
# which model it loaded; WORKER_HEARTBEAT_MAX_AGE_SECONDS [60]: /readyz needs a heartbeat younger than
# this (with the model loaded) when a broker is configured.
WORKER_HEARTBEAT_INTERVAL_SECONDS = env_int("WORKER_HEARTBEAT_INTERVAL_SECONDS", 15, minimum=1)
WORKER_HEARTBEAT_MAX_AGE_SECONDS = env_int("WORKER_HEARTBEAT_MAX_AGE_SECONDS", 60, minimum=1)
if WORKER_HEARTBEAT_MAX_AGE_SECONDS <= WORKER_HEARTBEAT_INTERVAL_SECONDS:
    raise ImproperlyConfigured("WORKER_HEARTBEAT_MAX_AGE_SECONDS must exceed WORKER_HEARTBEAT_INTERVAL_SECONDS.")
# METRICS_TOKEN [empty]: /metrics answers a request with ``Authorization: Bearer <token>``; at least 32
# characters. METRICS_ALLOWED_NETWORKS [empty]: comma-separated addresses or CIDR networks (as the app
# sees the client: CLIENT_IP_HEADER) that may read /metrics without the token. Neither set: /metrics is 404.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
if METRICS_TOKEN and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 32 characters (e.g. secrets.token_urlsafe(32)).")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", [])
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {_network!r} is not an address or network.") from None
# A scraper inside the network talks plain HTTP to web:8000: no redirect to HTTPS for /metrics.
SECURE_REDIRECT_EXEMPT = [r"^metrics$"]

# --- Doors and access groups (issue 11, item 1), see verification/services/access.py ---
# A device with no door: ``auto`` leaves it without access rules while the site has no door at all (an
# install from before doors keeps working) and refuses it ``not_authorized_here`` once any door exists;
# ``unrestricted`` (a gradual roll-out) / ``refused`` say so whatever else exists.
DEVICE_WITHOUT_DOOR = env_choice("DEVICE_WITHOUT_DOOR", "auto", ("auto", "unrestricted", "refused"))

# --- REST API ---
API_RATE_LIMIT = env_str("API_RATE_LIMIT", "120/min")
# CHECKIN_RESPONSE_DETAIL [coarse]: what a door device is told about a check-in (issue 9, item 6).
# ``coarse``: id, url, status, decision and a coarse reason (not_recognised, locked_out, error); the
# score, threshold, timings and exact reason stay in the audit log. ``full``: everything, for
# integrators who need it (it gives a device holder a hill-climbing oracle and tells which IDs exist).
CHECKIN_RESPONSE_DETAIL = env_choice("CHECKIN_RESPONSE_DETAIL", "coarse", ("coarse", "full"))
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["verification.api.authentication.DeviceTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["verification.api.permissions.IsDevice"],
    "DEFAULT_THROTTLE_CLASSES": ["verification.api.throttling.DeviceRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"device": API_RATE_LIMIT},
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.MultiPartParser", "rest_framework.parsers.FormParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "verification.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Access control API",
    "DESCRIPTION": "Door devices submit face snapshots and read the verification decision.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get their own components, so a file field reads as a binary upload (not the URI it
    # is answered as) and a required text field as non-blank, which is what the views accept.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",  # the default hook, kept
        "verification.api.schema.close_request_bodies",
    ],
    # Offline assets: the docs page works without internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

# --- Security (production defaults: secure cookies; HSTS and redirect opt-in behind TLS) ---
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
_proxy_header = env_str("SECURE_PROXY_SSL_HEADER", "")
if _proxy_header:
    SECURE_PROXY_SSL_HEADER = (_proxy_header, "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- Worker performance (issue 5; figures in bench/README.md) ------------------------------------
# ``WORKER_TF_THREADS`` [0 = the process's CPUs divided by its worker's pool processes]: threads of
# each network (TensorFlow Lite, on LiteRT) and of OpenCV per worker process. Set it when several worker containers share one
# host without CPU limits: each sees every core and would otherwise start a pool as wide as the host.
WORKER_TF_THREADS = env_int("WORKER_TF_THREADS", 0, minimum=0)
# Unset concurrency: one prefork process per CPU this worker may use, a container's CPU quota included
# (Celery's plain default counts the host's cores even inside a container limited to fewer).
if not _worker_concurrency:
    CELERY_WORKER_CONCURRENCY = "auto"
