"""The worker's run of one generation, as named steps: claim → submit (or re-use the provider's
request) → poll → fetch outputs → finish, fail, requeue or fall back (the ends live in
generations/attempts.py). See docs/ARCHITECTURE.md, "A generation's life" and "Queues".

Polling happens in one of two ways. A job whose state lives at the provider (the adapter's
`parks_between_polls`: fal's queue, Replicate's predictions, Google's long-running operations) is,
when the task asks for it (`park=True`), polled once per task run and then parked: the row is let go
(`awaiting_webhook`, with a fresh heartbeat) and the next poll is sent to the queue with a countdown,
so a worker slot serves many running jobs instead of sleeping beside one. Everything else (the local
provider's engines and the synchronous adapters' calls, which live on a thread of this worker
process), and any job called directly (tests, the CLI), is polled here until it ends. A job the runner
has asked the provider to stop (a cancel, the timeout) is polled here to the end of the grace too.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.db.models import F
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from assets.models import Asset
from generations import dispatch
from generations.attempts import (
    Attempt,
    cancel_unattended,
    fallback,
    finish,
    requeue,
)
from generations.credentials import KeySource, credentials_for
from generations.fetch import Prepared, outputs_fetch
from generations.health import circuit_open_for, record_outcome
from generations.inputs import asset_fields
from generations.models import AIModel, Generation, Status
from generations.providers.base import AssetInput, CatalogModel, Provider, ProviderError, ProviderJob, ProviderStatus
from generations.providers.registry import get_provider


def generation_run(generation_id: Any, *, park: bool = False) -> None:
    """Run one queued generation. Safe to call twice: only the call that claims the row (queued →
    running) does anything. Raises RetryLater for transient provider trouble. `park=True` (the task)
    lets a job whose provider keeps its state be parked between polls; otherwise it runs to the end."""
    if not _claim(generation_id):
        return
    _Runner(_load(generation_id), resuming=False, park=park).run()


def generation_resume(generation_id: Any, *, parked_at: str | None = None, park: bool = False) -> None:
    """Carry on with a parked job: its next poll, its webhook, the sweep finding it stale, or a cancel.
    Claimed atomically (parked → held), so a webhook delivered twice resumes it once. A poll message
    carries the heartbeat the job was parked with (`parked_at`): a message from an earlier park (sent
    again by the sweep, or delayed) finds the heartbeat moved on and does nothing, so a job never has
    two poll chains."""
    guard: dict[str, Any] = {"pk": generation_id, "status": Status.RUNNING, "awaiting_webhook": True}
    if parked_at:
        guard["heartbeat_at"] = parse_datetime(parked_at)
    if not Generation.objects.filter(**guard).update(awaiting_webhook=False, heartbeat_at=timezone.now()):
        return
    _Runner(_load(generation_id), resuming=True, park=park).run()


def _load(generation_id: Any) -> Generation:
    return Generation.objects.select_related("model", "project", "price_card").get(pk=generation_id)


# --- claim ------------------------------------------------------------------------------------------------

def _claim(generation_id: Any) -> bool:
    """queued → running for one worker. `started_at` stays the first attempt's (users see it);
    `attempt_started_at` is this attempt's, and the model's timeout runs from it. A queued job whose
    cancel was requested while it ran (then its worker died or it was re-queued to retry) is not
    claimed: it is canceled here and its hold released, rather than left queued for the sweep."""
    now = timezone.now()
    if Generation.objects.filter(pk=generation_id, status=Status.QUEUED, cancel_requested=False).update(
            status=Status.RUNNING, started_at=Coalesce(F("started_at"), now), attempt_started_at=now,
            heartbeat_at=now, attempts=F("attempts") + 1, queue_position=None):
        return True
    cancel_unattended(generation_id, status=Status.QUEUED)
    return False


def _catalog_model(model: AIModel) -> CatalogModel:
    return CatalogModel(id=model.id, provider=model.provider, provider_model=model.provider_model,
                        operation=model.operation, output_kind=model.output_kind, config=dict(model.config))


def _provider_inputs(generation: Generation) -> dict[str, Any]:
    inputs = dict(generation.inputs)
    for name in asset_fields(generation.model.input_schema):
        if not inputs.get(name):
            continue
        asset = Asset.objects.filter(pk=inputs[name], owner_id=generation.project.owner_id).first()
        if asset is None:
            raise ProviderError(f"The input asset for {name!r} no longer exists.", code="input_missing")
        inputs[name] = AssetInput(id=str(asset.pk), kind=asset.kind, mime=asset.mime, name=asset.name,
                                  storage_name=asset.file.name or "", size=asset.size, width=asset.width,
                                  height=asset.height)
    return inputs


def _webhook_url(provider: Provider) -> str | None:
    if not settings.PROVIDER_WEBHOOKS or not hasattr(provider, "parse_webhook"):
        return None
    return settings.SITE_URL + reverse("provider-webhook", kwargs={"provider": provider.name})


def provider_parks(provider: Provider, job: ProviderJob) -> bool:
    """Whether this job may be let go of between polls: its state lives at the provider, so any worker
    can poll it next. The adapter says so with `parks_between_polls`, a flag, or a method of the job
    where an adapter's jobs differ (Google: operations at Google, synchronous calls on a thread here)."""
    parks = getattr(provider, "parks_between_polls", False)
    return bool(parks(job) if callable(parks) else parks)


def _stop_grace(generation: Generation) -> float:
    """How long the runner keeps polling a job it asked the provider to stop: GENERATION_CANCEL_GRACE,
    never more than the model's own time limit."""
    return min(settings.GENERATION_CANCEL_GRACE.total_seconds(), float(generation.model.timeout_seconds))


class _Runner:
    """One task run of a claimed (or resumed) job: the steps below, in order."""

    def __init__(self, generation: Generation, *, resuming: bool, park: bool) -> None:
        self.attempt = Attempt(generation)
        self.generation = generation
        self.resuming = resuming
        self.park = park
        self.provider = get_provider(generation.model.provider)
        self.credentials: dict[str, str] | None = None
        self.inputs: dict[str, Any] | None = None  # read in _prepare unless the provider already has the job
        # Per attempt: a job re-queued after its worker died has its whole timeout again (a parked job
        # carries on within the attempt that submitted it).
        self.deadline = ((generation.attempt_started_at or generation.started_at or timezone.now())
                         + timedelta(seconds=generation.model.timeout_seconds))
        self.webhook_url = None if resuming else _webhook_url(self.provider)
        self.reused = False
        # Why the runner asked the provider to stop the job ("cancel": the user's; "timeout": the model's
        # limit), and until when it waits for the provider to say how the job ended.
        self.stop, self.stop_by, self.stop_blips = "", timezone.now(), 0

    def run(self) -> None:
        if not self._prepare():
            return
        generation = self.generation
        if not generation.provider_request_id and not self.resuming and self._circuit_holds():
            return
        started = time.monotonic()
        prepared: list[Prepared] = []
        try:
            job = self._job()
            if job is None:
                return  # parked for the provider's callback
            status = self._poll(job)
            if status is None:
                return  # parked until its next poll
            prepared = outputs_fetch(self.provider, status) if status.state == "succeeded" else []
            call_failed = False
        except ProviderError as exc:
            # A call to the provider failed (its request may still be fine), as opposed to the provider
            # reporting that the job itself failed.
            call_failed = True
            status = ProviderStatus(state="failed", error_code=exc.code, error_message=exc.message,
                                    retryable=exc.retryable)
            if exc.retry_after:
                status.usage["retry_after"] = exc.retry_after
        if status.state == "succeeded" or (status.state == "failed" and not self.stop):
            # A parked job's latency is its attempt's, not this last task run's.
            since = (generation.attempt_started_at if self.resuming else None)
            latency = ((timezone.now() - since).total_seconds() if since else time.monotonic() - started) * 1000
            record_outcome(provider=generation.provider, model=generation.model_id, ok=status.state == "succeeded",
                           transient=status.retryable, error_code=status.error_code, latency_ms=latency)
        self._end(status, prepared, call_failed=call_failed)

    # --- steps ------------------------------------------------------------------------------------------

    def _prepare(self) -> bool:
        """The key and the inputs the provider gets; a job that cannot have them fails here."""
        generation, attempt = self.generation, self.attempt
        # The column's choices are KeySource's values.
        self.credentials = credentials_for(generation.user, generation.provider,
                                           source=cast(KeySource, generation.key_source))
        if self.credentials is None and generation.key_source != "none":
            whose = "your" if generation.key_source == "user" else "the platform's"
            attempt.finish_without_charge(status=Status.FAILED, code="no_key",
                                          message=f"This job was submitted to run on {whose} {generation.provider} "
                                                  "key, which is no longer configured.")
            return False
        if self.resuming and generation.provider_request_id:
            # The provider has the job: its inputs were sent with it. A parked job resumes every poll,
            # and one whose input asset was deleted meanwhile must still be polled to its end (it is
            # running, and billed, upstream). The key is another matter: polling needs it.
            return True
        try:
            self.inputs = _provider_inputs(generation)
        except ProviderError as exc:
            attempt.finish_without_charge(status=Status.FAILED, code=exc.code, message=exc.message)
            return False
        if not self.resuming:
            attempt.log(f"Started on {self.provider.name} (attempt {generation.attempts}).")
        return True

    def _circuit_holds(self) -> bool:
        """An open circuit: the job goes to a fallback, or waits for the circuit to close."""
        wait = circuit_open_for(self.generation.provider)
        if not wait:
            return False
        if fallback(self.attempt, reason="circuit_open"):
            return True
        # Not this job's fault: wait for the circuit to close without spending an attempt.
        self.attempt.log(f"{self.generation.provider} is failing for everyone right now; waiting {wait:.0f}s "
                         "before sending this job.")
        requeue(self.attempt, ProviderStatus(state="failed", error_code="circuit_open", retryable=True,
                                             usage={"retry_after": wait}), forget_request=True, refund_attempt=True)
        return True

    def _submit(self) -> ProviderJob:
        if self.inputs is None:  # a resumed job the provider lost, sent again (the local provider's)
            self.inputs = _provider_inputs(self.generation)
        job = self.provider.submit(_catalog_model(self.generation.model), self.inputs, credentials=self.credentials,
                                   webhook_url=self.webhook_url)
        self.attempt.flush(provider_request_id=job.request_id[:200], provider_data=job.data)
        job.credentials = self.credentials
        return job

    def _job(self) -> ProviderJob | None:
        """The provider's request: re-used where there is one (a retry: no second charge upstream, or a
        resumed job), else submitted. None when the job is now parked awaiting the provider's callback."""
        generation = self.generation
        if generation.provider_request_id:
            self.reused = True
            return ProviderJob(provider=self.provider.name, request_id=generation.provider_request_id,
                               data=generation.provider_data, credentials=self.credentials)
        job = self._submit()
        if self.webhook_url:
            # No worker waits on a webhook job: the provider calls us back (generations/webhooks.py),
            # and the sweep polls it if the callback never comes.
            self.attempt.log("Submitted; waiting for the provider's callback.")
            self.attempt.flush(awaiting_webhook=True)
            return None
        return job

    def _poll(self, job: ProviderJob) -> ProviderStatus | None:
        """Poll to a terminal status, asking the provider to stop the job on a cancel or past the
        deadline. None when the job was parked instead (see the module's docstring)."""
        attempt, generation = self.attempt, self.generation
        while True:
            try:
                status = self.provider.poll(job)
            except ProviderError as exc:
                if not (self.stop and exc.retryable and timezone.now() <= self.stop_by):
                    raise
                # A stopped job is never re-queued (its cancel or timeout stands), so a blip while asking
                # how it ended is waited out within the grace: the provider may still finish and bill it.
                if not self.stop_blips:
                    attempt.log(f"Could not reach the provider ({exc.code}); still waiting for the job to end.")
                self.stop_blips += 1
                attempt.flush()
                time.sleep(settings.GENERATION_POLL_INTERVAL)
                continue
            if self.reused and not self.stop and status.state == "failed" and status.error_code == "lost":
                if generation.cancel_requested:
                    # Lost with its dead worker after the user asked to cancel: nothing left to stop.
                    return ProviderStatus(state="canceled")
                # The provider no longer knows the request (the local provider's jobs die with the
                # worker process that ran them): submit it afresh, within this attempt.
                attempt.log("The previous request was lost with its worker; submitting again.")
                job, self.reused = self._submit(), False
                continue
            if job.data != generation.provider_data:
                # Adapters keep their place in job.data (e.g. how much of a log they have returned);
                # saved with the next write so a retried or resumed attempt carries on from there.
                attempt.dirty["provider_data"] = generation.provider_data = dict(job.data)
            attempt.record(status, write=False)
            if status.terminal:
                attempt.flush()
                return status
            if not self.stop:
                if attempt.cancel_requested():
                    self.stop = "cancel"
                elif timezone.now() > self.deadline:
                    self.stop = "timeout"
                if self.stop:
                    self.stop_by = self._stop_at_provider(job)
                elif self.park and provider_parks(self.provider, job):
                    self._park()
                    return None
            elif timezone.now() > self.stop_by:
                # Never hold a cancel forever: past the grace the job is given up on. The provider may
                # still finish (and bill) it; the log says so.
                attempt.log("The provider had not ended the job "
                            f"{_stop_grace(generation):.0f}s after it was asked to stop; giving up on it. It may "
                            "still finish upstream and be billed there.")
                return ProviderStatus(state="canceled")
            attempt.flush()
            time.sleep(settings.GENERATION_POLL_INTERVAL)

    def _park(self) -> None:
        """Let go of the job until its next poll, sent with a countdown. A job ended meanwhile (its row
        no longer running) gets no next poll."""
        parked_at = self.attempt.park()
        if parked_at is not None:
            dispatch.generation_poll_send(str(self.generation.pk), parked_at=parked_at.isoformat(),
                                          countdown=settings.GENERATION_PARKED_POLL_INTERVAL)

    def _stop_at_provider(self, job: ProviderJob) -> Any:
        """Ask the provider to stop the job, and return until when to keep polling for how it ended.

        A cancel is a request, not a stop: fal answers 202 CANCELLATION_REQUESTED for a running request
        and the app may still finish, and fal bills successful outputs; 400 ALREADY_COMPLETED means the
        result is waiting (https://fal.ai/docs/inference-api/queue/cancel). Replicate bills the time a
        canceled prediction ran (https://replicate.com/docs/topics/predictions/lifecycle). So the runner
        does not end the job here: it polls on until the provider reports a terminal state (_end_stopped)."""
        attempt, generation = self.attempt, self.generation
        if self.stop == "cancel":
            attempt.log("Cancel requested; asking the provider to stop the job.")
        else:
            attempt.log(f"The job took longer than {generation.model.timeout_seconds}s; asking the provider to stop it.")
        grace = _stop_grace(generation)
        if self.provider.cancel(job):
            attempt.log(f"The provider accepted the cancel; waiting up to {grace:.0f}s for the job to end "
                        "(it may still finish).")
        else:
            attempt.log(f"The provider did not accept the cancel (the job may have finished already); waiting up "
                        f"to {grace:.0f}s for its result.")
        attempt.flush()
        return timezone.now() + timedelta(seconds=grace)

    # --- the end: finish, fail, requeue, fallback ------------------------------------------------------------

    def _end(self, status: ProviderStatus, prepared: list[Prepared], *, call_failed: bool) -> None:
        attempt, generation = self.attempt, self.generation
        if self.stop or generation.cancel_requested:
            # Asked to stop (or, for a parked job, the user's cancel came while nobody was polling):
            # however it ended, it is not retried.
            self._end_stopped(status, prepared, reason=self.stop or "cancel", call_failed=call_failed)
        elif status.state == "succeeded":
            finish(attempt, status, prepared)
        elif status.state == "canceled":
            attempt.finish_without_charge(status=Status.CANCELED, provider_cost_usd=status.cost_usd)
        elif status.retryable and (generation.attempts >= settings.GENERATION_MAX_ATTEMPTS
                                   or circuit_open_for(generation.provider)) and fallback(
                                       attempt, reason=status.error_code or "transient",
                                       provider_cost_usd=status.cost_usd):
            return
        elif status.retryable and generation.attempts < settings.GENERATION_MAX_ATTEMPTS:
            # Retrying a failed call re-uses the provider's request; a job that failed upstream is
            # submitted again.
            requeue(attempt, status, forget_request=not call_failed)
        else:
            attempt.finish_without_charge(status=Status.FAILED, code=status.error_code or "provider_error",
                                          message=status.error_message or "The provider reported a failure.",
                                          provider_cost_usd=status.cost_usd)

    def _end_stopped(self, status: ProviderStatus, prepared: list[Prepared], *, reason: str,
                     call_failed: bool) -> None:
        """End a job the provider was asked to stop, by how the provider says it ended.

        The rule (docs/providers/fal.md, "Cancel"): a job the provider finished anyway produced outputs
        that were billed upstream, so they are stored and the user is charged as for a success. A job
        that ended canceled or failed is charged nothing; whatever the provider reports it billed is
        recorded on the row and in the rollup, so the margin report is true."""
        attempt, generation = self.attempt, self.generation
        if status.state == "succeeded":
            when = ("before the cancel took effect" if reason == "cancel"
                    else "after its time limit, before the cancel took effect")
            finish(attempt, status, prepared, note=f"The provider finished {when}; outputs stored and charged.")
            return
        if status.state == "failed":
            what = "could not be asked how the job ended" if call_failed else "reported the job failed"
            attempt.log(f"After the stop request the provider {what}: {status.error_message or status.error_code}")
        if reason == "cancel":
            attempt.finish_without_charge(status=Status.CANCELED, provider_cost_usd=status.cost_usd)
        else:
            attempt.finish_without_charge(status=Status.FAILED, code="timeout",
                                          message=f"The job took longer than {generation.model.timeout_seconds}s.",
                                          provider_cost_usd=status.cost_usd)
