"""One claimed attempt at a generation, in the worker, and the ways it ends: finish (outputs stored,
then the charge settled), fail or cancel (hold released), requeue (back to the queue after a
backoff), fall back to another model. The runner (generations/runner.py) decides which; the sweep
(generations/sweep.py) uses the same ends for jobs whose worker is gone."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.hooks import (
    BudgetExceeded,
    budget_release,
    budget_resize,
    budget_settle,
    usage_cost_record,
    usage_record,
)
from billing.limits import credits_per_usd_for
from billing.services import InsufficientCredits, hold_release, hold_resize, hold_settle
from core.errors import InvalidRequest
from generations import dispatch, pricing
from generations.credentials import availability_for
from generations.fetch import Prepared
from generations.health import circuit_open_for
from generations.ingest import outputs_discard, outputs_discard_for, outputs_store
from generations.inputs import validate_inputs
from generations.models import AIModel, Generation, Status
from generations.providers.base import ProviderError, ProviderStatus

if TYPE_CHECKING:
    from assets.models import Asset

logger = logging.getLogger(__name__)

MAX_LOG_LINES = 500


class RetryLater(Exception):
    """A transient failure: the task re-queues the job after `countdown` seconds."""

    def __init__(self, countdown: float) -> None:
        super().__init__(f"retry in {countdown:.1f}s")
        self.countdown = countdown


def _log_line(message: str) -> dict[str, str]:
    return {"t": timezone.now().isoformat(), "message": message}


def append_log(generation_id: Any, *messages: str) -> None:
    """Add lines to a job's log from outside its runner (a locked read-modify-write)."""
    if not messages:
        return
    now = timezone.now().isoformat()
    with transaction.atomic():
        row = Generation.objects.select_for_update().filter(pk=generation_id).values_list("logs", flat=True).first()
        if row is None:
            return
        logs = list(row) + [{"t": now, "message": m} for m in messages]
        Generation.objects.filter(pk=generation_id).update(logs=logs[-MAX_LOG_LINES:])


class Attempt:
    """One claimed attempt at a generation, in the worker.

    While a job runs, its runner is the only writer of its row's progress, queue position, heartbeat
    and logs (a cancel from the web only sets `cancel_requested`), so it keeps the log in memory and
    writes whatever changed in one UPDATE per poll, instead of a locked read-modify-write per line."""

    HEARTBEAT = timedelta(seconds=5)
    CANCEL_CHECK = timedelta(seconds=0.5)

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.logs: list[dict[str, str]] = list(generation.logs)
        self.dirty: dict[str, Any] = {}
        # What the row shows: a resumed (parked) job starts from what the last poll wrote.
        self.progress: int | None = generation.progress
        self.queue_position: int | None = generation.queue_position
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

    def record(self, status: ProviderStatus, *, write: bool = True) -> None:
        if status.progress is not None:
            progress = max(0, min(100, int(status.progress)))
            if progress != self.progress:
                self.dirty["progress"] = self.progress = progress
        if status.queue_position != self.queue_position:
            self.dirty["queue_position"] = self.queue_position = status.queue_position
        if status.logs:
            self.log(*status.logs)
        if write:
            self.flush()

    def park(self) -> datetime | None:
        """Write what changed and let go of the row until the next poll: parked (`awaiting_webhook`,
        which no claim but a resume takes), with a fresh heartbeat that the poll message carries as its
        token (generations.runner.generation_resume). None when the job is no longer running."""
        now = timezone.now()
        changes = {**self.dirty, "awaiting_webhook": True, "heartbeat_at": now}
        self.dirty, self.heartbeat = {}, now
        return now if Generation.objects.filter(pk=self.generation.pk, status=Status.RUNNING).update(**changes) else None

    def cancel_requested(self) -> bool:
        now = timezone.now()
        if now - self.cancel_checked < self.CANCEL_CHECK:
            return False
        self.cancel_checked = now
        return bool(Generation.objects.filter(pk=self.generation.pk).values_list("cancel_requested", flat=True).first())

    def finish_without_charge(self, *, status: str, code: str = "", message: str = "",
                              provider_cost_usd: Decimal | None = None) -> bool:
        return finish_without_charge(self.generation, status=status, code=code, message=message, logs=self.logs,
                                     provider_cost_usd=provider_cost_usd)


# --- fail or cancel: the hold released ----------------------------------------------------------------

def finish_without_charge(generation: Generation, *, status: str, code: str = "", message: str = "",
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
    cost = usd(provider_cost_usd)
    if cost:
        line += f" The provider reported ${cost} for the work it did; you are not charged for it."
    changes: dict[str, Any] = {"status": status, "error_code": code[:40], "error_message": message,
                               "finished_at": timezone.now(), "queue_position": None, "awaiting_webhook": False}
    if cost is not None:
        changes["provider_cost_usd"] = cost_added(cost)
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
    if done:
        outputs_discard_for(generation.pk)  # stored by a worker that died before settling: not delivered
        if logs is None:
            append_log(generation.pk, line)
    return bool(done)


def generation_fail(*, generation_id: Any, code: str, message: str) -> bool:
    generation = Generation.objects.get(pk=generation_id)
    return finish_without_charge(generation, status=Status.FAILED, code=code, message=message)


def cancel_unattended(generation_id: Any, *, status: str, heartbeat_at: Any = None) -> bool:
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
    append_log(generation_id, f"Canceled as requested, {where}. Nothing was charged; the hold was released.")
    logger.info("generation %s canceled %s", generation_id, where)
    return True


def usd(cost: Decimal | None) -> Decimal | None:
    """A provider's cost rounded up to the micro-dollar, as pricing.actual rounds a success's."""
    return None if cost is None else Decimal(cost).quantize(Decimal("0.000001"), rounding=ROUND_CEILING)


def cost_added(cost: Decimal) -> Any:
    """The row's provider cost plus this attempt's: a job retried after a billed failure keeps both."""
    return Coalesce(F("provider_cost_usd"), Value(Decimal(0))) + Value(cost)


def _attempt_cost_note(attempt: Attempt, cost: Decimal | None) -> Decimal | None:
    """A failed attempt that goes back to the queue may still have been billed (OpenRouter's empty
    answers, Replicate's failed predictions): its cost, rounded, with a line in the job's log."""
    cost = usd(cost)
    if cost:
        attempt.log(f"The provider reported ${cost} for the failed attempt; you are not charged for it.")
    return cost


# --- finish: outputs stored, then a short settle ----------------------------------------------------------

def finish(attempt: Attempt, status: ProviderStatus, prepared: list[Prepared], *, note: str = "") -> None:
    """Store the outputs, then settle the charge. `note` is logged first (e.g. that the provider
    finished after the user asked to cancel). The row's provider cost adds this attempt's to any billed
    failures before it.

    The files go to storage (S3 uploads, for video a long write) before the settle transaction, never
    while the row is locked; the transaction then only locks the row, checks it is still running,
    settles and marks it succeeded. A job canceled or swept meanwhile, or a settle that fails, has its
    stored assets deleted, rows and files (ingest.outputs_discard): nothing is left behind."""
    generation = attempt.generation
    requested = int(generation.inputs.get("num_images", 1) or 1) if generation.model.output_kind == "image" else 1
    stored: list[Asset] = []
    settled = False
    try:
        outputs_discard_for(generation.pk)  # a dead worker's unsettled outputs are not this attempt's
        stored = outputs_store(generation=generation, prepared=prepared, beat=attempt.flush)
        with transaction.atomic():
            if Generation.objects.select_for_update().filter(pk=generation.pk, status=Status.RUNNING).first() is None:
                return  # canceled or swept meanwhile; its hold is already closed (the finally discards)
            _settle(attempt, status, stored, requested=requested, note=note)
        settled = True
    except ProviderError as exc:
        # The provider finished, so it billed the outputs even though they could not be kept: its
        # reported cost, else the estimate (fal reports none; it bills successful outputs).
        billed = status.cost_usd if status.cost_usd is not None else (
            generation.cost_usd_estimated if prepared else None)
        attempt.finish_without_charge(status=Status.FAILED, code=exc.code, message=exc.message,
                                      provider_cost_usd=billed)
    finally:
        if not settled:
            outputs_discard(stored)


def _settle(attempt: Attempt, status: ProviderStatus, stored: list[Asset], *, requested: int, note: str) -> None:
    generation = attempt.generation
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
        attempt.log(note)
    if credits > charged:
        attempt.log(f"Actual cost came to {pricing.credits_display(credits)}, above the "
                    f"{pricing.credits_display(charged)} held; you are charged {charged}.")
    attempt.log(f"Succeeded: {len(stored)} output(s); charged {pricing.credits_display(charged)}.")
    usage_record(generation=generation, succeeded=True, credits=charged, provider_cost_usd=cost)
    Generation.objects.filter(pk=generation.pk).update(
        status=Status.SUCCEEDED, progress=100, finished_at=timezone.now(), credits_charged=charged,
        provider_cost_usd=cost_added(cost), queue_position=None, awaiting_webhook=False, logs=attempt.logs)


# --- requeue: back to the queue after a backoff -------------------------------------------------------

def backoff(attempt_number: int, retry_after: float | None) -> float:
    base = min(60.0, 2.0 ** attempt_number)
    return max(base, float(retry_after or 0))


def requeue(attempt: Attempt, status: ProviderStatus, *, forget_request: bool, refund_attempt: bool = False) -> None:
    """Back to queued, and RetryLater for the task to send it again after the backoff (2^attempt s, at
    least Retry-After, at most 60 s)."""
    generation = attempt.generation
    countdown = backoff(generation.attempts, status.usage.get("retry_after"))
    if not refund_attempt:
        attempt.log(f"Transient error ({status.error_code}: {status.error_message}); retrying in {countdown:.0f}s.")
    changes: dict[str, Any] = {"status": Status.QUEUED, "heartbeat_at": timezone.now(), "logs": attempt.logs,
                               "awaiting_webhook": False}
    if refund_attempt:
        changes["attempts"] = F("attempts") - 1
    if forget_request:
        changes.update(provider_request_id="", provider_data={})
    cost = _attempt_cost_note(attempt, status.cost_usd)
    if cost:
        changes["provider_cost_usd"] = cost_added(cost)
    with transaction.atomic():
        moved = Generation.objects.filter(pk=generation.pk, status=Status.RUNNING).update(**changes)
        if moved and cost:
            usage_cost_record(generation=generation, provider_cost_usd=cost)
    if moved:
        raise RetryLater(countdown)


# --- fallback: the next model that fits ------------------------------------------------------------------

def fallback(attempt: Attempt, *, reason: str, provider_cost_usd: Decimal | None = None) -> bool:
    """Move a transiently failing job to its next fallback model that is active, healthy, runnable by
    this user, accepts the job's inputs, and that the user can pay for (its hold is resized first).
    Re-queues the job on the new model and returns True; False when no fallback fits. What the provider
    reports it billed for the failed attempt (`provider_cost_usd`) is kept on the row and in the rollup."""
    generation = attempt.generation
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
            attempt.log(f"Fallback {model.id} does not take this job's inputs; skipped.")
            continue
        estimate = pricing.estimate(model.current_price, filled, assets,
                                    credits_per_usd=credits_per_usd_for(user_id=generation.user_id))
        credits = pricing.byo_fee(estimate.credits) if access.key_source == "user" else estimate.credits
        if generation.max_credits is not None and credits > generation.max_credits:
            attempt.log(f"Fallback {model.id} would cost {pricing.credits_display(credits)}, above your "
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
            attempt.log(f"Fallback {model.id} would need {pricing.credits_display(held)}, more than are "
                        "available; skipped.")
            continue
        except BudgetExceeded as exc:
            attempt.log(f"Fallback {model.id} skipped: {exc.message}")
            continue
        attempt.log(f"{generation.model_id} failed ({reason}); switching to fallback {model.id} "
                    f"({pricing.credits_display(held)} held).")
        used_entry = {"from": generation.model_id, "to": model.id, "reason": reason, "t": timezone.now().isoformat()}
        cost = _attempt_cost_note(attempt, provider_cost_usd)
        with transaction.atomic():
            moved = Generation.objects.filter(pk=generation.pk, status=Status.RUNNING).update(
                status=Status.QUEUED, model=model, provider=model.provider, price_card=model.current_price,
                inputs=filled, key_source=access.key_source, credits_estimated=credits, credits_held=held,
                cost_usd_estimated=estimate.cost_usd, provider_request_id="", provider_data={}, attempts=0,
                fallbacks_used=[*generation.fallbacks_used, used_entry], logs=attempt.logs,
                heartbeat_at=timezone.now(), awaiting_webhook=False,
                **({"provider_cost_usd": cost_added(cost)} if cost else {}))
            if moved and cost:
                usage_cost_record(generation=generation, provider_cost_usd=cost)  # on the model that ran it
            if moved:
                dispatch.generation_run_on_commit(str(generation.pk))
        return bool(moved)
    return False
