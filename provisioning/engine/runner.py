"""Run an operation's steps in order, with a lease, retries and compensation.

``run_operation`` never keeps a database transaction open while a step talks to
Docker, DNS, ACME or the edge: each state change is its own short write.
"""

import os
import random
import socket
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import structlog
from django.conf import settings
from django.utils import timezone

from provisioning.engine.kinds import KINDS
from provisioning.engine.steps import SkipStep, StepContext, get_step
from provisioning.errors import PermanentError, ProvisioningError, TransientError
from provisioning.models import (
    Operation,
    OperationStatus,
    OperationStep,
    StaleOperation,
    StepStatus,
)

log = structlog.get_logger(__name__)


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY = "retry"
    BLOCKED = "blocked"  # an earlier operation of the same site is still active
    NOT_CLAIMED = "not_claimed"  # another worker has the lease, or it already finished
    STALE = "stale"  # the lease was lost mid-run; the new holder carries on


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    retry_in: float = 0.0


def worker_identity() -> str:
    """Identify this process as ``host:pid``, so a dead holder on this host is detectable."""
    return f"{socket.gethostname()}:{os.getpid()}"


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter, at least ``retry_after`` when the service named one."""
    base = settings.HOSTYARD_RETRY_BASE_SECONDS * (2 ** max(attempt - 1, 0))
    delay = min(settings.HOSTYARD_RETRY_MAX_SECONDS, base) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def blocking_operation(operation: Operation) -> Operation | None:
    """Return the site's earliest active operation requested before this one, if any.

    Ids grow with every insert, so ``id`` orders a site's operations by request time.
    """
    return (
        Operation.objects.filter(
            site_id=operation.site_id, status__in=OperationStatus.active(), id__lt=operation.pk
        )
        .order_by("id")
        .first()
    )


def run_operation(operation_id: int, *, owner: str | None = None) -> RunResult:
    """Claim the operation and run its remaining steps.

    Safe to call any number of times, concurrently: only the lease holder runs
    steps, and steps that already succeeded are not run again.
    """
    owner = owner or worker_identity()
    operation = Operation.objects.select_related("site").get(pk=operation_id)
    if operation.status in OperationStatus.final():
        return RunResult(Outcome.NOT_CLAIMED)
    if blocking_operation(operation) is not None:
        return RunResult(Outcome.BLOCKED)
    if not operation.claim(owner=owner, lease_seconds=settings.HOSTYARD_OPERATION_LEASE_SECONDS):
        return RunResult(Outcome.NOT_CLAIMED)

    structlog.contextvars.bind_contextvars(
        site=str(operation.site.uuid), operation=str(operation.uuid), kind=operation.kind
    )
    try:
        return _run_claimed(operation)
    except StaleOperation as exc:
        log.warning("operation lease lost", error=str(exc))
        return RunResult(Outcome.STALE)
    finally:
        structlog.contextvars.unbind_contextvars("site", "operation", "kind", "step")


def _run_claimed(operation: Operation) -> RunResult:
    policy = KINDS[operation.kind]
    site = operation.site
    log.info("operation running", owner=operation.lease_owner)
    policy.on_start(site, "")

    results: dict[str, dict] = {}
    for step in operation.steps.order_by("position"):
        if step.status in StepStatus.done():
            results[step.name] = step.result
            continue

        result = _run_step(operation, step, results)
        if result.outcome is Outcome.RETRY:
            retry_at = timezone.now() + timedelta(seconds=result.retry_in)
            operation.release(status=OperationStatus.QUEUED, retry_at=retry_at)
            log.warning("operation waiting to retry", step=step.name, retry_in=result.retry_in)
            return result
        if result.outcome is Outcome.FAILED:
            _fail(operation, step, results)
            return result
        results[step.name] = step.result

    operation.release(status=OperationStatus.SUCCEEDED)
    site.refresh_from_db()
    policy.on_success(site, "")
    log.info("operation succeeded")
    return RunResult(Outcome.SUCCEEDED)


def _run_step(operation: Operation, step: OperationStep, results: dict[str, dict]) -> RunResult:
    structlog.contextvars.bind_contextvars(step=step.name)
    operation.renew_lease(lease_seconds=settings.HOSTYARD_OPERATION_LEASE_SECONDS)
    definition = get_step(step.name)

    step.status = StepStatus.RUNNING
    step.attempts += 1
    step.started_at = timezone.now()
    step.finished_at = None
    step.save(update_fields=["status", "attempts", "started_at", "finished_at"])
    log.info("step started", attempt=step.attempts)

    started = time.monotonic()
    operation.site.refresh_from_db()
    ctx = StepContext(operation=operation, step=step, site=operation.site, results=results)
    try:
        output = definition.run(ctx) or {}
    except SkipStep as exc:
        _finish_step(step, started, status=StepStatus.SKIPPED, message=str(exc))
        log.info("step skipped", reason=str(exc))
        return RunResult(Outcome.SUCCEEDED)
    except PermanentError as exc:
        _finish_step(step, started, status=StepStatus.FAILED, error=exc)
        log.error("step failed", error=exc.message, code=exc.code)
        return RunResult(Outcome.FAILED)
    except StaleOperation:
        raise
    except Exception as exc:  # noqa: BLE001 - unknown errors are retried, then fail the step
        error = _as_transient(exc)
        if step.attempts >= settings.HOSTYARD_STEP_MAX_ATTEMPTS:
            final = PermanentError(
                f"Gave up after {step.attempts} attempts: {error.message}",
                code=error.code,
                detail=error.detail,
            )
            _finish_step(step, started, status=StepStatus.FAILED, error=final)
            log.error("step failed after retries", error=final.message, attempts=step.attempts)
            return RunResult(Outcome.FAILED)

        delay = retry_delay(step.attempts, error.retry_after)
        _finish_step(step, started, status=StepStatus.PENDING, error=error)
        log.warning("step will retry", error=error.message, attempt=step.attempts, delay=delay)
        return RunResult(Outcome.RETRY, retry_in=delay)

    _finish_step(step, started, status=StepStatus.SUCCEEDED, result=output)
    log.info("step succeeded", duration_ms=step.duration_ms)
    return RunResult(Outcome.SUCCEEDED)


def _as_transient(exc: Exception) -> TransientError:
    if isinstance(exc, TransientError):
        return exc
    detail = "".join(traceback.format_exception(exc))
    if isinstance(exc, ProvisioningError):
        return TransientError(exc.message, code=exc.code, detail=detail)
    return TransientError(f"Unexpected error: {type(exc).__name__}: {exc}", detail=detail)


def _finish_step(
    step: OperationStep,
    started: float,
    *,
    status: str,
    result: dict | None = None,
    message: str = "",
    error: ProvisioningError | None = None,
) -> None:
    step.status = status
    step.duration_ms = int((time.monotonic() - started) * 1000)
    if status != StepStatus.PENDING:
        step.finished_at = timezone.now()
    if result is not None:
        step.result = result
    step.message = (error.message if error else message)[:1000]
    step.error_code = error.code if error else ""
    step.detail = error.detail if error else ""
    step.save(
        update_fields=[
            "status",
            "duration_ms",
            "finished_at",
            "result",
            "message",
            "error_code",
            "detail",
        ]
    )


def _fail(operation: Operation, failed_step: OperationStep, results: dict[str, dict]) -> None:
    policy = KINDS[operation.kind]
    if policy.compensate:
        _compensate(operation)

    reason = f"{failed_step.name}: {failed_step.message}"
    operation.release(
        status=OperationStatus.FAILED,
        error_code=failed_step.error_code,
        error_message=reason,
    )
    site = operation.site
    site.refresh_from_db()
    policy.on_failure(site, reason[:500])
    log.error("operation failed", failed_step=failed_step.name, error=failed_step.message)


def _compensate(operation: Operation) -> None:
    """Undo the succeeded steps in reverse order; a failed undo is recorded, not raised."""
    done = operation.steps.filter(status=StepStatus.SUCCEEDED).order_by("-position")
    for step in done:
        definition = get_step(step.name)
        if definition.undo is None:
            continue
        ctx = StepContext(operation=operation, step=step, site=operation.site)
        try:
            definition.undo(ctx)
        except Exception as exc:  # noqa: BLE001 - compensation is best effort; the reconciler follows up
            step.result = {**step.result, "undo_error": str(exc)}
            log.error("undo failed", undo_step=step.name, error=str(exc))
        else:
            step.result = {**step.result, "undone": True}
        step.save(update_fields=["result"])
