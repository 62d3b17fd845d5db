"""``manage.py site ACTION SITE``: the lifecycle operations from the command line."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hosting import lifecycle, services
from hosting.errors import ServiceError
from hosting.models import Backup, Plan, Site
from provisioning.models import Operation

ACTIONS = [
    "suspend",
    "unsuspend",
    "restart",
    "change-plan",
    "update",
    "backup",
    "restore",
    "terminate",
    "undo-terminate",
    "purge",
]


def find_site(reference: str) -> Site:
    """Find a site by hostname or uuid; raise CommandError naming the reference."""
    by_hostname = Site.objects.filter(hostname=reference, purged_at__isnull=True).first()
    if by_hostname is not None:
        return by_hostname
    try:
        return Site.objects.get(uuid=reference)
    except (Site.DoesNotExist, ValidationError) as exc:
        raise CommandError(f"No site with hostname or id {reference!r}.") from exc


class Command(BaseCommand):
    help = "Open a lifecycle operation for one site; a worker carries it out."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=ACTIONS)
        parser.add_argument("site", help="The site's hostname or id.")
        parser.add_argument("--reason", choices=list(lifecycle.SuspendReason.ALL), default="staff")
        parser.add_argument("--plan", help="Plan slug, for change-plan.")
        parser.add_argument("--app-version", dest="app_version", help="Image tag, for update.")
        parser.add_argument("--backup", help="Backup id, for restore.")

    def handle(self, *args: object, **options: object) -> None:
        site = find_site(str(options["site"]))
        try:
            operation = self.open(str(options["action"]), site, options)
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(
            f"{operation.kind} operation {operation.uuid} is {operation.status} for {site.hostname}"
        )

    def open(self, action: str, site: Site, options: dict) -> Operation:
        by = "command"
        if action == "suspend":
            return lifecycle.suspend_site(site=site, reason=options["reason"], requested_by=by)
        if action == "unsuspend":
            return lifecycle.unsuspend_site(site=site, requested_by=by)
        if action == "restart":
            return lifecycle.restart_site(site=site, requested_by=by)
        if action == "change-plan":
            plan = Plan.objects.filter(slug=options["plan"] or "").first()
            if plan is None:
                raise CommandError(f"--plan {options['plan']!r}: no such plan.")
            return lifecycle.change_plan(site=site, plan=plan, requested_by=by)
        if action == "update":
            if not options["app_version"]:
                raise CommandError("update needs --app-version, e.g. --app-version 1.1.")
            return lifecycle.update_site(site=site, version=options["app_version"], requested_by=by)
        if action == "backup":
            return lifecycle.back_up_site(site=site, requested_by=by)
        if action == "restore":
            backup_id = options["backup"]
            backup = Backup.objects.filter(site=site, uuid=backup_id).first() if backup_id else None
            if backup is None:
                raise CommandError(f"--backup {options['backup']!r}: no such backup of this site.")
            return lifecycle.restore_backup(site=site, backup=backup, requested_by=by)
        if action == "terminate":
            return services.terminate_site(site=site, requested_by=by)
        if action == "undo-terminate":
            return lifecycle.undo_terminate(site=site, requested_by=by)
        return lifecycle.purge_site(site=site, requested_by=by)
