"""The thread-job registry the local provider and the synchronous adapters share
(generations/providers/jobs.py): progress and logs while a job runs, its end handed over once, a job
lost with its worker, and the two kinds of cancel. No database, no network."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from generations.providers import jobs
from generations.providers.base import Output, ProviderError, ProviderJob, ProviderStatus
from generations.providers.jobs import SyncAdapterMixin, ThreadJob, ThreadJobRegistry
from tests.providers.support import poll_to_end

WAIT = 10.0  # seconds an event may take before the test fails


def local_registry() -> ThreadJobRegistry:
    return ThreadJobRegistry("local", lost_message="not here", cooperative_cancel=True)


def gated(status: ProviderStatus, *, started: threading.Event, go: threading.Event) -> Callable[[ThreadJob], ProviderStatus]:
    """Work that reports 40 % with a log line, then waits for `go` before ending with `status`."""

    def work(job: ThreadJob) -> ProviderStatus:
        job.report(40, "halfway")
        started.set()
        assert go.wait(WAIT)
        return status

    return work


def job_for(request_id: str) -> ProviderJob:
    return ProviderJob(provider="local", request_id=request_id)


class Adapter(SyncAdapterMixin):
    """poll/cancel by ProviderJob, as the adapters have them."""

    def __init__(self, registry: ThreadJobRegistry) -> None:
        self.registry = registry


def test_a_job_reports_progress_and_logs_while_it_runs_then_its_end_once() -> None:
    registry, started, go = local_registry(), threading.Event(), threading.Event()
    done = ProviderStatus(state="succeeded", progress=100, outputs=[Output(kind="text", mime="text/plain", data=b"x")])
    request_id = registry.start(gated(done, started=started, go=go), label="test job", thread_name="test-job")
    assert started.wait(WAIT)

    running = registry.poll(request_id)
    assert (running.state, running.progress, running.logs) == ("running", 40, ["halfway"])
    assert registry.poll(request_id).logs == []  # each line is handed over once
    go.set()
    [*_, end] = poll_to_end(Adapter(registry), job_for(request_id))
    assert end.state == "succeeded" and end.outputs[0].data == b"x"
    assert registry.poll(request_id).error_code == "lost" and registry.in_flight() == 0


def test_a_poll_for_a_job_this_process_does_not_hold_reports_it_lost_and_retryable() -> None:
    status = local_registry().poll("never-started")
    assert (status.state, status.error_code, status.error_message, status.retryable) == (
        "failed", "lost", "not here", True)


def test_a_cooperative_cancel_waits_for_the_work_and_turns_a_late_success_into_canceled() -> None:
    registry, started, go = local_registry(), threading.Event(), threading.Event()
    request_id = registry.start(gated(ProviderStatus(state="succeeded", progress=100), started=started, go=go),
                                label="test job", thread_name="test-job")
    assert started.wait(WAIT)
    assert registry.cancel(request_id) is True
    assert registry.poll(request_id).state == "running"  # the work has not seen the cancel yet
    go.set()
    end = poll_to_end(Adapter(registry), job_for(request_id))[-1]
    assert (end.state, end.outputs, end.progress) == ("canceled", [], 40)
    assert registry.cancel(request_id) is False  # nothing left to cancel


def test_a_failure_the_work_ends_with_after_a_cooperative_cancel_stays_a_failure() -> None:
    registry, started, go = local_registry(), threading.Event(), threading.Event()
    failed = ProviderStatus(state="failed", error_code="out_of_memory")
    request_id = registry.start(gated(failed, started=started, go=go), label="test job", thread_name="test-job")
    assert started.wait(WAIT)
    assert registry.cancel(request_id) is True
    go.set()
    end = poll_to_end(Adapter(registry), job_for(request_id))[-1]
    assert (end.state, end.error_code) == ("failed", "out_of_memory")


def test_a_call_that_cannot_be_stopped_reads_canceled_at_once_and_its_late_answer_is_dropped() -> None:
    registry, answered, go = ThreadJobRegistry.for_calls("openai"), threading.Event(), threading.Event()

    def call() -> ProviderStatus:
        assert go.wait(WAIT)
        answered.set()
        return ProviderStatus(state="succeeded")

    request_id = registry.start_call(call, description="OpenAI gpt-test")
    first = registry.poll(request_id)
    assert first.state == "running" and first.progress is None
    assert first.logs == ["Sent to OpenAI gpt-test; waiting for the response "
                          "(this API answers in one piece and reports no progress)."]
    assert registry.cancel(request_id) is True
    assert registry.cancel(request_id) is False  # already canceled
    assert registry.poll(request_id).state == "canceled"
    go.set()
    assert answered.wait(WAIT)
    assert registry.poll(request_id).error_code == "lost"  # the answer was not kept for anyone


def test_a_call_that_answers_is_handed_over_with_how_long_it_took() -> None:
    registry = ThreadJobRegistry.for_calls("anthropic")
    request_id = registry.start_call(lambda: ProviderStatus(state="succeeded", logs=["used 10 tokens"]),
                                     description="Anthropic claude-test")
    end = poll_to_end(Adapter(registry), job_for(request_id))[-1]
    assert end.state == "succeeded" and end.progress == 100
    assert end.logs[-2] == "used 10 tokens" and end.logs[-1].startswith("Anthropic claude-test answered in ")


def test_a_provider_error_on_the_thread_is_a_failed_status_carrying_its_retry_after() -> None:
    registry = ThreadJobRegistry.for_calls("openai")

    def call() -> ProviderStatus:
        raise ProviderError("Slow down.", code="rate_limited", retryable=True, retry_after=7.0)

    end = poll_to_end(Adapter(registry), job_for(registry.start_call(call, description="OpenAI gpt-test")))[-1]
    assert (end.state, end.error_code, end.error_message, end.retryable, end.usage) == (
        "failed", "rate_limited", "Slow down.", True, {"retry_after": 7.0})


def test_a_crash_on_the_thread_still_leaves_a_failed_status_behind() -> None:
    registry = ThreadJobRegistry.for_calls("openrouter")

    def call() -> ProviderStatus:
        raise KeyError("choices")

    end = poll_to_end(Adapter(registry), job_for(registry.start_call(call, description="OpenRouter llama")))[-1]
    assert (end.state, end.error_code, end.retryable) == ("failed", "provider_error", False)
    assert end.error_message == "The openrouter call failed: KeyError: 'choices'"


class WatchedRegistry(ThreadJobRegistry):
    """Says when a job's thread has recorded its end, so a test can wait for that instead of a time."""

    def __init__(self) -> None:
        super().__init__("local", lost_message="not here", cooperative_cancel=True)
        self.ended = threading.Event()

    def _run(self, job: ThreadJob, work: Callable[[ThreadJob], ProviderStatus]) -> None:
        super()._run(job, work)
        self.ended.set()


def test_finished_jobs_nobody_polls_are_forgotten_when_the_next_job_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "FINISHED_JOB_TTL_SECONDS", -1.0)  # every finished job is already stale
    registry = WatchedRegistry()
    orphan = registry.start(lambda job: ProviderStatus(state="succeeded"), label="test job", thread_name="test-job")
    assert registry.ended.wait(WAIT)
    registry.start(lambda job: ProviderStatus(state="succeeded"), label="test job", thread_name="test-job")
    assert registry.poll(orphan).error_code == "lost"
