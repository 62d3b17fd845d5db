"""Hostyard settings, read from the environment (12-factor).

Every default works on a developer machine where the project's own scripts started
the local services on loopback. Nothing here defaults to an address off this machine:
production deployments set the provider URLs explicitly.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_DIR = Path(environ.Env().str("HOSTYARD_RUN_DIR", default=str(BASE_DIR / ".run")))

env = environ.Env()

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="insecure-development-key-change-me")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "hosting",
    "provisioning",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# SQLite is the embedded default for the quickstart; tests and production use PostgreSQL.
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{RUN_DIR / 'hostyard.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the API and a worker share the file.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = RUN_DIR / "static"

# --- REST API -----------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["hosting.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["hosting.api.permissions.HasOrganizationKey"],
    "DEFAULT_PARSER_CLASSES": ["hosting.api.parsers.SafeJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "hosting.api.pagination.SitePagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "hosting.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Hostyard API",
    "DESCRIPTION": "Sign up, change and terminate hosted sites; follow their operations.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Celery -------------------------------------------------------------------------

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "reap-stalled-operations": {
        "task": "provisioning.tasks.reap_operations",
        "schedule": env.float("HOSTYARD_REAPER_INTERVAL_SECONDS", default=15.0),
    },
    "reconcile-sites": {
        "task": "provisioning.tasks.reconcile",
        "schedule": env.float("HOSTYARD_RECONCILE_INTERVAL_SECONDS", default=60.0),
    },
    "purge-expired-sites": {
        "task": "provisioning.tasks.open_due_purges",
        "schedule": env.float("HOSTYARD_PURGE_INTERVAL_SECONDS", default=3600.0),
    },
    "scan-usage": {
        "task": "provisioning.tasks.scan_usage",
        "schedule": env.float("HOSTYARD_USAGE_SCAN_INTERVAL_SECONDS", default=300.0),
    },
    # Re-check pending custom domains and activate verified ones when they are due.
    "process-domains": {
        "task": "hosting.tasks.process_domains",
        "schedule": env.float("HOSTYARD_DOMAIN_TASK_INTERVAL_SECONDS", default=30.0),
    },
    "renew-certificates": {
        "task": "hosting.tasks.renew_certificates",
        "schedule": env.float("HOSTYARD_CERT_RENEW_INTERVAL_SECONDS", default=3600.0),
    },
    # Separate from renewal, so an expiry alert fires even when renewal never runs.
    "check-certificate-expiry": {
        "task": "hosting.tasks.check_certificate_expiry",
        "schedule": env.float("HOSTYARD_CERT_ALERT_INTERVAL_SECONDS", default=3600.0),
    },
}

# --- Provisioning -------------------------------------------------------------------

# Operations whose worker stopped renewing the lease this long ago are taken over.
HOSTYARD_OPERATION_LEASE_SECONDS = env.int("HOSTYARD_OPERATION_LEASE_SECONDS", default=120)
# Transient step errors are retried with exponential backoff and jitter, this many times.
HOSTYARD_STEP_MAX_ATTEMPTS = env.int("HOSTYARD_STEP_MAX_ATTEMPTS", default=6)
HOSTYARD_RETRY_BASE_SECONDS = env.float("HOSTYARD_RETRY_BASE_SECONDS", default=2.0)
HOSTYARD_RETRY_MAX_SECONDS = env.float("HOSTYARD_RETRY_MAX_SECONDS", default=300.0)

HOSTYARD_PLATFORM_DOMAIN = env.str("HOSTYARD_PLATFORM_DOMAIN", default="sites.hostyard.test")
# The address customers' DNS records must point at: the edge proxy's public IPv4 / IPv6.
HOSTYARD_PUBLIC_IPV4 = env.str("HOSTYARD_PUBLIC_IPV4", default="127.0.0.1")
HOSTYARD_PUBLIC_IPV6 = env.str("HOSTYARD_PUBLIC_IPV6", default="")

# Name of this control plane on shared engines; every container and volume carries it.
HOSTYARD_DEPLOYMENT = env.str("HOSTYARD_DEPLOYMENT", default="default")

# Container runtime: the local Docker Engine.
DOCKER_HOST = env.str("DOCKER_HOST", default="unix:///var/run/docker.sock")
HOSTYARD_DOCKER_TIMEOUT_SECONDS = env.int("HOSTYARD_DOCKER_TIMEOUT_SECONDS", default=60)
# Customer containers join this bridge network. Internal by default: no egress.
HOSTYARD_SITE_NETWORK = env.str("HOSTYARD_SITE_NETWORK", default="hostyard-sites")
HOSTYARD_SITE_NETWORK_INTERNAL = env.bool("HOSTYARD_SITE_NETWORK_INTERNAL", default=True)
# A resolver address inside containers where nothing listens, so apps cannot resolve names.
HOSTYARD_CONTAINER_DNS = env.list("HOSTYARD_CONTAINER_DNS", default=["127.0.0.1"])
HOSTYARD_HEALTH_TIMEOUT_SECONDS = env.int("HOSTYARD_HEALTH_TIMEOUT_SECONDS", default=120)

# DNS driver: "rfc2136", "cloudflare" or "none" (no records are published).
HOSTYARD_DNS_DRIVER = env.str("HOSTYARD_DNS_DRIVER", default="rfc2136")
HOSTYARD_DNS_TTL = env.int("HOSTYARD_DNS_TTL", default=300)
# RFC 2136: the primary server taking updates, as host:port, and its TSIG key.
HOSTYARD_RFC2136_SERVER = env.str("HOSTYARD_RFC2136_SERVER", default="127.0.0.1:5353")
HOSTYARD_RFC2136_ZONE = env.str("HOSTYARD_RFC2136_ZONE", default=HOSTYARD_PLATFORM_DOMAIN)
HOSTYARD_RFC2136_TSIG_NAME = env.str("HOSTYARD_RFC2136_TSIG_NAME", default="hostyard")
HOSTYARD_RFC2136_TSIG_SECRET = env.str("HOSTYARD_RFC2136_TSIG_SECRET", default="")
HOSTYARD_RFC2136_TSIG_ALGORITHM = env.str("HOSTYARD_RFC2136_TSIG_ALGORITHM", default="hmac-sha256")
# Cloudflare: no default base URL, so nothing talks to a public API unless configured.
CLOUDFLARE_API_TOKEN = env.str("CLOUDFLARE_API_TOKEN", default="")
HOSTYARD_CLOUDFLARE_BASE_URL = env.str("HOSTYARD_CLOUDFLARE_BASE_URL", default="")
HOSTYARD_CLOUDFLARE_ZONE = env.str("HOSTYARD_CLOUDFLARE_ZONE", default=HOSTYARD_PLATFORM_DOMAIN)
HOSTYARD_CLOUDFLARE_PROXIED = env.bool("HOSTYARD_CLOUDFLARE_PROXIED", default=False)
# Resolvers used to check customers' domains, as host:port. Empty means the RFC 2136 server.
HOSTYARD_DOMAIN_CHECK_RESOLVERS = env.list("HOSTYARD_DOMAIN_CHECK_RESOLVERS", default=[])
# A custom domain that does not point at the platform within this window fails.
HOSTYARD_DOMAIN_CHECK_WINDOW_SECONDS = env.int(
    "HOSTYARD_DOMAIN_CHECK_WINDOW_SECONDS", default=72 * 3600
)
# Re-checks of a pending domain start this far apart and double up to the maximum.
HOSTYARD_DOMAIN_CHECK_BASE_SECONDS = env.float("HOSTYARD_DOMAIN_CHECK_BASE_SECONDS", default=60.0)
HOSTYARD_DOMAIN_CHECK_MAX_SECONDS = env.float("HOSTYARD_DOMAIN_CHECK_MAX_SECONDS", default=3600.0)

# ACME: the local Pebble server by default. Production sets Let's Encrypt's directory.
HOSTYARD_ACME_DIRECTORY_URL = env.str(
    "HOSTYARD_ACME_DIRECTORY_URL", default="https://127.0.0.1:14000/dir"
)
# CA bundle that verifies the ACME server's own HTTPS (Pebble's is self-signed).
HOSTYARD_ACME_CA_BUNDLE = env.str("HOSTYARD_ACME_CA_BUNDLE", default="")
HOSTYARD_ACME_CONTACT_EMAIL = env.str("HOSTYARD_ACME_CONTACT_EMAIL", default="")
# The identifier CAA records must allow, e.g. "letsencrypt.org".
HOSTYARD_ACME_CAA_IDENTITY = env.str("HOSTYARD_ACME_CAA_IDENTITY", default="pebble.letsencrypt.org")
HOSTYARD_CERT_RENEW_DAYS = env.int("HOSTYARD_CERT_RENEW_DAYS", default=30)
HOSTYARD_CERT_ALERT_DAYS = env.int("HOSTYARD_CERT_ALERT_DAYS", default=14)
# One DNS-01 wildcard certificate for the platform zone instead of one HTTP-01 certificate
# per site hostname. Needs a DNS driver other than "none".
HOSTYARD_ACME_PLATFORM_WILDCARD = env.bool("HOSTYARD_ACME_PLATFORM_WILDCARD", default=True)
# After a failed validation, the next order for the same names waits this long, doubling
# per failure up to the maximum. A rate limit without Retry-After waits the maximum.
HOSTYARD_CERT_RETRY_BASE_SECONDS = env.float("HOSTYARD_CERT_RETRY_BASE_SECONDS", default=300.0)
HOSTYARD_CERT_RETRY_MAX_SECONDS = env.float("HOSTYARD_CERT_RETRY_MAX_SECONDS", default=6 * 3600.0)
# CA file that verify_https trusts for the edge's certificates; empty means the system's
# trust store (right for Let's Encrypt). Tests point it at Pebble's current root.
HOSTYARD_HTTPS_VERIFY_CA_BUNDLE = env.str("HOSTYARD_HTTPS_VERIFY_CA_BUNDLE", default="")
# Fernet key (urlsafe base64, 32 bytes) that encrypts private keys at rest.
HOSTYARD_ENCRYPTION_KEY = env.str("HOSTYARD_ENCRYPTION_KEY", default="")

# Edge proxy driver: "caddy" or "none".
HOSTYARD_EDGE_DRIVER = env.str("HOSTYARD_EDGE_DRIVER", default="caddy")
HOSTYARD_CADDY_ADMIN_URL = env.str("HOSTYARD_CADDY_ADMIN_URL", default="http://127.0.0.1:2019")
HOSTYARD_EDGE_HTTP_PORT = env.int("HOSTYARD_EDGE_HTTP_PORT", default=8080)
HOSTYARD_EDGE_HTTPS_PORT = env.int("HOSTYARD_EDGE_HTTPS_PORT", default=8443)

# --- Site lifecycle -----------------------------------------------------------------

# Volume archives (backups, snapshots before updates) are written here by workers.
HOSTYARD_BACKUP_DIR = Path(env.str("HOSTYARD_BACKUP_DIR", default=str(RUN_DIR / "backups")))
# Days a terminated site keeps its volume and backups; 0 purges them at termination.
HOSTYARD_RETENTION_DAYS = env.int("HOSTYARD_RETENTION_DAYS", default=14)
# Image of the short-lived helper containers that read and write volume archives.
HOSTYARD_HELPER_IMAGE = env.str("HOSTYARD_HELPER_IMAGE", default="hostyard/busybox:1")
# Seconds a labelled container that no live site owns is kept (and reported) before
# the reconciler removes it.
HOSTYARD_STRAY_GRACE_SECONDS = env.int("HOSTYARD_STRAY_GRACE_SECONDS", default=3600)

# --- Quotas and usage ---------------------------------------------------------------

# The usage scan keeps this many samples per site and deletes older ones.
HOSTYARD_USAGE_SAMPLES_KEPT = env.int("HOSTYARD_USAGE_SAMPLES_KEPT", default=288)
# Source of container memory readings: "auto" (cgroup files if readable, else engine
# stats), "cgroup", "stats" or "off".
HOSTYARD_USAGE_MEMORY_SOURCE = env.str("HOSTYARD_USAGE_MEMORY_SOURCE", default="auto")
HOSTYARD_CGROUP_ROOT = env.str("HOSTYARD_CGROUP_ROOT", default="/sys/fs/cgroup")
# Percentages of a site's disk quota at which a warning is recorded and sent.
HOSTYARD_DISK_WARNING_PERCENTS = env.list(
    "HOSTYARD_DISK_WARNING_PERCENTS", cast=int, default=[80, 90]
)
# Seconds a site may stay above its disk quota before it is suspended.
HOSTYARD_DISK_GRACE_SECONDS = env.float("HOSTYARD_DISK_GRACE_SECONDS", default=86400.0)
# A container whose engine RestartCount reaches this is stopped and its site suspended.
HOSTYARD_RESTART_LOOP_COUNT = env.int("HOSTYARD_RESTART_LOOP_COUNT", default=10)
# Quota notifications are POSTed here as JSON; empty sends nothing.
HOSTYARD_QUOTA_WEBHOOK_URL = env.str("HOSTYARD_QUOTA_WEBHOOK_URL", default="")
# If set, each notification carries X-Hostyard-Signature: sha256=<HMAC of the body>.
HOSTYARD_QUOTA_WEBHOOK_SECRET = env.str("HOSTYARD_QUOTA_WEBHOOK_SECRET", default="")
HOSTYARD_QUOTA_WEBHOOK_TIMEOUT_SECONDS = env.float(
    "HOSTYARD_QUOTA_WEBHOOK_TIMEOUT_SECONDS", default=5.0
)

# --- Logging ------------------------------------------------------------------------

LOG_LEVEL = env.str("HOSTYARD_LOG_LEVEL", default="INFO")
LOG_JSON = env.bool("HOSTYARD_LOG_JSON", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {"()": "config.logging.build_formatter", "render_json": LOG_JSON},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": "INFO"},
    },
}
