import requests
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hosting.models import Site
from provisioning.drivers import registry


class Command(BaseCommand):
    help = "Print a site's status and the HTTP response of its app, fetched from its container."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("hostname", help="The site's platform hostname.")

    def handle(self, *args: object, **options: str) -> None:
        site = Site.objects.filter(hostname=options["hostname"]).order_by("-id").first()
        if site is None:
            raise CommandError(f"No site has the hostname {options['hostname']!r}.")

        self.stdout.write(f"site {site.hostname} ({site.uuid}): {site.status}")
        runtime = registry.runtime()
        container = runtime.find_container(str(site.uuid))
        if container is None:
            self.stdout.write("no container")
            return

        address = runtime.container_address(container)
        url = f"http://{address}:{site.app.internal_port}/"
        # Redirects name the site's hostname, which only the platform's DNS resolves.
        answer = requests.get(url, timeout=10, allow_redirects=False)
        self.stdout.write(f"GET {url} -> HTTP {answer.status_code}")
        self.stdout.write(answer.text[:500])
