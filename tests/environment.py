"""Test environment defaults, loaded by ``-p tests.environment`` before Django reads settings.

They point the suite at the local PostgreSQL, a Redis database of its own and a
deployment label of its own, so a running quickstart is never disturbed.
"""

import os

DEFAULTS = {
    "DATABASE_URL": "postgres://hostyard:hostyard@127.0.0.1:5432/hostyard",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15",
    # One label per test session: concurrent sessions on one engine clean up only their own.
    "HOSTYARD_DEPLOYMENT": f"test-{os.getpid()}",
    "HOSTYARD_SITE_NETWORK": "hostyard-test-sites",
    "HOSTYARD_HEALTH_TIMEOUT_SECONDS": "30",
    # DNS and edge steps skip unless a test points these at the session's Knot and Caddy.
    "HOSTYARD_DNS_DRIVER": "none",
    "HOSTYARD_EDGE_DRIVER": "none",
}

for name, value in DEFAULTS.items():
    os.environ.setdefault(name, value)
