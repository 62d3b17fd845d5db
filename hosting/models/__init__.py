from hosting.models.backups import Backup, BackupKind
from hosting.models.catalog import App, Plan
from hosting.models.certificates import AcmeAccount, Certificate, CertificateKind, CertificateStatus
from hosting.models.customers import Customer
from hosting.models.domains import Domain, DomainStatus
from hosting.models.idempotency import IdempotencyRecord
from hosting.models.organizations import ApiKey, Organization
from hosting.models.sites import DesiredStatus, Site, SiteEvent, SiteStatus

__all__ = [
    "AcmeAccount",
    "Certificate",
    "CertificateKind",
    "CertificateStatus",
    "Domain",
    "DomainStatus",
    "ApiKey",
    "App",
    "Backup",
    "BackupKind",
    "Customer",
    "DesiredStatus",
    "IdempotencyRecord",
    "Organization",
    "Plan",
    "Site",
    "SiteEvent",
    "SiteStatus",
]
