"""The stale sweeps (beat, every SWEEP_INTERVAL_SECONDS, on the `housekeeping` queue): jobs whose
worker died, whose message was lost, or whose callback or next poll never came. Claims make a
duplicate dispatch harmless."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from generations import dispatch
from generations.attempts import append_log, cancel_unattended, finish_without_charge
from generations.models import Generation, Status


def generations_sweep_stale(now: datetime | None = None) -> dict[str, int]:
    """Find jobs nobody is taking forward:

    - parked (for a webhook, or between polls) with no heartbeat for STALE_RUNNING_AFTER: resumed, so a
      worker polls the provider (the callback or the next-poll message was lost);
    - running with no heartbeat for STALE_RUNNING_AFTER (the worker died): re-queued, or failed and
      refunded once out of attempts;
    - queued and not picked up for STALE_QUEUED_AFTER (a lost message, or a broker that was down when
      it was sent): sent again.

    A job whose cancel was requested is never re-queued or re-dispatched (the claim would skip it
    forever): one the provider has is resumed, so a worker asks the provider to stop it and learns how
    it ended; any other is canceled here and its hold released."""
    now = now or timezone.now()
    counts = {"requeued": 0, "failed": 0, "redispatched": 0, "canceled": 0, "resumed": 0}
    stale = now - settings.STALE_RUNNING_AFTER
    parked = Generation.objects.filter(status=Status.RUNNING, awaiting_webhook=True, heartbeat_at__lt=stale)
    for gid in parked.values_list("id", flat=True):
        # No callback or poll came (or it was lost): poll it now. The resume claims the row itself.
        dispatch.generation_resume_send(str(gid))
        counts["resumed"] += 1
    _sweep_running(now, stale, counts)
    # No worker claims a queued job with a cancel request, so there is no race to wait out.
    for gid in Generation.objects.filter(status=Status.QUEUED, cancel_requested=True).values_list("id", flat=True):
        if cancel_unattended(gid, status=Status.QUEUED):
            counts["canceled"] += 1
    stale_queued = Generation.objects.filter(Q(heartbeat_at__lt=now - settings.STALE_QUEUED_AFTER)
                                             | Q(heartbeat_at__isnull=True), status=Status.QUEUED,
                                             cancel_requested=False)
    for gid in stale_queued.values_list("id", flat=True):
        if Generation.objects.filter(pk=gid, status=Status.QUEUED, cancel_requested=False).update(heartbeat_at=now):
            dispatch.generation_run_send(str(gid))
            counts["redispatched"] += 1
    return counts


def _sweep_running(now: datetime, stale: datetime, counts: dict[str, int]) -> None:
    """Running jobs held by a worker (not parked) whose heartbeat stopped."""
    stale_running = Generation.objects.filter(status=Status.RUNNING, awaiting_webhook=False, heartbeat_at__lt=stale)
    for generation in stale_running.only("id", "attempts", "heartbeat_at", "cancel_requested", "provider_request_id"):
        if generation.cancel_requested and generation.provider_request_id:
            # The user asked to cancel and the worker that would have seen it is gone, but the provider
            # still has the job: it may still be running (and billing), or have finished with outputs
            # already billed. A worker resumes it as a parked job is resumed: it asks the provider to
            # stop and polls to the end, as the dead worker would have.
            if Generation.objects.filter(pk=generation.pk, status=Status.RUNNING,
                                         heartbeat_at=generation.heartbeat_at).update(awaiting_webhook=True,
                                                                                      heartbeat_at=now):
                dispatch.generation_resume_send(str(generation.pk))
                counts["resumed"] += 1
            continue
        if generation.cancel_requested:
            # Nothing was sent to the provider: no runner would ever see the request, so cancel here.
            if cancel_unattended(generation.pk, status=Status.RUNNING, heartbeat_at=generation.heartbeat_at):
                counts["canceled"] += 1
            continue
        if generation.attempts >= settings.GENERATION_MAX_ATTEMPTS:
            if finish_without_charge(generation, status=Status.FAILED, code="worker_lost",
                                     message="The worker running this job stopped responding."):
                counts["failed"] += 1
            continue
        with transaction.atomic():
            moved = Generation.objects.filter(pk=generation.pk, status=Status.RUNNING, cancel_requested=False,
                                              heartbeat_at=generation.heartbeat_at).update(
                status=Status.QUEUED, heartbeat_at=now)
            if moved:
                dispatch.generation_run_on_commit(str(generation.pk))
        if moved:
            counts["requeued"] += 1
            append_log(generation.pk, "The worker stopped responding; the job was queued again.")
