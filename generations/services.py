"""Generation writes from the web, the API, the admin and the CLI: estimate, submit, cancel (see
docs/ARCHITECTURE.md, "A generation's life"). The worker's side is generations/runner.py (the run),
generations/attempts.py (how an attempt ends) and generations/sweep.py (stale jobs)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from assets.uploads.quota import human, storage_use
from billing.hooks import budget_hold, budget_release
from billing.limits import credits_per_usd_for, rate_limit_check
from billing.services import credits_hold, hold_release
from core.errors import Conflict, InvalidRequest, ServiceError
from generations import dispatch, pricing
from generations.attempts import append_log
from generations.credentials import availability_for
from generations.inputs import validate_inputs
from generations.models import AIModel, Generation, Status
from generations.selectors import generation_get_for_user
from projects.selectors import project_get_for_user

if TYPE_CHECKING:
    from accounts.models import User
    from projects.models import Project


def generation_estimate(*, user: User, model_id: str, inputs: Any,
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


def generation_create(*, user: User, project_id: uuid.UUID | str, model_id: str, inputs: Any,
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
        # After the commit, robustly: a broker that is down then is logged, not raised, and the sweep
        # sends the job again (generations/dispatch.py); the submit still answers 202.
        dispatch.generation_run_on_commit(str(generation.pk))
    return generation


def _storage_check(project: Project) -> None:
    """A full storage quota refuses new jobs: their outputs would land past it (a running job's outputs
    are always stored, even over the quota, so nothing paid for is lost)."""
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
def generation_cancel(*, user: User, generation_id: uuid.UUID | str) -> Generation:
    generation = generation_get_for_user(user, generation_id)
    if generation.status == Status.QUEUED:
        # Not yet claimed by a worker: cancel here. The claim filters on status, so whichever of the
        # two updates lands first wins and the other does nothing.
        if Generation.objects.filter(pk=generation.pk, status=Status.QUEUED).update(
                status=Status.CANCELED, finished_at=timezone.now(), cancel_requested=True, queue_position=None):
            hold_release(reference=generation.hold_reference)
            budget_release(generation=generation)
            append_log(generation.pk, "Canceled before it started; nothing was charged.")
            generation.refresh_from_db()
            return generation
        generation.refresh_from_db()
    if generation.status == Status.RUNNING:
        # The worker running it is the only writer of its log; it notes the cancel when it sees it.
        Generation.objects.filter(pk=generation.pk).update(cancel_requested=True)
        generation.refresh_from_db()
        if generation.awaiting_webhook:
            # Parked (until the provider calls back, or until its next poll): resume it now so a worker
            # asks the provider to stop it (the resume's claim is atomic, so a webhook or a poll arriving
            # too is harmless).
            dispatch.generation_resume_on_commit(str(generation.pk))
        return generation
    raise Conflict(f"This generation has already {generation.status}; there is nothing to cancel.",
                   code="not_cancelable")


def generation_webhook_accept(*, provider: str, request_id: str, terminal: bool) -> bool:
    """A provider's verified callback about `request_id`. False when no job has that request (yet: a
    fast job can complete before our worker has stored its request id), so the view answers 404 and
    the provider retries. A parked job whose request ended is resumed after the commit, by name and
    robustly: a broker that is down then is logged, and the sweep resumes the job once it is stale."""
    generation = (Generation.objects.filter(provider=provider, provider_request_id=request_id)
                  .only("id", "status", "awaiting_webhook").first())
    if generation is None:
        return False
    if generation.status == Status.RUNNING and generation.awaiting_webhook and terminal:
        dispatch.generation_resume_on_commit(str(generation.pk))
    return True
