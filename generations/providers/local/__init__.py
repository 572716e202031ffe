"""The offline `local` provider: work done inside the Celery worker process, with no network and no key.

Each submitted job runs on its own daemon thread; `poll` and `cancel` talk to it through a
process-global registry keyed by request id. That registry lives only as long as the worker process,
so a poll for an id it does not know means the worker restarted and the job must be run again.

Work functions live in sibling modules (sketch, upscale, background). Each exposes
`validate(inputs) -> dict` (normalised parameters, raising ProviderError "invalid_input") and
`run(inputs, report, cancel) -> list[Output]`; both are plain functions so they can be tested without
threads.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from types import ModuleType
from typing import Any

from generations.providers.base import (
    AssetInput,
    CatalogModel,
    Output,
    ProviderError,
    ProviderJob,
    ProviderStatus,
    State,
)

logger = logging.getLogger(__name__)

Report = Callable[[int, str | None], None]
"""`report(progress, log_line)`: progress 0-100 (never goes backwards), an optional line for the log."""

# provider_model -> module holding validate()/run(); imported on first use so a worker that only runs
# sketches never pays for pyvips or mediapipe.
WORK_MODULES: dict[str, str] = {
    "sketch": "generations.providers.local.sketch",
    "upscale": "generations.providers.local.upscale",
    "remove-background": "generations.providers.local.background",
}

# A finished job is normally dropped when its terminal status is polled. The runner stops polling after
# it cancels a job or gives up on a timeout, and a runner can die between polls; this bounds what such
# orphans hold (canceled jobs keep no outputs, so it is mostly about crashed pollers).
FINISHED_JOB_TTL_SECONDS = 600.0

LOST_MESSAGE = "local job is not running in this worker; it will be retried"


class JobCanceled(Exception):
    """Raised by a work function when it notices the cancel event between steps."""


def check_canceled(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise JobCanceled()


def invalid(message: str) -> ProviderError:
    return ProviderError(message, code="invalid_input", retryable=False)


def vips_failure(exc: Exception, what: str) -> ProviderError:
    """A readable ProviderError for a libvips error (usually a truncated or corrupt file)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = lines[-1] if lines else type(exc).__name__
    return invalid(f"{what} could not be processed ({detail}).")


# Parameter helpers shared by the work modules. The API validates inputs against the catalog schema
# before they get here; these exist for inputs that slipped through (older schema, direct calls), so the
# failure is a readable message rather than a TypeError deep inside Pillow or libvips.

def int_param(inputs: Mapping[str, Any], name: str, *, default: int, minimum: int, maximum: int,
              multiple_of: int | None = None) -> int:
    value = inputs.get(name)
    if value is None:
        return default
    # bool is an int subclass, and JSON Schema treats true/false as non-integers.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{name} must be an integer, not {value!r}.")
    if isinstance(value, float):
        if not value.is_integer():
            raise invalid(f"{name} must be a whole number, not {value!r}.")
        value = int(value)
    if not minimum <= value <= maximum:
        raise invalid(f"{name} must be between {minimum} and {maximum}, not {value}.")
    if multiple_of and value % multiple_of:
        raise invalid(f"{name} must be a multiple of {multiple_of}, not {value}.")
    return value


def number_param(inputs: Mapping[str, Any], name: str, *, default: float, minimum: float,
                 maximum: float) -> float:
    value = inputs.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{name} must be a number, not {value!r}.")
    if not minimum <= value <= maximum:
        raise invalid(f"{name} must be between {minimum:g} and {maximum:g}, not {value:g}.")
    return float(value)


def enum_param(inputs: Mapping[str, Any], name: str, choices: list[Any], *, default: Any) -> Any:
    value = inputs.get(name)
    if value is None:
        return default
    # `2 == 2.0 == True` in Python; compare types too so the enum means what the schema says.
    for choice in choices:
        if value == choice and type(value) is type(choice):
            return choice
    if isinstance(value, float) and value.is_integer() and int(value) in choices:
        return int(value)
    raise invalid(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}.")


def asset_param(inputs: Mapping[str, Any], name: str) -> AssetInput:
    value = inputs.get(name)
    if value is None:
        raise invalid(f"{name} is required.")
    # Duck-typed so tests (and any future in-memory asset) only need `read()`; a bare asset id here
    # means the runner did not resolve it, which is a bug upstream rather than something to guess at.
    if not callable(getattr(value, "read", None)):
        raise invalid(f"{name} must be an uploaded image, not {type(value).__name__}.")
    kind = getattr(value, "kind", "image")
    if kind and kind != "image":
        raise invalid(f"{name} must be an image, not a {kind}.")
    return value


@dataclass
class _Job:
    request_id: str
    model_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    state: State = "queued"
    progress: int = 0
    logs: list[str] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    error_code: str = ""
    error_message: str = ""
    retryable: bool = False
    finished_at: float | None = None

    @property
    def terminal(self) -> bool:
        return self.state in ("succeeded", "failed", "canceled")


_jobs: dict[str, _Job] = {}
_lock = threading.Lock()


def _work_module(provider_model: str) -> ModuleType:
    try:
        dotted = WORK_MODULES[provider_model]
    except KeyError:
        raise ProviderError(f"The local provider has no model named {provider_model!r}.",
                            code="unknown_model", retryable=False) from None
    return import_module(dotted)


def _forget_stale_jobs(now: float) -> None:
    """Drop finished jobs nobody polled for a long time. Caller holds the lock."""
    stale = [rid for rid, job in _jobs.items()
             if job.finished_at is not None and now - job.finished_at > FINISHED_JOB_TTL_SECONDS]
    for rid in stale:
        del _jobs[rid]


def _make_reporter(job: _Job) -> Report:
    def report(progress: int, log: str | None = None) -> None:
        with _lock:
            # Progress shown in the UI should never jump backwards, whatever a work function says.
            job.progress = max(job.progress, min(100, max(0, int(progress))))
            if log:
                job.logs.append(log)
    return report


def _finish(job: _Job, state: State, *, outputs: list[Output] | None = None, error_code: str = "",
            error_message: str = "", retryable: bool = False) -> None:
    with _lock:
        # A cancel that arrived while the work was finishing wins: cancel() already told the caller
        # True, so reporting "succeeded" afterwards would contradict it.
        if job.cancel.is_set() and state != "failed":
            state, outputs = "canceled", []
        job.state = state
        job.outputs = outputs or []
        job.error_code = error_code
        job.error_message = error_message
        job.retryable = retryable
        if state == "succeeded":
            job.progress = 100
        job.finished_at = time.monotonic()


def _run_job(job: _Job, module: ModuleType, inputs: dict[str, Any]) -> None:
    with _lock:
        job.state = "running"
    try:
        check_canceled(job.cancel)
        outputs = module.run(inputs, _make_reporter(job), job.cancel)
    except JobCanceled:
        _finish(job, "canceled")
    except ProviderError as exc:
        _finish(job, "failed", error_code=exc.code, error_message=exc.message, retryable=exc.retryable)
    except MemoryError:
        _finish(job, "failed", error_code="out_of_memory", retryable=False,
                error_message="The worker ran out of memory for this job; try a smaller input.")
    except Exception as exc:  # the thread must always leave a terminal state behind for poll
        logger.exception("local job %s (%s) crashed", job.request_id, job.model_id)
        _finish(job, "failed", error_code="local_error", retryable=False,
                error_message=f"The local {job.model_id} job failed: {type(exc).__name__}: {exc}")
    else:
        _finish(job, "succeeded", outputs=outputs)


class LocalProvider:
    name = "local"

    def submit(self, model: CatalogModel, inputs: dict[str, Any], *, credentials: dict[str, str] | None,
               webhook_url: str | None = None) -> ProviderJob:
        module = _work_module(model.provider_model)
        # Validate before starting a thread so bad input fails the submit, not a later poll.
        module.validate(inputs)
        job = _Job(request_id=uuid.uuid4().hex, model_id=model.id)
        thread = threading.Thread(target=_run_job, args=(job, module, dict(inputs)),
                                  name=f"local-{model.provider_model}-{job.request_id[:8]}", daemon=True)
        with _lock:
            _forget_stale_jobs(time.monotonic())
            _jobs[job.request_id] = job
        thread.start()
        return ProviderJob(provider=self.name, request_id=job.request_id, data={"model": model.id})

    def poll(self, job: ProviderJob) -> ProviderStatus:
        with _lock:
            record = _jobs.get(job.request_id)
            if record is None:
                return ProviderStatus(state="failed", error_code="lost", error_message=LOST_MESSAGE,
                                      retryable=True)
            logs, record.logs = record.logs, []
            if record.terminal:
                del _jobs[job.request_id]
            status = ProviderStatus(state=record.state, progress=record.progress, logs=logs,
                                    error_code=record.error_code, error_message=record.error_message,
                                    retryable=record.retryable)
            if record.state == "succeeded":
                status.outputs = list(record.outputs)
                status.usage = {"images": len(record.outputs)}
            return status

    def cancel(self, job: ProviderJob) -> bool:
        with _lock:
            record = _jobs.get(job.request_id)
            if record is None or record.terminal:
                return False
            record.cancel.set()
            return True


def running_job_count() -> int:
    """Jobs this worker process still holds (running, or finished but not yet polled)."""
    with _lock:
        return len(_jobs)


__all__ = [
    "FINISHED_JOB_TTL_SECONDS",
    "LOST_MESSAGE",
    "JobCanceled",
    "LocalProvider",
    "Report",
    "asset_param",
    "check_canceled",
    "enum_param",
    "int_param",
    "invalid",
    "number_param",
    "running_job_count",
    "vips_failure",
]
