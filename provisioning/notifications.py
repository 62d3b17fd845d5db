"""Quota notifications: a log line, and a JSON POST to the configured webhook.

The webhook is a hook for the business's own mailer or ticket system. Delivery is
best effort: a failed POST is logged and not retried, because the same state is
recorded as a ``SiteEvent`` and shown by the usage API.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import requests
import structlog
from django.conf import settings
from django.utils import timezone

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Hostyard-Signature"


@dataclass(frozen=True)
class Notification:
    """One quota event of one site, as sent to the webhook."""

    event: str
    site_uuid: str
    hostname: str
    organization: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "site": self.site_uuid,
            "hostname": self.hostname,
            "organization": self.organization,
            "message": self.message,
            "data": self.data,
            "sent_at": timezone.now().isoformat(),
        }


def sign(body: bytes, secret: str) -> str:
    """Return the signature header value: ``sha256=<hex HMAC-SHA256 of the body>``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def send(notifications: list[Notification]) -> int:
    """Log each notification and POST it to ``HOSTYARD_QUOTA_WEBHOOK_URL`` if one is set.

    A failed delivery is logged, not raised. Returns how many POSTs the receiver
    accepted with a 2xx status. Call it outside database transactions.
    """
    url = settings.HOSTYARD_QUOTA_WEBHOOK_URL
    secret = settings.HOSTYARD_QUOTA_WEBHOOK_SECRET
    delivered = 0
    for notification in notifications:
        log.warning(
            "quota notification",
            quota_event=notification.event,
            site=notification.site_uuid,
            organization=notification.organization,
            detail=notification.message,
        )
        if not url:
            continue

        body = json.dumps(notification.payload(), sort_keys=True).encode()
        headers = {"Content-Type": "application/json"}
        if secret:
            headers[SIGNATURE_HEADER] = sign(body, secret)
        try:
            response = requests.post(
                url,
                data=body,
                headers=headers,
                timeout=settings.HOSTYARD_QUOTA_WEBHOOK_TIMEOUT_SECONDS,
            )
        except requests.RequestException as exc:
            log.error("quota webhook failed", site=notification.site_uuid, error=str(exc))
            continue
        if response.ok:
            delivered += 1
        else:
            log.error(
                "quota webhook rejected",
                site=notification.site_uuid,
                status=response.status_code,
            )
    return delivered
