"""``manage.py reconcile``: one reconciler scan, and optionally the due purges."""

from django.core.management.base import BaseCommand, CommandParser

from hosting.lifecycle import open_due_purges
from provisioning.reconciler import reconcile


class Command(BaseCommand):
    help = "Compare sites with the engine once and open an operation for every drift."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--purges",
            action="store_true",
            help="Also open purges for terminated sites whose retention period has ended.",
        )

    def handle(self, *args: object, **options: object) -> None:
        report = reconcile()
        self.stdout.write(
            f"checked {report.sites_checked} sites and {report.containers_seen} containers; "
            f"opened {len(report.opened)} operations; {len(report.strays_found)} stray "
            f"containers, {len(report.strays_removed)} removed"
        )
        for site_uuid, kind, drift in report.opened:
            self.stdout.write(f"  {site_uuid}: {kind} ({drift})")
        if options["purges"]:
            purges = open_due_purges()
            self.stdout.write(f"opened {len(purges)} purges")
