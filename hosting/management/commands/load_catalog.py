from django.core.management.base import BaseCommand, CommandError, CommandParser

from hosting.catalog import load_catalog


class Command(BaseCommand):
    help = "Create or update the shipped catalog of apps and plans (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--image",
            action="append",
            default=[],
            metavar="APP=REPOSITORY[:TAG]",
            help="Run APP from another image, e.g. ghost=realapps/ghost:5. Repeatable.",
        )

    def handle(self, *args: object, **options: object) -> None:
        overrides: dict[str, str] = {}
        for item in options["image"]:  # type: ignore[attr-defined]
            slug, sep, reference = str(item).partition("=")
            if not sep or not slug or not reference:
                raise CommandError(f"--image {item!r}: expected APP=REPOSITORY[:TAG].")
            overrides[slug] = reference
        apps, plans = load_catalog(image_overrides=overrides)
        self.stdout.write(f"catalog loaded: {apps} apps, {plans} plans")
