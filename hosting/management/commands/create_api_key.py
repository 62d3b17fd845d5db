from django.core.management.base import BaseCommand, CommandParser

from hosting.models import ApiKey, Organization


class Command(BaseCommand):
    help = (
        "Create an organization if missing and issue it an API key. "
        "Prints the key once; only its digest is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", help="Organization slug, e.g. 'house'.")
        parser.add_argument("--name", default="cli", help="Who uses the key, e.g. 'storefront'.")
        parser.add_argument("--organization-name", default="", help="Display name if created.")

    def handle(self, *args: object, **options: str) -> None:
        slug = options["organization"]
        organization, _ = Organization.objects.get_or_create(
            slug=slug, defaults={"name": options["organization_name"] or slug}
        )
        _, raw_key = ApiKey.issue(organization=organization, name=options["name"])
        self.stdout.write(raw_key)
