"""Custom domain to HTTPS: from ``POST /sites/{id}/domains`` to the domain's first 200.

Runs inside the signup benchmark, against the same gunicorn, Celery worker and edge
servers. One site is signed up through the API and kept running. Knot serves
``example.org`` as a customer zone. Each sample first sets the customer's A record
``<label>.example.org -> 127.0.0.1`` there, then adds the domain through the API and
polls ``https://<label>.example.org`` through Caddy with that name in SNI, verified
against this run's Pebble root. The domain is removed through the API, and its
record deleted, before the next sample.

The baseline, alternated with it, is what the worker needs for a domain, done
directly in this process on the same site: one ``check_domain`` call, an HTTP-01
order by the ACME client answering on the edge, loading the certificate into the
edge, and the route update, then the same wait for the first 200.
"""

import os
import time
import uuid
from typing import Any

import requests

from bench import harness
from bench.edge import EdgeStack
from bench.harness import fmt, median, percentile, ratio

CUSTOMER_ZONE = "example.org"
DOMAINS = int(os.environ.get("BENCH_DOMAINS", "20"))
WARMUP_DOMAINS = 1
RECORD_TTL = 60
OBSERVE_POLL_SECONDS = 0.02
DOMAIN_TIMEOUT_SECONDS = 60.0
CLEANUP_TIMEOUT_SECONDS = 30.0
# Failed samples are reported and skipped, up to this many.
MAX_ERRORS = 3
PARTS = ("check_domain", "issue_certificate", "load_certificate", "ensure_route", "first_200")


def _customer_dns() -> Any:
    """Return an RFC 2136 driver for the customer zone, with the Knot key of this run."""
    from django.conf import settings

    from provisioning.drivers.dns.rfc2136 import Rfc2136Driver

    return Rfc2136Driver(
        server=settings.HOSTYARD_RFC2136_SERVER,
        zones=(CUSTOMER_ZONE,),
        tsig_name=settings.HOSTYARD_RFC2136_TSIG_NAME,
        tsig_secret=settings.HOSTYARD_RFC2136_TSIG_SECRET,
        tsig_algorithm=settings.HOSTYARD_RFC2136_TSIG_ALGORITHM,
    )


def _new_name() -> str:
    return f"cd{uuid.uuid4().hex[:12]}.{CUSTOMER_ZONE}"


def _wait_for_200(edge: EdgeStack, name: str, started: float) -> float:
    """Poll ``https://name`` through the edge; return seconds since ``started``."""
    deadline = started + DOMAIN_TIMEOUT_SECONDS
    while not edge.probe(hostname=name, address="", port=0):
        if time.monotonic() > deadline:
            raise harness.BenchError(
                f"https://{name} returned no 200 within {DOMAIN_TIMEOUT_SECONDS:.0f} s: "
                "see the worker log in .run/bench/"
            )
        time.sleep(OBSERVE_POLL_SECONDS)
    return time.monotonic() - started


def keep_site(session: requests.Session, api_url: str, edge: EdgeStack) -> Any:
    """Sign up one site through the API; return its row once it runs and returns 200."""
    from hosting.models import Site, SiteStatus

    answer = session.post(
        f"{api_url}/api/v1/sites",
        json={
            "customer_email": f"domains-{time.time_ns()}@bench.hostyard.test",
            "app": "demo",
            "plan": "micro",
        },
        timeout=30,
    )
    if answer.status_code != 202:
        raise harness.BenchError(f"POST /api/v1/sites returned {answer.status_code}: {answer.text}")
    site_id = answer.json()["id"]
    running = harness.wait_until(
        lambda: Site.objects.filter(uuid=site_id, status=SiteStatus.RUNNING).exists(),
        timeout=DOMAIN_TIMEOUT_SECONDS,
        interval=0.1,
    )
    site = Site.objects.get(uuid=site_id)
    if not running:
        raise harness.BenchError(
            f"site {site.hostname} did not run within {DOMAIN_TIMEOUT_SECONDS:.0f} s: "
            "see the worker log in .run/bench/"
        )
    _wait_for_200(edge, site.hostname, time.monotonic())
    return site


def add_through_api(
    session: requests.Session, api_url: str, edge: EdgeStack, site: Any
) -> dict[str, Any]:
    """Add one domain through the API, wait for its first 200, remove it; return the timings."""
    name = _new_name()
    dns = _customer_dns()
    dns.ensure_record(name=name, type="A", value="127.0.0.1", ttl=RECORD_TTL)
    url = f"{api_url}/api/v1/sites/{site.uuid}/domains"
    try:
        started = time.monotonic()
        answer = session.post(url, json={"domain": name}, timeout=30)
        post_seconds = time.monotonic() - started
        if answer.status_code != 202:
            raise harness.BenchError(f"POST {url} returned {answer.status_code}: {answer.text}")
        total = _wait_for_200(edge, name, started)
    finally:
        _remove_through_api(session, url, name)
        dns.delete_record(name=name, type="A")
    return {"domain": name, "total": total, "post": post_seconds}


def _remove_through_api(session: requests.Session, url: str, name: str) -> None:
    """Ask the API to remove the domain and wait until the worker has deleted its row."""
    from hosting.models import Certificate, Domain

    session.delete(f"{url}/{name}", timeout=30)
    gone = harness.wait_until(
        lambda: not Domain.objects.filter(name=name).exists(),
        timeout=CLEANUP_TIMEOUT_SECONDS,
        interval=0.05,
    )
    if not gone:
        raise harness.BenchError(
            f"domain {name} was not removed within {CLEANUP_TIMEOUT_SECONDS:.0f} s: "
            "see the worker log in .run/bench/"
        )
    # A certificate row left by a failed activation is not the worker's to delete.
    Certificate.objects.filter(key=f"domain:{name}").delete()


def add_directly(edge: EdgeStack, site: Any) -> dict[str, Any]:
    """Run the worker's domain primitives for one new name on ``site``; return their seconds.

    Raises ``BenchError`` when the DNS check fails or no 200 comes within the timeout;
    the name's record, certificate and route entry are removed either way.
    """
    from django.conf import settings

    from provisioning import certificates
    from provisioning.domain_check import check_domain
    from provisioning.drivers import registry
    from provisioning.steps.edge import last_upstream

    name = _new_name()
    dns = _customer_dns()
    dns.ensure_record(name=name, type="A", value="127.0.0.1", ttl=RECORD_TTL)
    cert_id = f"bench-domain-{name}"
    account_key = certificates.acme_account_key()
    upstream = last_upstream(site)
    durations: dict[str, float] = {}
    try:
        started = time.monotonic()
        result = check_domain(
            name,
            expected_ipv4=settings.HOSTYARD_PUBLIC_IPV4,
            expected_ipv6=settings.HOSTYARD_PUBLIC_IPV6,
            platform_hostname=site.hostname,
            resolvers=certificates.check_resolvers(),
            caa_identities=[settings.HOSTYARD_ACME_CAA_IDENTITY],
        )
        if not result.ok:
            raise harness.BenchError(f"DNS check of {name} failed: {result.reason}")
        durations["check_domain"] = _lap(started)

        started = time.monotonic()
        issued = registry.acme().issue_certificate(
            names=[name], challenge="http-01", account_key_pem=account_key
        )
        durations["issue_certificate"] = _lap(started)

        started = time.monotonic()
        registry.edge().load_certificate(
            cert_id=cert_id, cert_pem=issued.cert_pem, key_pem=issued.key_pem
        )
        durations["load_certificate"] = _lap(started)

        started = time.monotonic()
        hostnames = [*certificates.routed_hostnames(site), name]
        registry.edge().ensure_route(site_id=str(site.uuid), hostnames=hostnames, upstream=upstream)
        durations["ensure_route"] = _lap(started)

        durations["first_200"] = _wait_for_200(edge, name, time.monotonic())
    finally:
        registry.edge().ensure_route(
            site_id=str(site.uuid),
            hostnames=certificates.routed_hostnames(site),
            upstream=upstream,
        )
        registry.edge().remove_certificate(cert_id)
        dns.delete_record(name=name, type="A")
    return {"domain": name, "steps": durations, "sum": sum(durations.values())}


def _lap(started: float) -> float:
    return time.monotonic() - started


def collect(session: requests.Session, api_url: str, edge: EdgeStack) -> dict[str, Any]:
    """Alternate domains through the API and direct runs on one kept site; return the figures."""
    from provisioning.errors import ProvisioningError

    site = keep_site(session, api_url, edge)
    for _ in range(WARMUP_DOMAINS):
        add_through_api(session, api_url, edge, site)
        add_directly(edge, site)

    through_api: list[dict] = []
    direct: list[dict] = []
    errors: list[str] = []
    while len(through_api) < DOMAINS or len(direct) < DOMAINS:
        try:
            if len(through_api) < DOMAINS:
                through_api.append(add_through_api(session, api_url, edge, site))
            if len(direct) < DOMAINS:
                direct.append(add_directly(edge, site))
        except (harness.BenchError, ProvisioningError, requests.RequestException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            if len(errors) > MAX_ERRORS:
                raise
    return summarize(through_api, direct, errors)


def summarize(through_api: list[dict], direct: list[dict], errors: list[str]) -> dict[str, Any]:
    totals = [sample["total"] for sample in through_api]
    sums = [sample["sum"] for sample in direct]
    return {
        "domains": len(through_api),
        "api_median": median(totals),
        "api_p95": percentile(totals, 95),
        "sum_median": median(sums),
        "sum_p95": percentile(sums, 95),
        "ratio": ratio(median(totals), median(sums)),
        "ratio_p95": ratio(percentile(totals, 95), percentile(sums, 95)),
        "post_median": median([sample["post"] for sample in through_api]),
        "parts": {part: median([s["steps"][part] for s in direct]) for part in PARTS},
        "errors": errors,
        "samples_api": through_api,
        "samples_direct": direct,
    }


def render(figures: dict[str, Any]) -> str:
    """Return the custom domain section of the report."""
    rows = [
        ("POST to first 200 (control plane)", figures["api_median"], figures["api_p95"], "", ""),
        (
            "primitives, sequential sum",
            figures["sum_median"],
            figures["sum_p95"],
            fmt(figures["ratio"]),
            fmt(figures["ratio_p95"]),
        ),
    ]
    table = [(name, fmt(mid, 3), fmt(p95, 3), r, r95) for name, mid, p95, r, r95 in rows]
    parts = [(f"direct: {part}", fmt(value, 3)) for part, value in figures["parts"].items()]
    parts.insert(0, ("control plane: POST round trip", fmt(figures["post_median"], 3)))
    return "\n".join(
        [
            "## 1b. Custom domain to HTTPS",
            "",
            f"{figures['domains']} domains `<label>.{CUSTOMER_ZONE}`, one at a time, on one site "
            "kept running, through the same gunicorn and Celery worker, alternating with the "
            "domain primitives done directly on the same site. Before each POST the customer's "
            f"A record is set to 127.0.0.1 in Knot; the first 200 is observed over HTTPS through "
            "Caddy with the domain in SNI, verified against the Pebble root, polled every "
            f"{int(OBSERVE_POLL_SECONDS * 1000)} ms. The primitives are one `check_domain`, an "
            "HTTP-01 order by the ACME client answering on the edge, loading the certificate "
            "into the edge, and the route update. The worker also runs the pre-order checks "
            "(a second DNS check and an HTTP token round trip through the edge) and stores the "
            "certificate; those count only on the control plane side. Samples lost to "
            f"errors: {len(figures['errors'])}.",
            "",
            harness.markdown_table(
                ["figure", "median s", "p95 s", "ratio median", "ratio p95"], table
            ),
            "",
            harness.markdown_table(["part", "median s"], parts),
        ]
    )
