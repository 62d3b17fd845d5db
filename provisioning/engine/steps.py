"""The step registry and the context a step runs with.

A step is a function ``run(ctx) -> dict | None`` registered under a name. It must be
idempotent: it looks up what already exists (by the site's label or a deterministic
name) before creating anything, because it may run twice or after a crash. The
optional ``undo`` removes what ``run`` created; it runs when a create fails for good.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hosting.models import Site
from provisioning.models import Operation, OperationStep


class SkipStep(Exception):
    """Raised by a step with nothing to do in this deployment (e.g. no DNS driver)."""


@dataclass
class StepContext:
    operation: Operation
    step: OperationStep
    site: Site
    # Results of the operation's earlier steps, by step name.
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def site_uuid(self) -> str:
        return str(self.site.uuid)


StepFunction = Callable[[StepContext], dict[str, Any] | None]


@dataclass(frozen=True)
class StepDefinition:
    name: str
    run: StepFunction
    undo: StepFunction | None = None


STEPS: dict[str, StepDefinition] = {}


def step(name: str, *, undo: StepFunction | None = None) -> Callable[[StepFunction], StepFunction]:
    """Register ``run`` as the step ``name``."""

    def register(run: StepFunction) -> StepFunction:
        if name in STEPS:
            raise ValueError(f"step {name!r} is registered twice")
        STEPS[name] = StepDefinition(name=name, run=run, undo=undo)
        return run

    return register


def get_step(name: str) -> StepDefinition:
    # Importing the step modules registers them.
    from provisioning.steps import load_all

    load_all()
    return STEPS[name]
