"""The catalog Hostyard ships: real app entries, a locally built demo app, and plans.

Image names are the apps' public ones; a deployment points an entry at a local
mirror or build with ``load_catalog(image_overrides=...)`` or in the admin. Each
app's capability list is the minimum its image needs after all are dropped.
"""

from typing import Any

from django.db import transaction

from hosting.models import App, Plan

# Turns off the apps' own calls to the internet (update checks, avatars, pings).
GHOST_PRIVACY = {
    "privacy__useUpdateCheck": "false",
    "privacy__useGravatar": "false",
    "privacy__useRpcPing": "false",
}

APPS: list[dict[str, Any]] = [
    {
        "slug": "demo",
        "name": "Hostyard demo",
        "image": "hostyard/demo",
        "default_version": "1.0",
        "internal_port": 8080,
        "data_path": "/data",
        "health_path": "/healthz",
        "min_memory_mb": 16,
        "capabilities": [],
        "start_timeout_seconds": 60,
    },
    {
        "slug": "ghost",
        "name": "Ghost",
        "image": "ghost",
        "default_version": "5",
        "internal_port": 2368,
        "data_path": "/var/lib/ghost/content",
        "health_path": "/ghost/api/admin/site/",
        "min_memory_mb": 256,
        "capabilities": ["CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER"],
        "environment": {
            "url": "https://{hostname}",
            "database__client": "sqlite3",
            "database__connection__filename": "/var/lib/ghost/content/data/ghost.db",
            **GHOST_PRIVACY,
        },
        "start_timeout_seconds": 180,
    },
    {
        "slug": "wordpress",
        "name": "WordPress",
        "image": "wordpress",
        "default_version": "6.1",
        "internal_port": 80,
        "data_path": "/var/www/html",
        "health_path": "/wp-includes/images/blank.gif",
        "min_memory_mb": 256,
        # KILL: the start script, running as root, signals MariaDB and Apache after they
        # switch to their own users (seen with a Debian-based WordPress 6.1 build).
        "capabilities": ["CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "NET_BIND_SERVICE", "KILL"],
        "environment": {
            "WORDPRESS_CONFIG_EXTRA": "define('WP_HTTP_BLOCK_EXTERNAL', true); "
            "define('AUTOMATIC_UPDATER_DISABLED', true); define('DISABLE_WP_CRON', true);",
        },
        "start_timeout_seconds": 180,
    },
    {
        "slug": "tei-publisher",
        "name": "eXist-db with TEI Publisher",
        "image": "existdb/teipublisher",
        "default_version": "9.0.0",
        "internal_port": 8080,
        "data_path": "/exist/data",
        "health_path": "/exist/apps/tei-publisher/index.html",
        "min_memory_mb": 1024,
        "capabilities": [],
        "start_timeout_seconds": 300,
    },
    {
        "slug": "etherpad",
        "name": "Etherpad",
        "image": "etherpad/etherpad",
        "default_version": "2.2.6",
        "internal_port": 9001,
        "data_path": "/opt/etherpad-lite/var",
        "health_path": "/api",
        "min_memory_mb": 256,
        "capabilities": [],
        "start_timeout_seconds": 120,
    },
    {
        "slug": "discourse",
        "name": "Discourse",
        "image": "bitnami/discourse",
        "default_version": "3.3.2",
        "internal_port": 3000,
        "data_path": "/bitnami/discourse",
        "health_path": "/srv/status",
        "min_memory_mb": 2048,
        "capabilities": ["CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER"],
        "start_timeout_seconds": 600,
    },
]

PLANS: list[dict[str, Any]] = [
    {
        "slug": "micro",
        "name": "Micro",
        "memory_mb": 64,
        "cpus": "0.25",
        "pids_limit": 64,
        "disk_mb": 256,
        "max_sites_per_customer": 3,
    },
    {
        "slug": "starter",
        "name": "Starter",
        "memory_mb": 512,
        "cpus": "0.5",
        "pids_limit": 256,
        "disk_mb": 2048,
        "max_sites_per_customer": 3,
    },
    {
        "slug": "standard",
        "name": "Standard",
        "memory_mb": 1536,
        "cpus": "1.0",
        "pids_limit": 512,
        "disk_mb": 10240,
        "max_sites_per_customer": 5,
    },
    {
        "slug": "large",
        "name": "Large",
        "memory_mb": 4096,
        "cpus": "2.0",
        "pids_limit": 1024,
        "disk_mb": 40960,
        "max_sites_per_customer": 10,
    },
]


def load_catalog(*, image_overrides: dict[str, str] | None = None) -> tuple[int, int]:
    """Create or update the shipped apps and plans; return (apps, plans) written.

    ``image_overrides`` maps an app slug to ``repository[:tag]``, e.g. a local build.
    Idempotent: running it again updates the same rows.
    """
    overrides = image_overrides or {}
    with transaction.atomic():
        for entry in APPS:
            fields = {key: value for key, value in entry.items() if key != "slug"}
            if entry["slug"] in overrides:
                repository, _, tag = overrides[entry["slug"]].partition(":")
                fields["image"] = repository
                if tag:
                    fields["default_version"] = tag
            App.objects.update_or_create(slug=entry["slug"], defaults=fields)
        for entry in PLANS:
            fields = {key: value for key, value in entry.items() if key != "slug"}
            Plan.objects.update_or_create(slug=entry["slug"], defaults=fields)
    return len(APPS), len(PLANS)
