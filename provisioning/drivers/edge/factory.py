"""Build the edge driver that the settings select."""

from typing import Any

from provisioning.drivers.edge.base import EdgeDriver, NullEdgeDriver
from provisioning.drivers.edge.caddy import CaddyEdgeDriver
from provisioning.errors import PermanentError


def build_edge_driver(settings_obj: Any) -> EdgeDriver:
    """Return the driver named by ``HOSTYARD_EDGE_DRIVER``: "caddy" or "none".

    ``settings_obj`` is ``django.conf.settings`` or any object with the same
    attributes. Raises ``PermanentError`` for an unknown driver name.
    """
    name = str(getattr(settings_obj, "HOSTYARD_EDGE_DRIVER", "caddy")).strip().lower()
    if name == "none":
        return NullEdgeDriver()
    if name == "caddy":
        return CaddyEdgeDriver(
            admin_url=settings_obj.HOSTYARD_CADDY_ADMIN_URL,
            http_port=int(settings_obj.HOSTYARD_EDGE_HTTP_PORT),
            https_port=int(settings_obj.HOSTYARD_EDGE_HTTPS_PORT),
        )
    raise PermanentError(
        f"Unknown edge driver {name!r} in HOSTYARD_EDGE_DRIVER: set it to 'caddy' or 'none'.",
        code="edge_driver_unknown",
    )
