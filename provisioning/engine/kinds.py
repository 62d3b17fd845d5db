"""Operation kinds: their ordered steps and how they move the site's status."""

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from hosting.models import Site, SiteStatus
from hosting.models.sites import InvalidTransition
from provisioning.models import OperationKind

log = structlog.get_logger(__name__)

SiteHook = Callable[[Site, str], None]


def _move(target: str, expected: list[str]) -> SiteHook:
    def hook(site: Site, reason: str) -> None:
        try:
            site.transition(target=target, expected=expected, reason=reason)
        except InvalidTransition as exc:
            # A later request (e.g. terminate) moved the site on; that request wins.
            log.info("site transition skipped", site=str(site.uuid), reason=str(exc))

    return hook


def _suspended(site: Site, reason: str) -> None:
    """Move the site to suspended, naming its suspend reason in ``status_reason``."""
    why = f"Suspended: {site.suspend_reason}." if site.suspend_reason else "Suspended."
    _move(SiteStatus.SUSPENDED, [SiteStatus.RUNNING, SiteStatus.SUSPENDED])(site, why)


def _nothing(site: Site, reason: str) -> None:
    return None


@dataclass(frozen=True)
class KindPolicy:
    steps: list[str]
    on_start: SiteHook = _nothing
    on_success: SiteHook = _nothing
    on_failure: SiteHook = _nothing
    # Undo the steps that succeeded when the operation fails for good.
    compensate: bool = False
    extra: dict[str, object] = field(default_factory=dict)


from provisioning.engine.lifecycle_kinds import LIFECYCLE_KINDS  # noqa: E402

KINDS: dict[str, KindPolicy] = {
    OperationKind.CREATE: KindPolicy(
        steps=[
            "create_volume",
            "create_container",
            "start_container",
            "wait_healthy",
            "publish_dns",
            "issue_certificate",
            "configure_route",
            "verify_https",
        ],
        on_start=_move(SiteStatus.PROVISIONING, [SiteStatus.PENDING, SiteStatus.PROVISIONING]),
        on_success=_move(SiteStatus.RUNNING, [SiteStatus.PROVISIONING]),
        on_failure=_move(SiteStatus.FAILED, [SiteStatus.PENDING, SiteStatus.PROVISIONING]),
        compensate=True,
    ),
    OperationKind.TERMINATE: KindPolicy(
        # The volume and backups are removed here only when the operation's params
        # request a purge at once (retention 0). Otherwise a purge operation follows.
        steps=[
            "remove_route",
            "remove_dns",
            "remove_container",
            "purge_volume",
            "purge_backups",
            "schedule_purge",
        ],
        on_start=_move(SiteStatus.TERMINATING, SiteStatus.live()),
        on_success=_move(SiteStatus.TERMINATED, [SiteStatus.TERMINATING]),
    ),
    **LIFECYCLE_KINDS,
}
