"""Settings shared by every environment, read from environment variables (README.md, "Configuration").

What differs between environments lives beside this module: dev.py (the embedded defaults `make run`
needs: SQLite, local files, the filesystem broker, DEBUG on), production.py (no default secrets, DEBUG
off, HTTPS) and test.py (dev with a fast password hasher). The Celery settings (CELERY_*, read by
config/celery.py) are here: the broker, queues, routes and the beat schedule are the same everywhere.
Over 400 lines: one flat list of every setting, in sections, is easier to search than more modules.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("STUDIO_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_required(name: str, why: str) -> str:
    """The variable's value; production has no default for it, so its absence stops the start."""
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"{name} must be set in production ({why}); see README.md, \"Configuration\".")
    return value


def database_from_url(url: str) -> dict[str, Any]:
    """The `default` database from a DATABASE_URL, tuned for SQLite when it names a file."""
    database: dict[str, Any] = dict(dj_database_url.parse(
        url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True))
    if database["ENGINE"] == "django.db.backends.sqlite3":
        # The web process and the worker share the file: wait for locks instead of failing at once, and
        # take the write lock at BEGIN so a read-then-write transaction cannot deadlock on upgrade.
        database["CONN_MAX_AGE"] = 0
        database["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # Tests that start a real worker process need the test database in a file both can open.
        database["TEST"] = {"NAME": str(VAR_DIR / "test-studio.sqlite3")}
    return database


# dev.py turns it on; everything else is written for it off.
DEBUG = False

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# The name emails and pages call the studio by; with SITE_URL's host it is written into the Site row
# (django.contrib.sites, which allauth's emails read) at every migrate (accounts/apps.py).
SITE_NAME = os.environ.get("SITE_NAME", "Studio")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django.contrib.humanize",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from our static files, no CDN
    "django_htmx",
    "template_partials",
    "allauth",
    "allauth.account",
    "storages",
    "accounts",
    "projects",
    "assets",
    "generations",
    "billing",
    "studio",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "studio.context_processors.credits",
            ],
        },
    },
]

# --- Database: DATABASES is set by dev.py (SQLite under var/ by default) and production.py (DATABASE_URL)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and broker: Redis when REDIS_URL is set, else no server at all --------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "studio"),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

BROKER_DIR = Path(os.environ.get("BROKER_DIR", VAR_DIR / "broker"))
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL or "filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem:"):
    # kombu's filesystem transport: a folder of message files, shared by the web process and the
    # worker on one machine. No server to run; good for one host, not for a cluster.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # How often an idle worker lists the folder. kombu's default of 1 s is most of a quick job's
        # wait (docs/BENCHMARKS.md); 0.1 s costs a few directory listings a second.
        "polling_interval": float(os.environ.get("BROKER_POLLING_INTERVAL", "0.1")),
    }
    for _sub in ("queue", "control"):
        (BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
else:
    # Redis re-delivers an unacknowledged message after this long; our own sweep (STALE_RUNNING_AFTER)
    # recovers jobs much sooner, so this only needs to outlast the longest provider job.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("BROKER_VISIBILITY_TIMEOUT", 3 * 3600)}
CELERY_TASK_IGNORE_RESULT = True  # job state lives in the Generation row, not in a result backend
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE = {
    "generations-sweep-stale": {
        "task": "generations.tasks.generations_sweep_stale",
        "schedule": timedelta(seconds=env_int("SWEEP_INTERVAL_SECONDS", 60)),
    },
    "provider-outcomes-prune": {
        "task": "generations.tasks.provider_outcomes_prune",
        "schedule": timedelta(hours=6),
    },
    # Assets in the trash for 30 days are deleted for good (assets.library.organise.assets_purge_trash).
    "assets-purge-trash": {
        "task": "assets.tasks.assets_purge_trash_task",
        "schedule": timedelta(days=1),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Queues per kind of work (docs/ARCHITECTURE.md, "Queues"): `generations` (the default: generation runs
# and parked jobs' polls, I/O-bound), `previews` (thumbnails and media renders, CPU-bound) and
# `housekeeping` (sweeps, prunes, file deletes). Each has its own worker (run_studio, docker-compose.yml),
# so a backlog of one kind never delays another: the sweep that recovers stuck jobs never waits behind
# long provider jobs, and a burst of uploads' previews never delays a submit.
CELERY_TASK_DEFAULT_QUEUE = "generations"
CELERY_TASK_ROUTES = {
    **{name: {"queue": "housekeeping"}
       for name in ("generations.tasks.generations_sweep_stale", "generations.tasks.provider_outcomes_prune",
                    "assets.tasks.assets_purge_trash_task", "assets.tasks.assets_files_delete")},
    "assets.tasks.asset_preview_make": {"queue": "previews"},
}

# --- Storage: local files under var/media unless S3 is configured -----------------------------------
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request when it is missing
STATICFILES_DIRS = [BASE_DIR / "static"]
AWS_STORAGE_BUCKET_NAME = os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
if AWS_STORAGE_BUCKET_NAME:
    # Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an
    # instance role). MediaS3Storage stores each object private with our sniffed ContentType and
    # "attachment"; downloads are presigned GETs (docs/assets/storage-and-export.md).
    _media_storage = {
        "BACKEND": "assets.storage.MediaS3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,  # MinIO, R2, any S3 protocol
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            "addressing_style": os.environ.get("AWS_S3_ADDRESSING_STYLE") or None,  # "path" for most MinIO
            "signature_version": "s3v4",
            "default_acl": None,  # private: no public-read, the bucket policy decides
            "querystring_auth": True,  # every URL is presigned
            # SigV4 presigned URLs live at most 7 days.
            "querystring_expire": min(env_int("AWS_QUERYSTRING_EXPIRE", 3600), 7 * 24 * 3600),
            # A custom (CDN) domain would hand out unsigned URLs, on which S3 ignores the
            # response-content-disposition/-type overrides. Off, whatever the environment says.
            "custom_domain": None,
            "file_overwrite": False,
            # django-storages reads an S3 file by downloading it into a SpooledTemporaryFile; with its
            # default of 0 that stays in memory whatever its size. Past this it spills to disk.
            "max_memory_size": env_int("AWS_S3_MAX_MEMORY_SIZE", 8 * 1024 * 1024),
        },
    }
else:
    _media_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
# Static files straight from disk (no collectstatic, no manifest to rebuild after each edit);
# production.py serves them hashed and compressed.
STORAGES = {
    "default": _media_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # larger uploads stream to a temporary file
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Larger uploads go to a temporary file through assets' handler, which stops writing a file as soon
# as its type (from the first 8 KB) is refused or it passes its kind's size limit (docs/assets/uploads.md).
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.MemoryFileUploadHandler",
                        "assets.uploads.handlers.AssetUploadHandler"]
# POST /api/v1/assets/export {"link": true} answers with a GET URL valid this long (assets/sharing/export.py).
EXPORT_LINK_SECONDS = env_int("EXPORT_LINK_SECONDS", 600)

# --- Accounts ----------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SITE_ID = 1
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "studio:dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_ADAPTER = "studio.adapters.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = os.environ.get("ACCOUNT_EMAIL_VERIFICATION", "optional")
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
STARTER_CREDITS = env_int("STARTER_CREDITS", 500)
REFERRAL_BONUS_CREDITS = env_int("REFERRAL_BONUS_CREDITS", 100)  # to each of the two users, once
# Only accounts this young (and verified, with no generation or purchase yet) may redeem a code.
REFERRAL_REDEEM_WINDOW_DAYS = env_int("REFERRAL_REDEEM_WINDOW_DAYS", 14)

EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if os.environ.get("EMAIL_HOST") else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "studio@localhost")

# --- API -----------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Tags each operation by area and summarises the standard actions (config/schema.py).
    "DEFAULT_SCHEMA_CLASS": "config.schema.StudioAutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.CursorPagination",
    # JSON with a capped body size and nesting depth (core/parsers.py); forms and multipart for uploads.
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.StudioJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Per-plan limits (billing.limits): API calls per minute, generation submits, uploads; 429 + Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["billing.limits.PlanRateThrottle"],
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Bearer",
    "TOKEN_TTL": None,  # personal API tokens live until revoked
    "TOKEN_PREFIX": "st_",
    "AUTO_REFRESH": False,
}
KNOX_TOKEN_MODEL = "accounts.ApiToken"
# knox's own migration creates its AuthToken table even when the model is swapped for ours, leaving
# an unused table with a foreign key to users that blocks TRUNCATE. Its app needs no migrations here.
MIGRATION_MODULES = {"knox": None}
SPECTACULAR_SETTINGS = {
    "TITLE": "Studio API",
    "DESCRIPTION": "Projects, generations across AI providers, assets and credits. "
    "Authenticate with `Authorization: Bearer <token>` (create tokens on the account page).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One tag per area of the API, in this order in the docs; config/schema.py assigns them.
    "TAGS": [
        {"name": "account", "description": "You, your API-visible settings, provider keys and referral code."},
        {"name": "projects", "description": "Projects hold assets, generations and budgets."},
        {"name": "models", "description": "The catalog of models across providers, with prices and availability."},
        {"name": "generations", "description": "Jobs: estimate, submit, follow, cancel."},
        {"name": "assets", "description": "Uploaded and generated files, their tags, lineage and storage use."},
        {"name": "collections", "description": "Ordered sets of assets across projects."},
        {"name": "shares", "description": "Public links to an asset, a collection or a project."},
        {"name": "exports", "description": "Zip archives of assets and projects."},
        {"name": "credits", "description": "Credit packs and purchases through Stripe Checkout."},
        {"name": "budgets", "description": "Spending caps per project and per account."},
        {"name": "notifications", "description": "Budget alerts and other messages for you."},
        {"name": "usage", "description": "Usage reports, as JSON or CSV."},
    ],
}

# --- Generations -------------------------------------------------------------------------------------
CREDITS_PER_USD = env_int("CREDITS_PER_USD", 100)  # one credit is one US cent at the default rate
GENERATION_POLL_INTERVAL = float(os.environ.get("GENERATION_POLL_INTERVAL", "0.25"))
# A job parked between polls (its state lives at the provider: fal, Replicate, Google's operations) is
# polled again this many seconds later, by whichever generation worker is free (generations/runner.py).
GENERATION_PARKED_POLL_INTERVAL = float(os.environ.get("GENERATION_PARKED_POLL_INTERVAL", "1.0"))
GENERATION_MAX_ATTEMPTS = env_int("GENERATION_MAX_ATTEMPTS", 3)
# After asking a provider to stop a job (the user's cancel, or the model's timeout), the runner polls on
# for at most this long (never longer than the model's timeout) to learn how it ended: a cancel is a
# request, and a job that finishes anyway is delivered and charged (docs/providers/fal.md, "Cancel").
GENERATION_CANCEL_GRACE = timedelta(seconds=env_int("GENERATION_CANCEL_GRACE_SECONDS", 300))
STALE_RUNNING_AFTER = timedelta(seconds=env_int("STALE_RUNNING_AFTER_SECONDS", 120))
STALE_QUEUED_AFTER = timedelta(seconds=env_int("STALE_QUEUED_AFTER_SECONDS", 300))

# --- Providers ---------------------------------------------------------------------------------------
# Platform keys, used for users who have not saved their own key for that provider.
PROVIDER_KEYS = {
    "fal": os.environ.get("FAL_KEY", ""),
    "replicate": os.environ.get("REPLICATE_API_TOKEN", ""),
    "google": os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY", ""),
    "openai": os.environ.get("OPENAI_API_KEY", ""),
    "anthropic": os.environ.get("ANTHROPIC_API_KEY", ""),
    "openrouter": os.environ.get("OPENROUTER_API_KEY", ""),
}
# Where each provider's API lives, for a gateway or proxy in front of it (and the test fakes). Empty:
# the official SDK's own default. fal's value is the queue host URL (https://queue.fal.run).
PROVIDER_BASE_URLS = {
    "fal": os.environ.get("FAL_QUEUE_URL", ""),
    "replicate": os.environ.get("REPLICATE_BASE_URL", ""),
    "google": os.environ.get("GOOGLE_GEMINI_BASE_URL", ""),
    "openai": os.environ.get("OPENAI_BASE_URL", ""),
    "anthropic": os.environ.get("ANTHROPIC_BASE_URL", ""),
    "openrouter": os.environ.get("OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1"),
}
# A CA bundle to trust for provider calls and output downloads instead of the system's (tests).
PROVIDER_CA_BUNDLE = os.environ.get("PROVIDER_CA_BUNDLE", "")
# Webhooks need a public https URL; without one the worker polls.
PROVIDER_WEBHOOKS = env_bool("PROVIDER_WEBHOOKS", SITE_URL.startswith("https://"))
REPLICATE_WEBHOOK_SECRET = os.environ.get("REPLICATE_WEBHOOK_SECRET", "")  # whsec_…
FAL_JWKS_URL = os.environ.get("FAL_JWKS_URL", "https://rest.alpha.fal.ai/.well-known/jwks.json")
# Users' own provider keys are encrypted with AES-256-GCM under these master keys: "id:base64key,…",
# the first one current (new and re-encrypted rows), the others still readable (rotation). Required in
# production; in development an empty value derives one from SECRET_KEY (accounts/crypto.py).
KEY_ENCRYPTION_KEYS = os.environ.get("KEY_ENCRYPTION_KEYS", "")
# Jobs on a user's own key charge no credits, or this percentage of the provider cost as a platform fee.
BYO_KEY_FEE_PERCENT = env_int("BYO_KEY_FEE_PERCENT", 0)
# The circuit breaker (generations/health.py): this many transient failures of one provider within
# the window open its circuit for the cooldown.
CIRCUIT_FAILURES = env_int("CIRCUIT_FAILURES", 5)
CIRCUIT_WINDOW = env_int("CIRCUIT_WINDOW_SECONDS", 120)
CIRCUIT_COOLDOWN = env_int("CIRCUIT_COOLDOWN_SECONDS", 60)
# Downloading outputs that providers return by URL.
OUTPUT_FETCH_TIMEOUT = float(os.environ.get("OUTPUT_FETCH_TIMEOUT", "60"))
OUTPUT_FETCH_MAX_REDIRECTS = env_int("OUTPUT_FETCH_MAX_REDIRECTS", 3)
# Loopback/private "host:port" pairs that may be fetched anyway. Only for the test fakes; empty in use.
OUTPUT_FETCH_PRIVATE_ALLOWLIST: list[str] = []

# --- Payments --------------------------------------------------------------------------------------------
# Stripe is off (no Buy credits) until a secret key is set. STRIPE_API_BASE points the SDK at a local
# fake in tests, or a proxy.
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")

# --- Security ------------------------------------------------------------------------------------------
# Behind a reverse proxy: the header it sets to the client's address (e.g. X-Real-IP), for the limits
# keyed by address (share passwords, sign-in). See core/client_ip.py.
CLIENT_IP_HEADER = os.environ.get("CLIENT_IP_HEADER", "")
RATELIMIT_IP_META_KEY = "core.client_ip.client_ip"
if CLIENT_IP_HEADER:
    ALLAUTH_TRUSTED_CLIENT_IP_HEADER = CLIENT_IP_HEADER
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# HTTPS (secure cookies, SSL redirect, HSTS) is production.py's.

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"},
                # libvips reports every operation's internals at INFO (dozens of lines per thumbnail).
                "pyvips": {"level": "WARNING"}},
}
