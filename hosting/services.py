"""Business rules for sites: sign up, suspend, unsuspend and terminate.

These functions change desired state and open operations; workers do the rest.
They raise ``ServiceError`` with a stable code, which the API renders as 4xx.
"""

import re
import secrets

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction

from hosting.errors import ServiceError
from hosting.models import App, Customer, DesiredStatus, Organization, Plan, Site, SiteStatus
from provisioning import quotas
from provisioning.models import Operation, OperationKind, OperationStatus
from provisioning.services import cancel_unstarted, request_operation

log = structlog.get_logger(__name__)

LABEL_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
MIN_LABEL_LENGTH = 3
MAX_LABEL_LENGTH = 40
# Labels that would look like the platform's own services.
RESERVED_LABELS = frozenset(
    {
        "www",
        "api",
        "admin",
        "mail",
        "smtp",
        "imap",
        "pop",
        "ftp",
        "ns1",
        "ns2",
        "status",
        "billing",
        "support",
        "dashboard",
        "static",
        "assets",
        "cdn",
        "edge",
        "hostyard",
    }
)


def validate_label(label: str) -> str:
    """Return the normalised hostname label or raise ServiceError naming the rule."""
    value = label.strip().lower()
    if not MIN_LABEL_LENGTH <= len(value) <= MAX_LABEL_LENGTH:
        raise ServiceError(
            f"Label must be {MIN_LABEL_LENGTH} to {MAX_LABEL_LENGTH} characters long.",
            code="invalid_label",
            field="label",
        )
    if not LABEL_PATTERN.match(value) or "--" in value:
        raise ServiceError(
            "Label may contain only a-z, 0-9 and single hyphens, and must start and end "
            "with a letter or digit.",
            code="invalid_label",
            field="label",
        )
    if value in RESERVED_LABELS:
        raise ServiceError(
            f"Label {value!r} is reserved; choose another.", code="label_reserved", field="label"
        )
    return value


def generate_label(app: App) -> str:
    return f"{app.slug[:20]}-{secrets.token_hex(3)}"


def hostname_for(label: str) -> str:
    return f"{label}.{settings.HOSTYARD_PLATFORM_DOMAIN}"


def get_or_create_customer(
    *, organization: Organization, email: str, name: str = "", external_id: str = ""
) -> Customer:
    customer = Customer.objects.filter(organization=organization, email__iexact=email).first()
    if customer is not None:
        return customer
    try:
        with transaction.atomic():
            return Customer.objects.create(
                organization=organization, email=email.lower(), name=name, external_id=external_id
            )
    except IntegrityError:
        return Customer.objects.get(organization=organization, email__iexact=email)


def sign_up_site(
    *,
    organization: Organization,
    customer_email: str,
    app: App,
    plan: Plan,
    customer_name: str = "",
    customer_external_id: str = "",
    label: str | None = None,
    requested_by: str = "",
) -> tuple[Site, Operation]:
    """Record a new site and open its create operation.

    Signups of one organization are serialised by a row lock on it, so quota checks
    hold under concurrent requests. Raises ServiceError (409) for a taken hostname
    or an exceeded quota; nothing is created then.
    """
    if not app.is_active:
        raise ServiceError(
            f"App {app.slug!r} takes no new signups.", code="app_inactive", field="app"
        )
    if not plan.is_active:
        raise ServiceError(
            f"Plan {plan.slug!r} takes no new signups.", code="plan_inactive", field="plan"
        )
    if plan.memory_mb < app.min_memory_mb:
        raise ServiceError(
            f"App {app.slug!r} needs at least {app.min_memory_mb} MiB of memory; plan "
            f"{plan.slug!r} has {plan.memory_mb} MiB. Choose a larger plan.",
            code="plan_too_small",
            field="plan",
        )
    chosen_label = validate_label(label) if label else generate_label(app)
    hostname = hostname_for(chosen_label)

    with transaction.atomic():
        Organization.objects.select_for_update().get(pk=organization.pk)
        customer = get_or_create_customer(
            organization=organization,
            email=customer_email,
            name=customer_name,
            external_id=customer_external_id,
        )
        # A terminated site keeps its hostname until its data is purged.
        if Site.objects.filter(hostname=hostname, purged_at__isnull=True).exists():
            raise ServiceError(
                f"Hostname {hostname} is taken; choose another label.",
                code="hostname_taken",
                status=409,
                field="label",
            )
        quotas.check_signup(organization=organization, customer=customer, plan=plan)

        site = Site.objects.create(
            organization=organization,
            customer=customer,
            plan=plan,
            app=app,
            app_version=app.default_version,
            label=chosen_label,
            hostname=hostname,
        )
        operation = request_operation(
            site=site, kind=OperationKind.CREATE, requested_by=requested_by
        )
    log.info("site signed up", site=str(site.uuid), hostname=hostname, app=app.slug)
    return site, operation


def terminate_site(*, site: Site, requested_by: str = "") -> Operation:
    """Mark the site for termination and open the terminate operation.

    The container is removed at once; the volume and backups are kept for
    ``HOSTYARD_RETENTION_DAYS`` (purged at once when it is 0), so the termination
    can be undone until then. Operations that have not started yet are cancelled;
    one that runs finishes first. Idempotent: while a terminate is active, or once
    the site is terminated, the latest terminate operation is returned and nothing
    new is opened.
    """
    with transaction.atomic():
        locked = Site.objects.select_for_update().get(pk=site.pk)
        terminates = Operation.objects.filter(site=locked, kind=OperationKind.TERMINATE)
        pending = terminates.filter(status__in=OperationStatus.active()).first()
        if pending is not None:
            return pending
        if locked.status == SiteStatus.TERMINATED:
            latest = terminates.order_by("-id").first()
            if latest is not None:
                return latest
            raise ServiceError("Site is already terminated.", code="invalid_state", status=409)

        locked.desired_status = DesiredStatus.TERMINATED
        locked.save(update_fields=["desired_status", "updated_at"])
        for kind in OperationKind.values:
            if kind != OperationKind.TERMINATE:
                cancel_unstarted(site=locked, kind=kind)
        days = settings.HOSTYARD_RETENTION_DAYS
        operation = request_operation(
            site=locked,
            kind=OperationKind.TERMINATE,
            params={"purge": days <= 0, "retention_days": max(days, 0)},
            requested_by=requested_by,
        )
    log.info("site termination requested", site=str(site.uuid))
    return operation


def suspend_site(*, site: Site, reason: str, requested_by: str = "") -> Operation:
    """Suspend the site; see ``hosting.lifecycle.suspend_site``, which this calls."""
    from hosting import lifecycle

    return lifecycle.suspend_site(site=site, reason=reason, requested_by=requested_by)


def unsuspend_site(*, site: Site, requested_by: str = "") -> Operation:
    """Unsuspend the site; see ``hosting.lifecycle.unsuspend_site``, which this calls."""
    from hosting import lifecycle

    return lifecycle.unsuspend_site(site=site, requested_by=requested_by)
