from django.core.management.base import BaseCommand, CommandError, CommandParser

from hosting.models import ApiKey, Organization
from hosting.models.organizations import ApiKeyScope


class Command(BaseCommand):
    help = (
        "Create an organization if missing and issue it an API key. "
        "Prints the key once; only its digest is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", help="Organization slug, e.g. 'house'.")
        parser.add_argument("--name", default="cli", help="Who uses the key, e.g. 'storefront'.")
        parser.add_argument("--organization-name", default="", help="Display name if created.")
        parser.add_argument(
            "--scopes",
            default=",".join(scope.value for scope in ApiKeyScope),
            help="Comma-separated scopes (default: all): "
            + ", ".join(scope.value for scope in ApiKeyScope),
        )

    def handle(self, *args: object, **options: str) -> None:
        scopes = [scope.strip() for scope in options["scopes"].split(",") if scope.strip()]
        valid = {scope.value for scope in ApiKeyScope}
        unknown = sorted(set(scopes) - valid)
        if unknown or not scopes:
            raise CommandError(
                f"--scopes {options['scopes']!r}: use one or more of {', '.join(sorted(valid))}."
            )

        slug = options["organization"]
        organization, created = Organization.objects.get_or_create(
            slug=slug, defaults={"name": options["organization_name"] or slug}
        )
        if created:
            self.stderr.write(f"created organization {slug!r}")
        _, raw_key = ApiKey.issue(organization=organization, name=options["name"], scopes=scopes)
        self.stdout.write(raw_key)
