"""The create operation's steps done directly: no API, broker, worker or step bookkeeping.

``PRIMITIVES`` maps a step name of ``KINDS["create"]`` to the bare action that step
performs. The container steps are plain docker SDK calls with the options the
Docker driver uses. A step without an entry here (DNS, certificate and route steps
as they land) is run by calling its registered step function in this process, which
still leaves out the API, the queue and the runner.
"""

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.harness import BenchError

HEALTH_POLL_SECONDS = 0.02
HEALTH_TIMEOUT_SECONDS = 60.0
# A step function that raises TransientError is run again this often, this far apart.
STEP_FUNCTION_ATTEMPTS = 40
STEP_FUNCTION_RETRY_SECONDS = 0.05

# Prerequisites of each step, used for the critical path. A step not listed here
# depends on the step before it.
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "create_volume": (),
    "create_container": ("create_volume",),
    "start_container": ("create_container",),
    "wait_healthy": ("start_container",),
    "publish_dns": (),
    "issue_certificate": ("publish_dns",),
    "configure_route": ("wait_healthy", "issue_certificate"),
    "verify_https": ("configure_route",),
}


@dataclass
class Target:
    """One site brought up directly: its spec, and what the primitives learned so far."""

    site: Any  # hosting.models.Site, saved only when a step function needs the row
    spec: Any  # provisioning.drivers.runtime.base.ContainerSpec
    health_path: str
    container: Any = None
    address: str = ""
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def site_uuid(self) -> str:
        return str(self.spec.site_uuid)


def make_target(*, organization: Any, app: Any, plan: Any, persist: bool) -> Target:
    """Build a site with the spec the control plane would build; save its row if ``persist``."""
    from hosting.models import Site
    from hosting.services import generate_label, get_or_create_customer, hostname_for
    from provisioning.steps.containers import container_spec

    label = generate_label(app)
    site = Site(
        uuid=uuid.uuid4(),
        organization=organization,
        plan=plan,
        app=app,
        app_version=app.default_version,
        label=label,
        hostname=hostname_for(label),
        status="provisioning",
    )
    if persist:
        site.customer = get_or_create_customer(
            organization=organization, email=f"direct-{label}@bench.hostyard.test"
        )
        site.save()
    return Target(site=site, spec=container_spec(site), health_path=app.health_path)


def _client() -> Any:
    from provisioning.drivers import registry

    return registry.runtime().client


def _create_volume(target: Target) -> None:
    from django.conf import settings

    from provisioning.drivers.runtime.base import site_labels, volume_name

    name = volume_name(target.site_uuid)
    _client().volumes.create(
        name=name,
        labels=site_labels(target.site_uuid, deployment=settings.HOSTYARD_DEPLOYMENT, role="data"),
    )
    target.results["create_volume"] = {"volume": name}


def _create_container(target: Target) -> None:
    from django.conf import settings

    from provisioning.drivers.runtime.base import container_name, site_labels, volume_name

    spec = target.spec
    target.container = _client().containers.create(
        spec.image,
        name=container_name(spec.site_uuid),
        labels=site_labels(spec.site_uuid, deployment=settings.HOSTYARD_DEPLOYMENT),
        environment=spec.environment,
        volumes={volume_name(spec.site_uuid): {"bind": spec.data_path, "mode": "rw"}},
        network=settings.HOSTYARD_SITE_NETWORK,
        dns=settings.HOSTYARD_CONTAINER_DNS,
        mem_limit=f"{spec.memory_mb}m",
        memswap_limit=f"{spec.memory_mb}m",
        nano_cpus=int(spec.cpus * 1_000_000_000),
        pids_limit=spec.pids_limit,
        cap_drop=["ALL"],
        cap_add=spec.capabilities or None,
        security_opt=["no-new-privileges:true"],
        privileged=False,
        init=True,
        restart_policy={"Name": "unless-stopped"},
    )
    target.results["create_container"] = {
        "container_id": target.container.id,
        "name": target.container.name,
    }


def _start_container(target: Target) -> None:
    from django.conf import settings

    target.container.start()
    target.container.reload()
    networks = target.container.attrs["NetworkSettings"]["Networks"]
    target.address = networks[settings.HOSTYARD_SITE_NETWORK]["IPAddress"]
    target.results["start_container"] = {"state": target.container.status}


def _wait_healthy(target: Target) -> None:
    url = f"http://{target.address}:{target.spec.internal_port}{target.health_path}"
    deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2, allow_redirects=False).status_code < 400:
                # Later steps (configure_route) read the address from this result.
                upstream = f"{target.address}:{target.spec.internal_port}"
                target.results["wait_healthy"] = {"upstream": upstream}
                return
        except requests.RequestException:
            pass
        time.sleep(HEALTH_POLL_SECONDS)
    raise BenchError(f"{url} returned no status below 400 within {HEALTH_TIMEOUT_SECONDS:.0f} s")


PRIMITIVES: dict[str, Callable[[Target], None]] = {
    "create_volume": _create_volume,
    "create_container": _create_container,
    "start_container": _start_container,
    "wait_healthy": _wait_healthy,
}


def _run_step_function(name: str, position: int, target: Target) -> None:
    from provisioning.engine.steps import SkipStep, StepContext, get_step
    from provisioning.errors import TransientError
    from provisioning.models import Operation, OperationStep

    if target.site.pk is None:
        raise BenchError(
            f"step {name!r} needs a saved site row; build the target with persist=True"
        )
    operation = Operation(site=target.site, kind="create")
    step_row = OperationStep(operation=operation, position=position, name=name)
    context = StepContext(
        operation=operation, step=step_row, site=target.site, results=target.results
    )
    definition = get_step(name)
    for attempt in range(1, STEP_FUNCTION_ATTEMPTS + 1):
        try:
            target.results[name] = definition.run(context) or {}
            return
        except SkipStep:
            target.results[name] = {}
            return
        except TransientError:
            # The runner would retry after a backoff of seconds; retry at once instead,
            # so the baseline shows the step's own time.
            if attempt == STEP_FUNCTION_ATTEMPTS:
                raise
            time.sleep(STEP_FUNCTION_RETRY_SECONDS)


def needs_rows(steps: list[str]) -> bool:
    """Return True if some step has no bare primitive and runs through its step function."""
    return any(name not in PRIMITIVES for name in steps)


def run_direct(target: Target, steps: list[str]) -> dict[str, float]:
    """Run each step's primitive in order; return the seconds each took."""
    durations: dict[str, float] = {}
    for position, name in enumerate(steps, start=1):
        started = time.monotonic()
        primitive = PRIMITIVES.get(name)
        if primitive is not None:
            primitive(target)
        else:
            _run_step_function(name, position, target)
        durations[name] = time.monotonic() - started
    return durations


def critical_path(durations: dict[str, float], steps: list[str]) -> float:
    """Return the longest chain of dependent steps, in seconds, using ``DEPENDS_ON``."""
    finish: dict[str, float] = {}
    for index, name in enumerate(steps):
        default = (steps[index - 1],) if index else ()
        before = [dep for dep in DEPENDS_ON.get(name, default) if dep in finish]
        start = max((finish[dep] for dep in before), default=0.0)
        finish[name] = start + durations.get(name, 0.0)
    return max(finish.values(), default=0.0)
