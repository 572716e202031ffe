"""Jobs that run on a thread of this worker process behind the submit/poll/cancel contract: the local
provider's engines, and the calls of the synchronous APIs (OpenAI, Anthropic, OpenRouter, Google's
generateContent and Imagen), which answer each request in the same HTTP exchange.

`submit` starts the job on a daemon thread and returns at once; `poll` hands over its progress and new
log lines while it runs, then its terminal status exactly once. Doing the work inside `submit` instead
would be simpler but would block the runner for the whole job: no heartbeat (the sweep re-queues a job
whose heartbeat is older than STALE_RUNNING_AFTER), no cancel check and no timeout until it ends.

A registry lives only as long as the worker process. A poll for an id it does not know means the worker
restarted mid-job: it reports the documented "lost" status and the runner submits afresh. The first
run's result is gone either way; a synchronous API has no request id to fetch it by later.

Cancel comes in two kinds, chosen per registry:

- cooperative (the local engines): the work watches `job.cancel` between its steps and ends itself, so
  a canceled job reports running until it does; a failure it ends with stays a failure, anything else
  is reported canceled.
- not cooperative (a request already sent to a provider): cancel can only stop the waiting. The next
  poll reports canceled and forgets the job; the answer that arrives later is dropped. There is no
  cancel endpoint for a synchronous call, so the provider still bills it; the studio charges the user
  nothing for a canceled job, so that cost is the platform's.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from generations.providers.base import ProviderError, ProviderJob, ProviderStatus, State

logger = logging.getLogger(__name__)

# A finished job is normally dropped when its terminal status is polled. The runner stops polling after
# it cancels a job or gives up on a timeout, and a runner can die between polls; this bounds what such
# orphans hold.
FINISHED_JOB_TTL_SECONDS = 600.0
CALL_LOST_MESSAGE = "The call to the provider was not running in this worker; it will be sent again."

Call = Callable[[], ProviderStatus]
"""A synchronous provider call: returns the succeeded status (outputs, usage, cost) or raises
ProviderError. Runs on the job's own thread."""


@dataclass
class ThreadJob:
    """One job's state, shared by its thread and the pollers. Written under the registry's lock."""

    request_id: str
    label: str
    lock: threading.Lock = field(repr=False)
    cancel: threading.Event = field(default_factory=threading.Event)
    state: State = "queued"
    progress: int | None = None  # None: the work reports no progress (a synchronous call)
    logs: list[str] = field(default_factory=list)  # lines not yet handed to a poll
    started_at: float = field(default_factory=time.monotonic)
    result: ProviderStatus | None = None  # the terminal status, once the work has ended
    finished_at: float | None = None

    def report(self, progress: int, log: str | None = None) -> None:
        """Progress 0-100 and an optional log line, from the work's thread."""
        with self.lock:
            # Progress shown in the UI should never jump backwards, whatever a work function says.
            self.progress = max(self.progress or 0, min(100, max(0, int(progress))))
            if log:
                self.logs.append(log)


Work = Callable[[ThreadJob], ProviderStatus]
"""Does the job on its thread and returns its terminal status, or raises ProviderError."""


def failed_status(exc: ProviderError) -> ProviderStatus:
    """A ProviderError raised on a job's thread, as the failed status a poll hands over."""
    status = ProviderStatus(state="failed", error_code=exc.code, error_message=exc.message,
                            retryable=exc.retryable)
    if exc.retry_after:
        # The runner reads a failed status's Retry-After from usage (see generations.runner's requeue).
        status.usage["retry_after"] = exc.retry_after
    return status


class ThreadJobRegistry:
    """The jobs one provider has in flight in this worker process, keyed by request id."""

    def __init__(self, name: str, *, lost_message: str, cooperative_cancel: bool) -> None:
        self.name = name
        self.lost_message = lost_message
        self.cooperative_cancel = cooperative_cancel
        self._jobs: dict[str, ThreadJob] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_calls(cls, provider: str) -> ThreadJobRegistry:
        """A registry for a synchronous API's calls (cancel stops the waiting, not the call)."""
        return cls(provider, lost_message=CALL_LOST_MESSAGE, cooperative_cancel=False)

    def start(self, work: Work, *, label: str, thread_name: str, request_id: str | None = None,
              state: State = "queued", progress: int | None = None, logs: list[str] | None = None) -> str:
        job = ThreadJob(request_id=request_id or uuid.uuid4().hex, label=label, lock=self._lock, state=state,
                        progress=progress, logs=list(logs or []))
        thread = threading.Thread(target=self._run, args=(job, work), daemon=True, name=thread_name)
        with self._lock:
            self._forget_stale(time.monotonic())
            self._jobs[job.request_id] = job
        thread.start()
        return job.request_id

    def start_call(self, call: Call, *, description: str) -> str:
        """Run one synchronous provider call; `description` (e.g. "OpenAI gpt-image-1") names it in the log."""

        def work(job: ThreadJob) -> ProviderStatus:
            try:
                result = call()
            except ProviderError:
                raise
            except Exception as exc:  # the thread must always leave a result behind for poll
                logger.exception("%s call %s crashed", self.name, job.request_id)
                return ProviderStatus(state="failed", error_code="provider_error", retryable=False,
                                      error_message=f"The {self.name} call failed: {type(exc).__name__}: {exc}")
            if result.state == "succeeded":
                result.progress = 100
                result.logs.append(f"{description} answered in {time.monotonic() - job.started_at:.1f}s.")
            return result

        request_id = f"{self.name}-{uuid.uuid4().hex}"
        return self.start(work, label=description, thread_name=f"{self.name}-{request_id[-8:]}",
                          request_id=request_id, state="running",
                          logs=[f"Sent to {description}; waiting for the response "
                                "(this API answers in one piece and reports no progress)."])

    def poll(self, request_id: str) -> ProviderStatus:
        with self._lock:
            job = self._jobs.get(request_id)
            if job is None:
                return ProviderStatus(state="failed", error_code="lost", error_message=self.lost_message,
                                      retryable=True)
            logs, job.logs = job.logs, []
            if job.cancel.is_set() and not self.cooperative_cancel:
                del self._jobs[request_id]
                return ProviderStatus(state="canceled", logs=logs)
            if job.result is None:
                return ProviderStatus(state=job.state, progress=job.progress, logs=logs)
            del self._jobs[request_id]
            result = job.result
            result.logs = logs + result.logs
            return result

    def cancel(self, request_id: str) -> bool:
        """True when the job was still running and is now asked to stop."""
        with self._lock:
            job = self._jobs.get(request_id)
            if job is None or job.result is not None:
                return False
            if job.cancel.is_set() and not self.cooperative_cancel:
                return False
            job.cancel.set()
            return True

    def in_flight(self) -> int:
        """Jobs this worker process still holds (running, or finished but not yet polled)."""
        with self._lock:
            return len(self._jobs)

    def _run(self, job: ThreadJob, work: Work) -> None:
        with self._lock:
            if job.state == "queued":
                job.state = "running"
        try:
            status = work(job)
        except ProviderError as exc:
            status = failed_status(exc)
        except Exception as exc:  # the thread must always leave a result behind for poll
            logger.exception("%s job %s crashed", self.name, job.request_id)
            status = ProviderStatus(state="failed", error_code="provider_error", retryable=False,
                                    error_message=f"{job.label} failed: {type(exc).__name__}: {exc}")
        with self._lock:
            if job.cancel.is_set():
                if not self.cooperative_cancel:
                    logger.info("%s call %s finished after it was canceled; its result is dropped (the "
                                "provider still bills it)", self.name, job.request_id)
                    self._jobs.pop(job.request_id, None)
                    return
                # A cancel that arrived while the work was finishing wins: cancel() already told the
                # caller True, so reporting "succeeded" afterwards would contradict it.
                if status.state != "failed":
                    status = ProviderStatus(state="canceled")
            if status.progress is None:
                status.progress = job.progress
            job.state = status.state
            job.result = status
            job.finished_at = time.monotonic()

    def _forget_stale(self, now: float) -> None:
        """Drop finished jobs nobody polled for a long time. Caller holds the lock."""
        stale = [rid for rid, job in self._jobs.items()
                 if job.finished_at is not None and now - job.finished_at > FINISHED_JOB_TTL_SECONDS]
        for rid in stale:
            del self._jobs[rid]


class SyncAdapterMixin:
    """poll and cancel for adapters whose calls run on a `ThreadJobRegistry.for_calls` registry (OpenAI,
    Anthropic, OpenRouter): the job's request id is the registry's."""

    registry: ThreadJobRegistry

    def poll(self, job: ProviderJob) -> ProviderStatus:
        return self.registry.poll(job.request_id)

    def cancel(self, job: ProviderJob) -> bool:
        return self.registry.cancel(job.request_id)


__all__ = ["CALL_LOST_MESSAGE", "FINISHED_JOB_TTL_SECONDS", "Call", "SyncAdapterMixin", "ThreadJob",
           "ThreadJobRegistry", "Work", "failed_status"]
