"""The offline `local` provider: work done inside the Celery worker process, with no network and no key.

Each submitted job runs on its own daemon thread; `poll` and `cancel` talk to it through a
process-global registry keyed by request id (generations.providers.jobs, shared with the synchronous
adapters). That registry lives only as long as the worker process, so a poll for an id it does not know
means the worker restarted and the job must be run again. Cancel is cooperative: the engines check the
cancel event between steps.

Work functions live in sibling modules (sketch, upscale, background). Each exposes
`validate(inputs) -> dict` (normalised parameters, raising ProviderError "invalid_input") and
`run(inputs, report, cancel) -> list[Output]`; both are plain functions so they can be tested without
threads.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from importlib import import_module
from types import ModuleType
from typing import Any

from generations.providers.base import (
    AssetInput,
    CatalogModel,
    ProviderError,
    ProviderJob,
    ProviderStatus,
)
from generations.providers.jobs import ThreadJob, ThreadJobRegistry, Work

logger = logging.getLogger(__name__)

Report = Callable[[int, str | None], None]
"""`report(progress, log_line)`: progress 0-100 (never goes backwards), an optional line for the log
(`ThreadJob.report`)."""

# provider_model -> module holding validate()/run(); imported on first use so a worker that only runs
# sketches never pays for pyvips or mediapipe.
WORK_MODULES: dict[str, str] = {
    "sketch": "generations.providers.local.sketch",
    "upscale": "generations.providers.local.upscale",
    "remove-background": "generations.providers.local.background",
}

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


# Process-global: a job belongs to the worker process that runs it (the module docstring says why).
_jobs = ThreadJobRegistry("local", lost_message=LOST_MESSAGE, cooperative_cancel=True)


def _work_module(provider_model: str) -> ModuleType:
    try:
        dotted = WORK_MODULES[provider_model]
    except KeyError:
        raise ProviderError(f"The local provider has no model named {provider_model!r}.",
                            code="unknown_model", retryable=False) from None
    return import_module(dotted)


def _work(model_id: str, module: ModuleType, inputs: dict[str, Any]) -> Work:
    """The job's thread: the engine's run(), its end as a terminal status."""

    def work(job: ThreadJob) -> ProviderStatus:
        try:
            check_canceled(job.cancel)
            outputs = module.run(inputs, job.report, job.cancel)
        except JobCanceled:
            return ProviderStatus(state="canceled")
        except MemoryError:
            return ProviderStatus(state="failed", error_code="out_of_memory", retryable=False,
                                  error_message="The worker ran out of memory for this job; try a smaller input.")
        except ProviderError:
            raise  # the registry reports it as the job's failure
        except Exception as exc:  # the thread must always leave a terminal state behind for poll
            logger.exception("local job %s (%s) crashed", job.request_id, model_id)
            return ProviderStatus(state="failed", error_code="local_error", retryable=False,
                                  error_message=f"The local {model_id} job failed: {type(exc).__name__}: {exc}")
        return ProviderStatus(state="succeeded", progress=100, outputs=list(outputs),
                              usage={"images": len(outputs)})

    return work


class LocalProvider:
    name = "local"

    def submit(self, model: CatalogModel, inputs: dict[str, Any], *, credentials: dict[str, str] | None,
               webhook_url: str | None = None) -> ProviderJob:
        module = _work_module(model.provider_model)
        # Validate before starting a thread so bad input fails the submit, not a later poll.
        module.validate(inputs)
        request_id = uuid.uuid4().hex
        _jobs.start(_work(model.id, module, dict(inputs)), label=f"local {model.id} job", request_id=request_id,
                    thread_name=f"local-{model.provider_model}-{request_id[:8]}", progress=0)
        return ProviderJob(provider=self.name, request_id=request_id, data={"model": model.id})

    def poll(self, job: ProviderJob) -> ProviderStatus:
        return _jobs.poll(job.request_id)

    def cancel(self, job: ProviderJob) -> bool:
        return _jobs.cancel(job.request_id)


def running_job_count() -> int:
    """Jobs this worker process still holds (running, or finished but not yet polled)."""
    return _jobs.in_flight()


__all__ = [
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
