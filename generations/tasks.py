"""Thin tasks: they take ids and call services that tests can call directly."""

from __future__ import annotations

import logging

from celery import shared_task

from generations import services

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def generation_run_task(self, generation_id: str) -> None:  # type: ignore[no-untyped-def]
    try:
        services.generation_run(generation_id)
    except services.RetryLater as retry:
        # The row is back to queued; this re-delivery will claim it again. Attempts are capped by
        # GENERATION_MAX_ATTEMPTS in the service, not here.
        raise self.retry(countdown=retry.countdown)
    except Exception:
        logger.exception("generation %s crashed", generation_id)
        services.generation_fail(generation_id=generation_id, code="internal_error",
                                 message="The studio hit an internal error running this job.")
        raise


@shared_task(acks_late=True, reject_on_worker_lost=True)
def generation_resume_task(generation_id: str) -> None:
    try:
        services.generation_resume(generation_id)
    except services.RetryLater as retry:
        # The job is back to queued; it runs from the top (claim, poll) after the backoff.
        services.generation_dispatch(generation_id, countdown=retry.countdown)
    except Exception:
        logger.exception("generation %s crashed while resuming", generation_id)
        services.generation_fail(generation_id=generation_id, code="internal_error",
                                 message="The studio hit an internal error running this job.")
        raise


@shared_task
def generations_sweep_stale() -> dict[str, int]:
    return services.generations_sweep_stale()


@shared_task
def provider_outcomes_prune() -> int:
    from generations.health import outcomes_prune

    return outcomes_prune()
