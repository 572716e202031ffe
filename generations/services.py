"""Generation writes: submit, cancel, and the worker's run and sweep (see docs/ARCHITECTURE.md,
"A generation's life")."""

from __future__ import annotations

import io
import logging
import time
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.hooks import budget_hold, budget_release, budget_settle, usage_cost_record, usage_record
from billing.limits import credits_per_usd_for, rate_limit_check
from billing.services import credits_hold, hold_release, hold_settle
from core.errors import Conflict, InvalidRequest, ServiceError
from generations import pricing
from generations.credentials import availability_for, credentials_for
from generations.dispatch import generation_resume_send, generation_run_send
from generations.health import circuit_open_for, record_outcome
from generations.inputs import asset_fields, validate_inputs
from generations.models import AIModel, Generation, Status
from generations.providers.base import AssetInput, CatalogModel, ProviderError, ProviderJob, ProviderStatus
from generations.providers.registry import get_provider
from projects.selectors import project_get_for_user

logger = logging.getLogger(__name__)

MAX_LOG_LINES = 500


# --- submit ---------------------------------------------------------------------------------------------

def generation_dispatch(generation_id: str, countdown: float | None = None) -> None:
    _dispatch(generation_id, countdown)


def _dispatch(generation_id: str, countdown: float | None = None) -> None:
    # A broker that is down is logged, not raised: the job is committed and its credits held, and the
    # sweep sends it again (generations/dispatch.py).
    generation_run_send(generation_id, countdown)


def _dispatch_resume(generation_id: str) -> None:
    generation_resume_send(generation_id)


def generation_estimate(*, user: Any, model_id: str, inputs: Any,
                        draw_seed: bool = True) -> tuple[AIModel, dict[str, Any], pricing.Estimate]:
    """Validate inputs and price the job, without holding anything: the estimate shown before submit.

    `generation_create` keeps `draw_seed=True`, so the job records the seed it runs with. The estimate
    endpoints pass False: a seed drawn there would be returned and then not used, because the submit
    draws its own; no seed in the estimate's inputs means "drawn at submit"."""
    model = AIModel.objects.filter(pk=str(model_id), active=True).prefetch_related("price_cards").first()
    if model is None:
        raise InvalidRequest(f"Unknown model {model_id!r}. GET /api/v1/models lists the catalog.",
                             code="unknown_model", fields={"model": ["Unknown or inactive model."]})
    filled, assets = validate_inputs(schema=model.input_schema, inputs=inputs, user=user, draw_seed=draw_seed)
    return model, filled, pricing.estimate(model.current_price, filled, assets,
                                           credits_per_usd=credits_per_usd_for(user_id=user.pk))


def generation_create(*, user: Any, project_id: Any, model_id: str, inputs: Any,
                      fallback_models: list[str] | None = None, rate_limit: bool = False,
                      max_credits: int | None = None) -> Generation:
    """Access check → validate → estimate (at the user's plan rate) → hold credits (wallet row locked)
    and count them against budgets (budget rows locked) → queued row → rate limit → enqueue after commit.
    Raises Http404, InvalidRequest, RateLimited, InsufficientCredits or BudgetExceeded, having changed
    nothing (a refused attempt does not count against the rate limit either).

    `rate_limit=True` counts the submit against the plan's generations per hour, once everything else
    has accepted it (billing/limits.py): the web app and the API pass it, the CLI does not.

    The hold is the estimate, and the charge never exceeds the hold: a job that turns out dearer than
    estimated costs the estimate. `max_credits` (at least the estimate) lets the job cost more, up to
    that: it is held in full, checked against wallet and budgets like any hold, and the unused part is
    freed at settle."""
    project = project_get_for_user(user, project_id, write=True)
    if project.archived:
        raise Conflict("This project is archived; unarchive it to generate in it.", code="project_archived")
    model, filled, estimate = generation_estimate(user=user, model_id=model_id, inputs=inputs)
    access = availability_for(user, {model.provider})[model.provider]
    if not access.available:
        raise InvalidRequest(access.reason, code="model_unavailable", fields={"model": [access.reason]})
    _storage_check(project)
    credits = pricing.byo_fee(estimate.credits) if access.key_source == "user" else estimate.credits
    held = _held_for(credits, max_credits)
    fallbacks = _clean_fallbacks(model, project.fallback_models if fallback_models is None else fallback_models)
    key_note = " on your own key" if access.key_source == "user" else ""
    now = timezone.now()
    with transaction.atomic():
        generation = Generation(
            user=user, project=project, model=model, price_card=model.current_price, inputs=filled,
            provider=model.provider, credits_estimated=credits, credits_held=held, max_credits=max_credits,
            cost_usd_estimated=estimate.cost_usd, heartbeat_at=now, key_source=access.key_source,
            fallback_models=fallbacks,
            logs=[{"t": now.isoformat(), "message": f"Queued {model.id}{key_note}; estimated "
                   f"{pricing.credits_display(credits)} (provider cost ${estimate.cost_usd:.4f})"
                   + (f", up to {pricing.credits_display(held)} allowed." if held > credits else ".")}],
        )
        credits_hold(user=user, amount=held, reference=generation.hold_reference)
        generation.budget_usage_ids = budget_hold(generation=generation, credits=held)
        generation.save(force_insert=True)
        if rate_limit:
            # Last, once the job is accepted: a refusal here rolls the hold back and gives the count back.
            rate_limit_check(user=user, group="generations", count_refused=False)
        generation_id = str(generation.pk)
        transaction.on_commit(lambda: _dispatch(generation_id))
    return generation


def _storage_check(project: Any) -> None:
    """A full storage quota refuses new jobs: their outputs would land past it (a running job's outputs
    are always stored, even over the quota, so nothing paid for is lost)."""
    from assets.uploads.quota import human, storage_use

    use = storage_use(owner=project.owner)
    if use.limit is not None and use.used >= use.limit:
        raise ServiceError(f"Storage full: {human(use.used)} of your {use.plan_name} plan's {human(use.limit)} "
                           "is used, so new jobs cannot store their results. Delete files or empty the trash "
                           "to make room, or move to a larger plan.", code="quota_exceeded",
                           extra={"storage": {"used": use.used, "limit": use.limit}})


def _held_for(estimate: int, max_credits: Any) -> int:
    """What to hold: the estimate, or the user's higher cap. A cap under the estimate is refused rather
    than silently raised: the user asked to pay at most that, and the job would cost more."""
    if max_credits is None:
        return estimate
    if isinstance(max_credits, bool) or not isinstance(max_credits, int) or max_credits < 0:
        raise InvalidRequest("max_credits must be a whole number of credits.",
                             fields={"max_credits": ["Expected a non-negative integer."]})
    if max_credits < estimate:
        raise InvalidRequest(f"max_credits ({max_credits}) is below this job's estimate "
                             f"({pricing.credits_display(estimate)}); raise it or leave it out.",
                             code="max_credits_below_estimate",
                             fields={"max_credits": [f"At least {estimate} for this job."]})
    return max_credits


def _clean_fallbacks(model: AIModel, fallback_models: Any) -> list[str]:
    if not fallback_models:
        return []
    if not isinstance(fallback_models, list) or not all(isinstance(m, str) for m in fallback_models):
        raise InvalidRequest("fallback_models must be a list of model ids.", fields={"fallback_models": ["Expected a list of model ids."]})
    ids = [m for m in dict.fromkeys(fallback_models) if m != model.id][:5]
    operations = dict(AIModel.objects.filter(pk__in=ids, active=True).values_list("id", "operation"))
    unknown = [m for m in ids if m not in operations]
    if unknown:
        raise InvalidRequest(f"Unknown fallback model {unknown[0]!r}.", fields={"fallback_models": [f"Unknown model {m!r}." for m in unknown]})
    wrong = [m for m in ids if operations[m] != model.operation]
    if wrong:
        raise InvalidRequest(f"Fallback {wrong[0]!r} does a different operation than {model.id!r}.",
                             fields={"fallback_models": [f"{m!r} is not a {model.operation} model." for m in wrong]})
    return ids


@transaction.atomic
def generation_cancel(*, user: Any, generation_id: Any) -> Generation:
    from generations.selectors import generation_get_for_user

    generation = generation_get_for_user(user, generation_id)
    if generation.status == Status.QUEUED:
        # Not yet claimed by a worker: cancel here. The claim filters on status, so whichever of the
        # two updates lands first wins and the other does nothing.
        if Generation.objects.filter(pk=generation.pk, status=Status.QUEUED).update(
                status=Status.CANCELED, finished_at=timezone.now(), cancel_requested=True, queue_position=None):
            hold_release(reference=generation.hold_reference)
            budget_release(generation=generation)
            _append_log(generation.pk, "Canceled before it started; nothing was charged.")
            generation.refresh_from_db()
            return generation
        generation.refresh_from_db()
    if generation.status == Status.RUNNING:
        # The worker running it is the only writer of its log; it notes the cancel when it sees it.
        Generation.objects.filter(pk=generation.pk).update(cancel_requested=True)
        generation.refresh_from_db()
        if generation.awaiting_webhook:
            # Parked until the provider calls back: no worker polls it, so resume one now to ask the
            # provider to stop it (the resume's claim is atomic, so a webhook arriving too is harmless).
            gid = str(generation.pk)
            transaction.on_commit(lambda: _dispatch_resume(gid))
        return generation
    raise Conflict(f"This generation has already {generation.status}; there is nothing to cancel.",
                   code="not_cancelable")


# --- run (worker) ----------------------------------------------------------------------------------

class RetryLater(Exception):
    """A transient failure: the task re-queues the job after `countdown` seconds."""

    def __init__(self, countdown: float) -> None:
        super().__init__(f"retry in {countdown:.1f}s")
        self.countdown = countdown


def _append_log(generation_id: Any, *messages: str) -> None:
    if not messages:
        return
    now = timezone.now().isoformat()
    with transaction.atomic():
        row = Generation.objects.select_for_update().filter(pk=generation_id).values_list("logs", flat=True).first()
        if row is None:
            return
        logs = list(row) + [{"t": now, "message": m} for m in messages]
        Generation.objects.filter(pk=generation_id).update(logs=logs[-MAX_LOG_LINES:])


def _catalog_model(model: AIModel) -> CatalogModel:
    return CatalogModel(id=model.id, provider=model.provider, provider_model=model.provider_model,
                        operation=model.operation, output_kind=model.output_kind, config=dict(model.config))


def _provider_inputs(generation: Generation) -> dict[str, Any]:
    from assets.models import Asset

    inputs = dict(generation.inputs)
    for name in asset_fields(generation.model.input_schema):
        if not inputs.get(name):
            continue
        asset = Asset.objects.filter(pk=inputs[name], owner_id=generation.project.owner_id).first()
        if asset is None:
            raise ProviderError(f"The input asset for {name!r} no longer exists.", code="input_missing")
        inputs[name] = AssetInput(id=str(asset.pk), kind=asset.kind, mime=asset.mime, name=asset.name,
                                  storage_name=asset.file.name, size=asset.size, width=asset.width,
                                  height=asset.height)
    return inputs


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
    _cancel_unattended(generation_id, status=Status.QUEUED)
    return False


def _cancel_unattended(generation_id: Any, *, status: str, heartbeat_at: Any = None) -> bool:
    """Cancel a job whose cancel was requested but that no worker is running (queued, or running on a
    worker that died): no runner would ever see the request. Guarded by status (and, for a running
    job, by the stale heartbeat the sweep saw), so a live worker or a concurrent cancel wins instead.
    Releases the hold and the budgets' share; nothing is charged."""
    guard: dict[str, Any] = {"pk": generation_id, "status": status, "cancel_requested": True}
    if status == Status.RUNNING:
        guard["heartbeat_at"] = heartbeat_at
    with transaction.atomic():
        generation = Generation.objects.select_for_update().filter(**guard).first()
        if generation is None:
            return False
        Generation.objects.filter(pk=generation.pk).update(status=Status.CANCELED, finished_at=timezone.now(),
                                                           queue_position=None, awaiting_webhook=False)
        hold_release(reference=generation.hold_reference)
        budget_release(generation=generation)
    where = "before a worker took it up again" if status == Status.QUEUED else "after its worker stopped responding"
    _append_log(generation_id, f"Canceled as requested, {where}. Nothing was charged; the hold was released.")
    logger.info("generation %s canceled %s", generation_id, where)
    return True


def _finish_without_charge(generation: Generation, *, status: str, code: str = "", message: str = "",
                           logs: list[dict[str, str]] | None = None,
                           provider_cost_usd: Decimal | None = None) -> bool:
    """Move a running job to failed or canceled and release its hold. Only one caller can win.
    `logs` is the runner's full log (it writes them with the status); others append a line.

    `provider_cost_usd` is what the provider reports it billed for the work anyway (Replicate bills the
    time a failed or canceled prediction ran, https://replicate.com/docs/topics/predictions/lifecycle;
    OpenRouter may bill a prompt that produced nothing). The user is not charged, but the cost is kept
    on the row and in the day's rollup, so the admin's margin report counts it."""
    note = "Canceled." if status == Status.CANCELED else f"Failed: {message}"
    line = f"{note} Nothing was charged; the hold was released."
    cost = _usd(provider_cost_usd)
    if cost:
        line += f" The provider reported ${cost} for the work it did; you are not charged for it."
    changes: dict[str, Any] = {"status": status, "error_code": code[:40], "error_message": message,
                               "finished_at": timezone.now(), "queue_position": None}
    if cost is not None:
        changes["provider_cost_usd"] = _cost_added(cost)
    if logs is not None:
        changes["logs"] = (logs + [_log_line(line)])[-MAX_LOG_LINES:]
    with transaction.atomic():
        done = Generation.objects.filter(pk=generation.pk, status=Status.RUNNING).update(**changes)
        if done:
            hold_release(reference=generation.hold_reference)
            budget_release(generation=generation)
            if status == Status.FAILED:
                usage_record(generation=generation, succeeded=False, credits=0, provider_cost_usd=cost)
            elif cost:
                # Canceled jobs are not usage, but what the provider billed for them is spend.
                usage_cost_record(generation=generation, provider_cost_usd=cost)
    if done and logs is None:
        _append_log(generation.pk, line)
    return bool(done)


def _usd(cost: Decimal | None) -> Decimal | None:
    """A provider's cost rounded up to the micro-dollar, as pricing.actual rounds a success's."""
    return None if cost is None else Decimal(cost).quantize(Decimal("0.000001"), rounding=ROUND_CEILING)


def _cost_added(cost: Decimal) -> Any:
    """The row's provider cost plus this attempt's: a job retried after a billed failure keeps both."""
    return Coalesce(F("provider_cost_usd"), Value(Decimal(0))) + Value(cost)


def generation_fail(*, generation_id: Any, code: str, message: str) -> bool:
    generation = Generation.objects.get(pk=generation_id)
    return _finish_without_charge(generation, status=Status.FAILED, code=code, message=message)


def _log_line(message: str) -> dict[str, str]:
    return {"t": timezone.now().isoformat(), "message": message}


class _Run:
    """One claimed attempt at a generation, in the worker.

    While a job runs, this runner is the only writer of its row's progress, queue position, heartbeat
    and logs (a cancel from the web only sets `cancel_requested`), so it keeps the log in memory and
    writes whatever changed in one UPDATE per poll, instead of a locked read-modify-write per line."""

    HEARTBEAT = timedelta(seconds=5)
    CANCEL_CHECK = timedelta(seconds=0.5)

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.logs: list[dict[str, str]] = list(generation.logs)
        self.dirty: dict[str, Any] = {}
        self.progress: int | None = None
        self.queue_position: int | None = None
        self.heartbeat = timezone.now()
        self.cancel_checked = timezone.now() - self.CANCEL_CHECK

    def log(self, *messages: str) -> None:
        self.logs.extend(_log_line(m) for m in messages)
        del self.logs[:-MAX_LOG_LINES]
        self.dirty["logs"] = self.logs

    def flush(self, **changes: Any) -> None:
        changes = {**self.dirty, **changes}
        now = timezone.now()
        if not changes and now - self.heartbeat < self.HEARTBEAT:
            return
        changes["heartbeat_at"] = self.heartbeat = now
        Generation.objects.filter(pk=self.generation.pk, status=Status.RUNNING).update(**changes)
        self.dirty = {}

    def record(self, status: ProviderStatus) -> None:
        if status.progress is not None:
            progress = max(0, min(100, int(status.progress)))
            if progress != self.progress:
                self.dirty["progress"] = self.progress = progress
        if status.queue_position != self.queue_position:
            self.dirty["queue_position"] = self.queue_position = status.queue_position
        if status.logs:
            self.log(*status.logs)
        self.flush()

    def cancel_requested(self) -> bool:
        now = timezone.now()
        if now - self.cancel_checked < self.CANCEL_CHECK:
            return False
        self.cancel_checked = now
        return bool(Generation.objects.filter(pk=self.generation.pk).values_list("cancel_requested", flat=True).first())

    def finish_without_charge(self, *, status: str, code: str = "", message: str = "",
                              provider_cost_usd: Decimal | None = None) -> bool:
        return _finish_without_charge(self.generation, status=status, code=code, message=message, logs=self.logs,
                                      provider_cost_usd=provider_cost_usd)


def generation_run(generation_id: Any) -> None:
    """Run one queued generation to the end. Safe to call twice: only the call that claims the row
    (queued → running) does anything. Raises RetryLater for transient provider trouble."""
    if not _claim(generation_id):
        return
    _execute(Generation.objects.select_related("model", "project", "price_card").get(pk=generation_id),
             resuming=False)


def generation_resume(generation_id: Any) -> None:
    """Carry on with a job that was submitted with a webhook and parked: after its webhook arrived,
    or when the sweep finds no webhook came. Polls the provider to the end. Claimed atomically, so a
    webhook delivered twice resumes it once."""
    if not Generation.objects.filter(pk=generation_id, status=Status.RUNNING, awaiting_webhook=True).update(
            awaiting_webhook=False, heartbeat_at=timezone.now()):
        return
    _execute(Generation.objects.select_related("model", "project", "price_card").get(pk=generation_id),
             resuming=True)


def _webhook_url(provider: Any) -> str | None:
    if not settings.PROVIDER_WEBHOOKS or not hasattr(provider, "parse_webhook"):
        return None
    from django.urls import reverse

    return settings.SITE_URL + reverse("provider-webhook", kwargs={"provider": provider.name})


def _execute(generation: Generation, *, resuming: bool) -> None:
    run = _Run(generation)
    provider = get_provider(generation.model.provider)
    credentials = credentials_for(generation.user, generation.provider, source=generation.key_source)
    if credentials is None and generation.key_source != "none":
        whose = "your" if generation.key_source == "user" else "the platform's"
        run.finish_without_charge(status=Status.FAILED, code="no_key",
                                  message=f"This job was submitted to run on {whose} {generation.provider} key, "
                                          "which is no longer configured.")
        return
    try:
        inputs = _provider_inputs(generation)
    except ProviderError as exc:
        run.finish_without_charge(status=Status.FAILED, code=exc.code, message=exc.message)
        return
    if not resuming:
        run.log(f"Started on {provider.name} (attempt {generation.attempts}).")
    # Per attempt: a job re-queued after its worker died has its whole timeout again (a parked webhook
    # job resumes within the attempt that submitted it).
    deadline = ((generation.attempt_started_at or generation.started_at or timezone.now())
                + timedelta(seconds=generation.model.timeout_seconds))
    webhook_url = None if resuming else _webhook_url(provider)

    def submit() -> ProviderJob:
        new_job = provider.submit(_catalog_model(generation.model), inputs, credentials=credentials,
                                  webhook_url=webhook_url)
        run.flush(provider_request_id=new_job.request_id[:200], provider_data=new_job.data)
        new_job.credentials = credentials
        return new_job

    if not generation.provider_request_id and not resuming:
        wait = circuit_open_for(generation.provider)
        if wait:
            if _switch_to_fallback(run, reason="circuit_open"):
                return
            # Not this job's fault: wait for the circuit to close without spending an attempt.
            run.log(f"{generation.provider} is failing for everyone right now; waiting {wait:.0f}s before sending this job.")
            _requeue(run, ProviderStatus(state="failed", error_code="circuit_open", retryable=True,
                                         usage={"retry_after": wait}), forget_request=True, refund_attempt=True)
            return
    started = time.monotonic()
    # Why the runner asked the provider to stop the job ("cancel": the user's; "timeout": the model's
    # limit), and until when it waits for the provider to say how the job ended.
    stop, stop_by, stop_blips = "", timezone.now(), 0
    prepared: list[tuple[Any, Any, int]] = []
    try:
        reused = bool(generation.provider_request_id)
        if reused:
            # A retry re-uses the provider's request where there is one (no second charge upstream).
            job = ProviderJob(provider=provider.name, request_id=generation.provider_request_id,
                              data=generation.provider_data, credentials=credentials)
        else:
            job = submit()
            if webhook_url:
                # No worker waits on a webhook job: the provider calls us back (generations/webhooks.py),
                # and the sweep polls it if the callback never comes.
                run.log("Submitted; waiting for the provider's callback.")
                run.flush(awaiting_webhook=True)
                return
        while True:
            try:
                status = provider.poll(job)
            except ProviderError as exc:
                if not (stop and exc.retryable and timezone.now() <= stop_by):
                    raise
                # A stopped job is never re-queued (its cancel or timeout stands), so a blip while asking
                # how it ended is waited out within the grace: the provider may still finish and bill it.
                if not stop_blips:
                    run.log(f"Could not reach the provider ({exc.code}); still waiting for the job to end.")
                stop_blips += 1
                run.flush()
                time.sleep(settings.GENERATION_POLL_INTERVAL)
                continue
            if reused and not stop and status.state == "failed" and status.error_code == "lost":
                if generation.cancel_requested:
                    # Lost with its dead worker after the user asked to cancel: nothing left to stop.
                    status = ProviderStatus(state="canceled")
                    break
                # The provider no longer knows the request (the local provider's jobs die with the
                # worker process that ran them): submit it afresh, within this attempt.
                run.log("The previous request was lost with its worker; submitting again.")
                job, reused = submit(), False
                continue
            if job.data != generation.provider_data:
                # Adapters keep their place in job.data (e.g. how much of a log they have returned);
                # saved with the next write so a retried or resumed attempt carries on from there.
                run.dirty["provider_data"] = generation.provider_data = dict(job.data)
            run.record(status)
            if status.terminal:
                break
            if not stop:
                if run.cancel_requested():
                    stop = "cancel"
                elif timezone.now() > deadline:
                    stop = "timeout"
                if stop:
                    stop_by = _stop_at_provider(run, provider, job, reason=stop)
            elif timezone.now() > stop_by:
                # Never hold a cancel forever: past the grace the job is given up on. The provider may
                # still finish (and bill) it; the log says so.
                run.log("The provider had not ended the job "
                        f"{_stop_grace(generation):.0f}s after it was asked to stop; giving up on it. It may "
                        "still finish upstream and be billed there.")
                status = ProviderStatus(state="canceled")
                break
            time.sleep(settings.GENERATION_POLL_INTERVAL)
        prepared = _fetch_outputs(provider, status) if status.state == "succeeded" else []
        call_failed = False
    except ProviderError as exc:
        # A call to the provider failed (its request may still be fine), as opposed to the provider
        # reporting that the job itself failed.
        call_failed = True
        status = ProviderStatus(state="failed", error_code=exc.code, error_message=exc.message,
                                retryable=exc.retryable)
        if exc.retry_after:
            status.usage["retry_after"] = exc.retry_after
    if status.state == "succeeded" or (status.state == "failed" and not stop):
        record_outcome(provider=generation.provider, model=generation.model_id, ok=status.state == "succeeded",
                       transient=status.retryable, error_code=status.error_code,
                       latency_ms=(time.monotonic() - started) * 1000)
    if stop or generation.cancel_requested:
        # Asked to stop (or, for a parked webhook job, the user's cancel came while nobody was polling):
        # however it ended, it is not retried.
        _finish_stopped(run, status, prepared, reason=stop or "cancel", call_failed=call_failed)
    elif status.state == "succeeded":
        _succeed(run, status, prepared)
    elif status.state == "canceled":
        run.finish_without_charge(status=Status.CANCELED, provider_cost_usd=status.cost_usd)
    elif status.retryable and (generation.attempts >= settings.GENERATION_MAX_ATTEMPTS
                               or circuit_open_for(generation.provider)) and _switch_to_fallback(
                                   run, reason=status.error_code or "transient", provider_cost_usd=status.cost_usd):
        return
    elif status.retryable and generation.attempts < settings.GENERATION_MAX_ATTEMPTS:
        # Retrying a failed call re-uses the provider's request; a job that failed upstream is submitted again.
        _requeue(run, status, forget_request=not call_failed)
    else:
        run.finish_without_charge(status=Status.FAILED, code=status.error_code or "provider_error",
                                  message=status.error_message or "The provider reported a failure.",
                                  provider_cost_usd=status.cost_usd)


def _stop_grace(generation: Generation) -> float:
    """How long the runner keeps polling a job it asked the provider to stop: GENERATION_CANCEL_GRACE,
    never more than the model's own time limit."""
    return min(settings.GENERATION_CANCEL_GRACE.total_seconds(), float(generation.model.timeout_seconds))


def _stop_at_provider(run: _Run, provider: Any, job: ProviderJob, *, reason: str) -> Any:
    """Ask the provider to stop the job, and return until when to keep polling for how it ended.

    A cancel is a request, not a stop: fal answers 202 CANCELLATION_REQUESTED for a running request and
    the app may still finish, and fal bills successful outputs; 400 ALREADY_COMPLETED means the result
    is waiting (https://fal.ai/docs/inference-api/queue/cancel). Replicate bills the time a canceled
    prediction ran (https://replicate.com/docs/topics/predictions/lifecycle). So the runner does not end
    the job here: it polls on until the provider reports a terminal state (see _finish_stopped)."""
    generation = run.generation
    if reason == "cancel":
        run.log("Cancel requested; asking the provider to stop the job.")
    else:
        run.log(f"The job took longer than {generation.model.timeout_seconds}s; asking the provider to stop it.")
    grace = _stop_grace(generation)
    if provider.cancel(job):
        run.log(f"The provider accepted the cancel; waiting up to {grace:.0f}s for the job to end "
                "(it may still finish).")
    else:
        run.log(f"The provider did not accept the cancel (the job may have finished already); waiting up to "
                f"{grace:.0f}s for its result.")
    run.flush()
    return timezone.now() + timedelta(seconds=grace)


def _finish_stopped(run: _Run, status: ProviderStatus, prepared: list[tuple[Any, Any, int]], *, reason: str,
                    call_failed: bool) -> None:
    """End a job the provider was asked to stop, by how the provider says it ended.

    The rule (docs/providers/fal.md, "Cancel"): a job the provider finished anyway produced outputs that
    were billed upstream, so they are stored and the user is charged as for a success. A job that ended
    canceled or failed is charged nothing; whatever the provider reports it billed is recorded on the row
    and in the rollup, so the margin report is true."""
    generation = run.generation
    if status.state == "succeeded":
        when = "before the cancel took effect" if reason == "cancel" else "after its time limit, before the cancel took effect"
        _succeed(run, status, prepared, note=f"The provider finished {when}; outputs stored and charged.")
        return
    if status.state == "failed":
        what = "could not be asked how the job ended" if call_failed else "reported the job failed"
        run.log(f"After the stop request the provider {what}: {status.error_message or status.error_code}")
    if reason == "cancel":
        run.finish_without_charge(status=Status.CANCELED, provider_cost_usd=status.cost_usd)
    else:
        run.finish_without_charge(status=Status.FAILED, code="timeout",
                                  message=f"The job took longer than {generation.model.timeout_seconds}s.",
                                  provider_cost_usd=status.cost_usd)


def _fetch_outputs(provider: Any, status: ProviderStatus) -> list[tuple[Any, Any, int]]:
    """Copy every output into local spooled files, outside any transaction (network I/O)."""
    from generations.fetch import FetchRefused, fetch_output

    prepared = []
    for output in status.outputs:
        if output.data is not None:
            prepared.append((output, io.BytesIO(output.data), len(output.data)))
            continue
        try:
            fetched = fetch_output(output.url or "", allowed_hosts=getattr(provider, "output_hosts", ()),
                                   kind=output.kind)
        except FetchRefused as exc:
            raise ProviderError(exc.message, code=exc.code, retryable=exc.retryable) from exc
        prepared.append((output, fetched.file, fetched.size))
    return prepared


def _switch_to_fallback(run: _Run, *, reason: str, provider_cost_usd: Decimal | None = None) -> bool:
    """Move a transiently failing job to its next fallback model that is active, healthy, runnable by
    this user, accepts the job's inputs, and that the user can pay for (its hold is resized first).
    Re-queues the job on the new model and returns True; False when no fallback fits. What the provider
    reports it billed for the failed attempt (`provider_cost_usd`) is kept on the row and in the rollup."""
    from billing.hooks import BudgetExceeded, budget_resize
    from billing.services import InsufficientCredits, hold_resize

    generation = run.generation
    used = {entry["to"] for entry in generation.fallbacks_used} | {entry["from"] for entry in generation.fallbacks_used}
    for model_id in generation.fallback_models:
        if model_id in used or model_id == generation.model_id:
            continue
        model = AIModel.objects.filter(pk=model_id, active=True).prefetch_related("price_cards").first()
        if model is None or circuit_open_for(model.provider):
            continue
        access = availability_for(generation.user, {model.provider})[model.provider]
        if not access.available:
            continue
        shared = {k: v for k, v in generation.inputs.items() if k in model.input_schema.get("properties", {})
                  and k != "seed"}
        try:
            filled, assets = validate_inputs(schema=model.input_schema, inputs=shared, user=generation.user)
        except InvalidRequest:
            run.log(f"Fallback {model.id} does not take this job's inputs; skipped.")
            continue
        estimate = pricing.estimate(model.current_price, filled, assets,
                                    credits_per_usd=credits_per_usd_for(user_id=generation.user_id))
        credits = pricing.byo_fee(estimate.credits) if access.key_source == "user" else estimate.credits
        if generation.max_credits is not None and credits > generation.max_credits:
            run.log(f"Fallback {model.id} would cost {pricing.credits_display(credits)}, above your "
                    f"limit of {generation.max_credits}; skipped.")
            continue
        held = credits if generation.max_credits is None else generation.max_credits
        try:
            # One transaction: the wallet's hold, the budgets' share and the row's credits_held (which a
            # release reads) change together or not at all. The job's row is locked first, the order
            # settle, release and budget_set take their locks in (generation, wallet, budget), so a
            # budget set meanwhile waits instead of deadlocking; a job canceled meanwhile is left be.
            with transaction.atomic():
                if Generation.objects.select_for_update().filter(
                        pk=generation.pk, status=Status.RUNNING).values_list("pk", flat=True).first() is None:
                    return False
                hold_resize(reference=generation.hold_reference, amount=held)
                budget_usage_ids = budget_resize(generation=generation, credits=held)
                Generation.objects.filter(pk=generation.pk).update(credits_held=held,
                                                                   budget_usage_ids=budget_usage_ids)
        except InsufficientCredits:
            run.log(f"Fallback {model.id} would need {pricing.credits_display(held)}, more than are available; "
                    "skipped.")
            continue
        except BudgetExceeded as exc:
            run.log(f"Fallback {model.id} skipped: {exc.message}")
            continue
        run.log(f"{generation.model_id} failed ({reason}); switching to fallback {model.id} "
                f"({pricing.credits_display(held)} held).")
        used_entry = {"from": generation.model_id, "to": model.id, "reason": reason, "t": timezone.now().isoformat()}
        cost = _attempt_cost_note(run, provider_cost_usd)
        with transaction.atomic():
            moved = Generation.objects.filter(pk=generation.pk, status=Status.RUNNING).update(
                status=Status.QUEUED, model=model, provider=model.provider, price_card=model.current_price,
                inputs=filled, key_source=access.key_source, credits_estimated=credits, credits_held=held,
                cost_usd_estimated=estimate.cost_usd, provider_request_id="", provider_data={}, attempts=0,
                fallbacks_used=[*generation.fallbacks_used, used_entry], logs=run.logs, heartbeat_at=timezone.now(),
                **({"provider_cost_usd": _cost_added(cost)} if cost else {}))
            if moved and cost:
                usage_cost_record(generation=generation, provider_cost_usd=cost)  # on the model that ran it
        if moved:
            gid = str(generation.pk)
            transaction.on_commit(lambda gid=gid: _dispatch(gid))
        return bool(moved)
    return False


def _backoff(attempt: int, retry_after: float | None) -> float:
    base = min(60.0, 2.0 ** attempt)
    return max(base, float(retry_after or 0))


def _requeue(run: _Run, status: ProviderStatus, *, forget_request: bool, refund_attempt: bool = False) -> None:
    generation = run.generation
    countdown = _backoff(generation.attempts, status.usage.get("retry_after"))
    if not refund_attempt:
        run.log(f"Transient error ({status.error_code}: {status.error_message}); retrying in {countdown:.0f}s.")
    changes: dict[str, Any] = {"status": Status.QUEUED, "heartbeat_at": timezone.now(), "logs": run.logs}
    if refund_attempt:
        changes["attempts"] = F("attempts") - 1
    if forget_request:
        changes.update(provider_request_id="", provider_data={})
    cost = _attempt_cost_note(run, status.cost_usd)
    if cost:
        changes["provider_cost_usd"] = _cost_added(cost)
    with transaction.atomic():
        moved = Generation.objects.filter(pk=generation.pk, status=Status.RUNNING).update(**changes)
        if moved and cost:
            usage_cost_record(generation=generation, provider_cost_usd=cost)
    if moved:
        raise RetryLater(countdown)


def _attempt_cost_note(run: _Run, cost: Decimal | None) -> Decimal | None:
    """A failed attempt that goes back to the queue may still have been billed (OpenRouter's empty
    answers, Replicate's failed predictions): its cost, rounded, with a line in the job's log."""
    cost = _usd(cost)
    if cost:
        run.log(f"The provider reported ${cost} for the failed attempt; you are not charged for it.")
    return cost


def _succeed(run: _Run, status: ProviderStatus, prepared: list[tuple[Any, Any, int]], *, note: str = "") -> None:
    """Store the outputs and settle the charge. `note` is logged first (e.g. that the provider finished
    after the user asked to cancel). The row's provider cost adds this attempt's to any billed failures
    before it."""
    from generations.ingest import outputs_store

    generation = run.generation
    requested = int(generation.inputs.get("num_images", 1) or 1) if generation.model.output_kind == "image" else 1
    stored: list[Any] = []
    try:
        with transaction.atomic():
            locked = Generation.objects.select_for_update().filter(pk=generation.pk, status=Status.RUNNING).first()
            if locked is None:  # canceled or swept meanwhile; its hold is already closed
                return
            stored = outputs_store(generation=generation, prepared=prepared)
            estimated = pricing.Estimate(units=Decimal(0), cost_usd=generation.cost_usd_estimated,
                                         credits=generation.credits_estimated)
            cost, credits = pricing.actual(generation.price_card, estimated, usage=status.usage,
                                           provider_cost_usd=status.cost_usd, requested_outputs=requested,
                                           delivered_outputs=len(stored),
                                           credits_per_usd=credits_per_usd_for(user_id=generation.user_id))
            if generation.key_source == "user":
                credits = pricing.byo_fee(credits)
            charged = hold_settle(reference=generation.hold_reference, amount=credits,
                                  memo=f"{generation.model_id} generation {generation.pk}")
            budget_settle(generation=generation, charged=charged)
            if note:
                run.log(note)
            if credits > charged:
                run.log(f"Actual cost came to {pricing.credits_display(credits)}, above the "
                        f"{pricing.credits_display(charged)} held; you are charged {charged}.")
            run.log(f"Succeeded: {len(stored)} output(s); charged {pricing.credits_display(charged)}.")
            usage_record(generation=generation, succeeded=True, credits=charged, provider_cost_usd=cost)
            Generation.objects.filter(pk=generation.pk).update(
                status=Status.SUCCEEDED, progress=100, finished_at=timezone.now(), credits_charged=charged,
                provider_cost_usd=_cost_added(cost), queue_position=None, logs=run.logs)
    except Exception as exc:
        for asset in stored:
            asset.file.storage.delete(asset.file.name)
        if isinstance(exc, ProviderError):
            # The provider finished, so it billed the outputs even though they could not be kept: its
            # reported cost, else the estimate (fal reports none; it bills successful outputs).
            billed = status.cost_usd if status.cost_usd is not None else (
                generation.cost_usd_estimated if prepared else None)
            run.finish_without_charge(status=Status.FAILED, code=exc.code, message=exc.message,
                                      provider_cost_usd=billed)
            return
        raise


# --- sweep (beat) ----------------------------------------------------------------------------------

def generations_sweep_stale(now: Any = None) -> dict[str, int]:
    """Find jobs whose worker died: running with no heartbeat for STALE_RUNNING_AFTER are re-queued
    (or failed and refunded once out of attempts); queued jobs not picked up for STALE_QUEUED_AFTER
    are dispatched again (a lost broker message). Claims make a duplicate dispatch harmless. A job
    whose cancel was requested is never re-queued or re-dispatched (the claim would skip it forever):
    one the provider has is resumed, so a worker asks the provider to stop it and learns how it ended;
    any other is canceled here and its hold released."""
    now = now or timezone.now()
    counts = {"requeued": 0, "failed": 0, "redispatched": 0, "canceled": 0}
    stale = now - settings.STALE_RUNNING_AFTER
    counts["resumed"] = 0
    parked = Generation.objects.filter(status=Status.RUNNING, awaiting_webhook=True, heartbeat_at__lt=stale)
    for gid in parked.values_list("id", flat=True):
        # No callback came (or it was lost): poll it instead. The resume claims the row itself.
        _dispatch_resume(str(gid))
        counts["resumed"] += 1
    stale_running = Generation.objects.filter(status=Status.RUNNING, awaiting_webhook=False, heartbeat_at__lt=stale)
    for generation in stale_running.only("id", "attempts", "heartbeat_at", "cancel_requested", "provider_request_id"):
        if generation.cancel_requested and generation.provider_request_id:
            # The user asked to cancel and the worker that would have seen it is gone, but the provider
            # still has the job: it may still be running (and billing), or have finished with outputs
            # already billed. A worker resumes it as a parked job is resumed: it asks the provider to
            # stop and polls to the end (_stop_at_provider), as the dead worker would have.
            if Generation.objects.filter(pk=generation.pk, status=Status.RUNNING,
                                         heartbeat_at=generation.heartbeat_at).update(awaiting_webhook=True,
                                                                                      heartbeat_at=now):
                _dispatch_resume(str(generation.pk))
                counts["resumed"] += 1
            continue
        if generation.cancel_requested:
            # Nothing was sent to the provider: no runner would ever see the request, so cancel here.
            if _cancel_unattended(generation.pk, status=Status.RUNNING, heartbeat_at=generation.heartbeat_at):
                counts["canceled"] += 1
            continue
        if generation.attempts >= settings.GENERATION_MAX_ATTEMPTS:
            if _finish_without_charge(generation, status=Status.FAILED, code="worker_lost",
                                      message="The worker running this job stopped responding."):
                counts["failed"] += 1
            continue
        with transaction.atomic():
            moved = Generation.objects.filter(pk=generation.pk, status=Status.RUNNING, cancel_requested=False,
                                              heartbeat_at=generation.heartbeat_at).update(
                status=Status.QUEUED, heartbeat_at=now)
            if moved:
                gid = str(generation.pk)
                transaction.on_commit(lambda gid=gid: _dispatch(gid))
        if moved:
            counts["requeued"] += 1
            _append_log(generation.pk, "The worker stopped responding; the job was queued again.")
    # No worker claims a queued job with a cancel request, so there is no race to wait out.
    for gid in Generation.objects.filter(status=Status.QUEUED, cancel_requested=True).values_list("id", flat=True):
        if _cancel_unattended(gid, status=Status.QUEUED):
            counts["canceled"] += 1
    stale_queued = Generation.objects.filter(Q(heartbeat_at__lt=now - settings.STALE_QUEUED_AFTER)
                                             | Q(heartbeat_at__isnull=True), status=Status.QUEUED,
                                             cancel_requested=False)
    for gid in stale_queued.values_list("id", flat=True):
        if Generation.objects.filter(pk=gid, status=Status.QUEUED, cancel_requested=False).update(heartbeat_at=now):
            _dispatch(str(gid))
            counts["redispatched"] += 1
    return counts
