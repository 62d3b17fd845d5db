"""Quota checks run before anything is created: signups and plan changes.

Each check raises ``ServiceError`` with code ``quota_exceeded`` (HTTP 409) and the
quota's name, limit and current use in ``extra``, so the API returns
``{"error": {"code": "quota_exceeded", "quota": ..., "limit": ..., "used": ...}}``.

The checks read counts and sums; they hold only if no other signup or plan change
of the same organization runs at the same time. Callers therefore run them inside
a transaction that holds the organization's row lock (``select_for_update``), as
``hosting.services.sign_up_site`` does.
"""

from dataclasses import dataclass

from django.db.models import Count, Sum

from hosting.errors import ServiceError
from hosting.models import Customer, Organization, Plan, Site, SiteStatus
from provisioning.usage_models import MIB, SiteUsage

# Quota names, as they appear in the error body's "quota" field.
SITES_PER_CUSTOMER = "sites_per_customer"
ORGANIZATION_SITES = "organization_sites"
ORGANIZATION_MEMORY = "organization_memory_mb"
ORGANIZATION_DISK = "organization_disk_mb"
SITE_DISK = "disk_mb"


@dataclass(frozen=True)
class Allocation:
    """Resources that an organization's live sites reserve through their plans."""

    sites: int
    memory_mb: int
    disk_mb: int


def quota_exceeded(*, quota: str, limit: int, used: int, message: str) -> ServiceError:
    """Build the one error every quota check raises (409, code ``quota_exceeded``)."""
    return ServiceError(
        message,
        code="quota_exceeded",
        status=409,
        extra={"quota": quota, "limit": limit, "used": used},
    )


def organization_allocation(*, organization: Organization) -> Allocation:
    """Sum the plans of the organization's live sites in one query."""
    live = Site.objects.filter(organization=organization, status__in=SiteStatus.live())
    totals = live.aggregate(
        sites=Count("id"), memory_mb=Sum("plan__memory_mb"), disk_mb=Sum("plan__disk_mb")
    )
    return Allocation(
        sites=totals["sites"] or 0,
        memory_mb=totals["memory_mb"] or 0,
        disk_mb=totals["disk_mb"] or 0,
    )


def _check_organization_caps(
    *,
    organization: Organization,
    allocation: Allocation,
    plan: Plan,
    replaces: Plan | None = None,
) -> None:
    """Raise quota_exceeded if adding ``plan`` (in place of ``replaces``) passes a cap.

    Without ``replaces`` the change adds a site; with it, a site moves between plans.
    A change that does not grow a resource is never rejected for it, even when staff
    lowered a cap below the current total.
    """
    slug = organization.slug
    max_sites = organization.max_sites
    if replaces is None and max_sites is not None and allocation.sites >= max_sites:
        raise quota_exceeded(
            quota=ORGANIZATION_SITES,
            limit=max_sites,
            used=allocation.sites,
            message=f"Organization {slug!r} has {allocation.sites} of its {max_sites} sites. "
            "Terminate a site or ask support to raise the cap.",
        )

    caps = [
        (
            ORGANIZATION_MEMORY,
            "memory",
            organization.max_memory_mb,
            allocation.memory_mb,
            plan.memory_mb,
            replaces.memory_mb if replaces else 0,
        ),
        (
            ORGANIZATION_DISK,
            "disk",
            organization.max_disk_mb,
            allocation.disk_mb,
            plan.disk_mb,
            replaces.disk_mb if replaces else 0,
        ),
    ]
    for quota, resource, limit, used, needed, freed in caps:
        if limit is None or needed <= freed or used - freed + needed <= limit:
            continue
        raise quota_exceeded(
            quota=quota,
            limit=limit,
            used=used,
            message=f"Plan {plan.slug!r} needs {needed} MiB of {resource}; organization "
            f"{slug!r} uses {used} of its {limit} MiB. Choose a smaller plan or ask support "
            "to raise the cap.",
        )


def check_signup(*, organization: Organization, customer: Customer, plan: Plan) -> None:
    """Raise quota_exceeded (409) if one more site on ``plan`` passes any quota.

    Checks the plan's sites per customer, then the organization's caps on sites,
    memory and disk (sums of the live sites' plans). Changes nothing.
    """
    customer_sites = Site.objects.filter(customer=customer, status__in=SiteStatus.live()).count()
    if customer_sites >= plan.max_sites_per_customer:
        raise quota_exceeded(
            quota=SITES_PER_CUSTOMER,
            limit=plan.max_sites_per_customer,
            used=customer_sites,
            message=f"Customer {customer.email} already has {customer_sites} site(s); plan "
            f"{plan.slug!r} allows {plan.max_sites_per_customer}.",
        )

    allocation = organization_allocation(organization=organization)
    _check_organization_caps(organization=organization, allocation=allocation, plan=plan)


def check_plan_change(*, site: Site, new_plan: Plan, disk_used_mb: int) -> None:
    """Raise quota_exceeded (409) if moving ``site`` to ``new_plan`` passes any quota.

    ``disk_used_mb`` is the site's measured disk use (data volume plus backups), e.g.
    from ``disk_used_mb_of(site)``; a plan whose disk quota is below it is rejected.
    The new plan's sites per customer is checked against the customer's live sites,
    and the organization's caps with the site's current plan replaced by
    ``new_plan``. Changes nothing.
    """
    if disk_used_mb > new_plan.disk_mb:
        raise quota_exceeded(
            quota=SITE_DISK,
            limit=new_plan.disk_mb,
            used=disk_used_mb,
            message=f"Site {site.hostname} uses {disk_used_mb} MiB of disk; plan "
            f"{new_plan.slug!r} allows {new_plan.disk_mb} MiB. Delete data first or choose "
            "a larger plan.",
        )

    customer_sites = Site.objects.filter(
        customer_id=site.customer_id, status__in=SiteStatus.live()
    ).count()
    if customer_sites > new_plan.max_sites_per_customer:
        raise quota_exceeded(
            quota=SITES_PER_CUSTOMER,
            limit=new_plan.max_sites_per_customer,
            used=customer_sites,
            message=f"The site's customer has {customer_sites} sites; plan {new_plan.slug!r} "
            f"allows {new_plan.max_sites_per_customer} per customer.",
        )

    organization = Organization.objects.get(pk=site.organization_id)
    current_plan = Plan.objects.get(pk=site.plan_id)
    _check_organization_caps(
        organization=organization,
        allocation=organization_allocation(organization=organization),
        plan=new_plan,
        replaces=current_plan,
    )


def disk_used_mb_of(site: Site) -> int:
    """Return the site's last measured disk use in MiB, rounded up; 0 if never measured."""
    usage = SiteUsage.objects.filter(site=site).only("volume_bytes", "backup_bytes").first()
    if usage is None:
        return 0
    return -(-usage.disk_bytes // MIB)
