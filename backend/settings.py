"""Settings for the Qingdao carbon-inclusion backend: one module, driven by environment variables.

Defaults give the embedded quick start (SQLite under .local/, Celery tasks run in-process, local-memory
cache). DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis. DJANGO_ENV=production refuses to start
without a real SECRET_KEY, DATABASE_URL and REDIS_URL, and without FIELD_HASH_KEY, FIELD_ENCRYPTION_KEY and
JWT_SIGNING_KEY of their own (unset or equal to SECRET_KEY is refused). Every variable is documented in README.md and
.env.example.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = Path(os.environ.get("LOCAL_DIR", BASE_DIR / ".local"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DJANGO_ENV = os.environ.get("DJANGO_ENV", "development")
# pytest-xdist runs test processes side by side against one Redis: each gets its own key prefix and queue.
TEST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
PRODUCTION = DJANGO_ENV == "production"
INSECURE_KEY_PREFIX = "django-insecure-"
SECRET_KEY = os.environ.get("SECRET_KEY", INSECURE_KEY_PREFIX + "dev-only-not-for-production-use-0123456789abcdef")
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
# Keys for personal data at rest: a keyed hash for lookups and a Fernet key for encryption. They default to
# values derived from SECRET_KEY, so rotating SECRET_KEY without setting these would orphan stored data.
# In production both must be set and differ from SECRET_KEY (checked below), as must JWT_SIGNING_KEY.
FIELD_HASH_KEY = os.environ.get("FIELD_HASH_KEY", "") or SECRET_KEY
FIELD_ENCRYPTION_KEY = os.environ.get("FIELD_ENCRYPTION_KEY", "")
JWT_SIGNING_KEY = os.environ.get("JWT_SIGNING_KEY", "") or SECRET_KEY
# Bearer token Prometheus sends to scrape /metrics; unset: /metrics answers 401 to everyone.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

if PRODUCTION:
    problems = []
    if SECRET_KEY.startswith(INSECURE_KEY_PREFIX) or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        problems.append("SECRET_KEY must be a real secret (at least 50 characters, not the development default)")
    if not DATABASE_URL.startswith(("postgres://", "postgresql://")):
        problems.append("DATABASE_URL must point at PostgreSQL")
    if not REDIS_URL.startswith(("redis://", "rediss://")):
        problems.append("REDIS_URL must point at Redis")
    # Each key has its own job; falling back to SECRET_KEY would tie a SECRET_KEY rotation to unreadable data.
    for key_name in ("FIELD_HASH_KEY", "FIELD_ENCRYPTION_KEY", "JWT_SIGNING_KEY"):
        key_value = os.environ.get(key_name, "")
        if not key_value or key_value == SECRET_KEY:
            problems.append(f"{key_name} must be set and differ from SECRET_KEY")
    if problems:
        raise ImproperlyConfigured("Refusing to start with DJANGO_ENV=production: " + "; ".join(problems))

DEBUG = env_bool("DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "backend.core",
    "backend.accounts",
    "backend.methodologies",
    "backend.ledger",
    "backend.partners",
    "backend.actions",
    "backend.stats",
    "backend.offsets",
    "rewards",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "backend.core.logging.RequestIdMiddleware",
    "backend.core.middleware.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Sessions, Django's request.user and messages serve the admin: skipped under /api/ (JWT only there).
    "backend.core.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "backend.core.middleware.AuthenticationMiddleware",
    "backend.core.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# Largest request body (bytes) outside uploads; larger ones get 413 request_too_large before they are read.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("REQUEST_MAX_BYTES", 2_621_440)

ROOT_URLCONF = "backend.urls"
WSGI_APPLICATION = "backend.wsgi.application"
APPEND_SLASH = False

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

# --- Database: PostgreSQL is the system of record; SQLite only for the embedded quick start. ---
DB_HEALTH_CHECK_IDLE_S = float(os.environ.get("DB_HEALTH_CHECK_IDLE_S", "1"))  # backend/core/db/postgresql/base.py
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Django's PostgreSQL backend, with the health check skipped on a connection that worked a moment ago (the
    # module says why; 0 checks before every request as Django does).
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "backend.core.db.postgresql"
    if os.environ.get("DB_SERVER_SIDE_BINDING", "0") == "1":
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=env_int("DB_PREPARE_THRESHOLD", 5)
        )
else:
    LOCAL_DIR.mkdir(parents=True, exist_ok=True)
    # Concurrent requests on `make run` (runserver's threads) must wait their turn, never fail "database is
    # locked": WAL lets readers run beside the one writer, BEGIN IMMEDIATE takes the write lock up front (a deferred
    # transaction upgrading from read to write fails at once instead of waiting), and the busy timeout is the wait.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": LOCAL_DIR / "db.sqlite3",
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON",
                "transaction_mode": "IMMEDIATE",
                "timeout": env_int("SQLITE_BUSY_TIMEOUT_S", 30),
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, throttles, lockout counters: Redis when configured, local memory otherwise. ---
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "qd") + TEST_WORKER,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["backend.accounts.auth.PhoneBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Internationalisation: stored in UTC, calendar days in Asia/Shanghai. ---
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = LOCAL_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", LOCAL_DIR / "media"))
MEDIA_URL = "media/"

# --- REST framework ---
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["backend.accounts.authentication.CachedUserJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: a view that takes an upload names its multipart parser itself (the schema then advertises
    # form bodies exactly where they are accepted).
    "DEFAULT_PARSER_CLASSES": ["backend.core.parsers.JSONParser"],
    # DRF's JSON bytes, written by orjson where they are the same (backend/core/renderers.py).
    "DEFAULT_RENDERER_CLASSES": [
        "backend.core.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # DRF's negotiation, its answer for the usual Accept headers looked up (backend/core/negotiation.py).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "backend.core.negotiation.ContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "backend.core.pagination.CursorPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "backend.core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "backend.core.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "backend.core.throttling.AnonRateThrottle",
        "backend.core.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("THROTTLE_ANON", "120/min"),
        "user": os.environ.get("THROTTLE_USER", "600/min"),
        "partner": os.environ.get("THROTTLE_PARTNER", "1200/min"),
    },
    # How many reverse proxies sit in front of gunicorn: X-Forwarded-For is trusted only that deep.
    "NUM_PROXIES": env_int("NUM_PROXIES", 1 if PRODUCTION else 0),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 5)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 14)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "USER_AUTHENTICATION_RULE": "backend.accounts.auth.user_may_authenticate",
}

# How long an access token's user row stays cached in Redis (backend/accounts/authentication.py); every change to
# the row drops it at once. 0 reads the row on every request (the default without Redis: a local-memory cache is per
# process and could not be dropped in the others).
AUTH_USER_CACHE_SECONDS = env_int("AUTH_USER_CACHE_SECONDS", 30 if REDIS_URL else 0)
# Login brute-force lockout: attempts per phone number within the window.
LOGIN_MAX_ATTEMPTS = env_int("LOGIN_MAX_ATTEMPTS", 5)
LOGIN_WINDOW_SECONDS = env_int("LOGIN_WINDOW_SECONDS", 15 * 60)
# Signed partner requests: how far X-Timestamp may be from now.
PARTNER_SIGNATURE_MAX_SKEW_S = env_int("PARTNER_SIGNATURE_MAX_SKEW_S", 300)
# Failed partner authentications allowed per client address / per claimed partner id within the window (429 after).
PARTNER_AUTH_FAILURES_PER_ADDRESS = env_int("PARTNER_AUTH_FAILURES_PER_ADDRESS", 20)
PARTNER_AUTH_FAILURES_PER_PARTNER = env_int("PARTNER_AUTH_FAILURES_PER_PARTNER", 50)
PARTNER_AUTH_FAILURE_WINDOW_S = env_int("PARTNER_AUTH_FAILURE_WINDOW_S", 60)
PRIVACY_POLICY_VERSION = os.environ.get("PRIVACY_POLICY_VERSION", "2026-11-01")
# Ed25519 seed (32 bytes, base64url) signing vouchers' QR payloads; empty: derived from SECRET_KEY (development).
REWARDS_QR_SIGNING_KEY = os.environ.get("REWARDS_QR_SIGNING_KEY", "")

SPECTACULAR_SETTINGS = {
    "TITLE": "青碳行 Qingdao carbon-inclusion API",
    "DESCRIPTION": (
        "Backend of Qingdao's citizen carbon-inclusion (碳普惠) platform. Every error has one shape: "
        '`{"type": "validation_error" | "client_error" | "server_error", "errors": [{"code", "detail", "attr"}]}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ActionStatusEnum": "backend.actions.models.Action.Status",
        "SubjectKindEnum": "backend.actions.models.SubjectKind",
        "ConsentKindEnum": "backend.accounts.models.Consent.Kind",
        # The error shape's `type` per status (backend/core/schema.py); "server_error" is also the 500 code.
        "ClientErrorTypeEnum": ["client_error"],
        "RequestErrorTypeEnum": ["client_error", "validation_error"],
        "ServerErrorEnum": ["server_error"],
        "RetireRequestedStatusEnum": ["retire_requested"],
        "RewardStatusEnum": "rewards.models.Reward.Status",
        "RewardInitialStatusEnum": [("active", "Active"), ("paused", "Paused")],
        "VoucherStatusEnum": "rewards.models.Voucher.Status",
    },
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]",
}

# --- Celery: Redis broker; tasks run in-process in the embedded default. ---
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "celery") + TEST_WORKER

# --- Offsets and Stripe (issue 15). Without STRIPE_SECRET_KEY the quick start talks to a local localstripe. ---
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "" if PRODUCTION else "whsec_local_development")
STRIPE_API_BASE = os.environ.get(
    "STRIPE_API_BASE", "https://api.stripe.com" if STRIPE_SECRET_KEY else "http://127.0.0.1:8420"
)
STRIPE_SECRET_KEY = STRIPE_SECRET_KEY or ("" if PRODUCTION else "sk_test_localstripe")
# localstripe cannot take a payment method at confirmation: outside production a test payment method (e.g.
# pm_card_visa) may be attached when the PaymentIntent is created, so a script can confirm it server-side.
STRIPE_TEST_PAYMENT_METHOD = "" if PRODUCTION else os.environ.get("STRIPE_TEST_PAYMENT_METHOD", "pm_card_visa")
STRIPE_WEBHOOK_TOLERANCE_S = env_int("STRIPE_WEBHOOK_TOLERANCE_S", 300)
# A webhook event whose processing raised this many times ends `failed` (admin) instead of being retried forever.
STRIPE_EVENT_MAX_ATTEMPTS = env_int("STRIPE_EVENT_MAX_ATTEMPTS", 10)
OFFSET_PRICE_CNY_PER_T = os.environ.get("OFFSET_PRICE_CNY_PER_T", "43.50")
OFFSET_CURRENCY = "CNY"
OFFSET_RESERVATION_MINUTES = env_int("OFFSET_RESERVATION_MINUTES", 30)
OFFSET_BUFFER_PERCENT = os.environ.get("OFFSET_BUFFER_PERCENT", "5")
OFFSET_MIN_AMOUNT_FEN = env_int("OFFSET_MIN_AMOUNT_FEN", 400)
OFFSET_PUBLIC_BASE_URL = os.environ.get("OFFSET_PUBLIC_BASE_URL", "http://127.0.0.1:8000")
OFFSET_PAYOUT_PROVIDER = os.environ.get(
    "OFFSET_PAYOUT_PROVIDER", "backend.offsets.payouts.StripeConnectTransferProvider"
)
# A settlement being transferred is claimed for this long; a worker that died mid-transfer is retried after it.
SETTLEMENT_PAYOUT_LEASE_SECONDS = env_int("SETTLEMENT_PAYOUT_LEASE_SECONDS", 900)
if PRODUCTION and not (STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET):
    raise ImproperlyConfigured(
        "Refusing to start with DJANGO_ENV=production: STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET must be set"
    )

# --- Security (production) ---
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes talk plain HTTP inside the cluster

# --- Logging: JSON with a request id in production; personal data scrubbed everywhere. ---
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOG_JSON = env_bool("LOG_JSON", PRODUCTION)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "backend.core.logging.RequestIdFilter"},
        "redact": {"()": "backend.core.logging.RedactingFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_JSON else "plain",
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
    },
}
