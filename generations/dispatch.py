"""Sending generation work to the queue: by task name, and never at the cost of an accepted job.

By the time a job is sent, its row is committed and its credits are held. A broker that is down then
must not turn the submit into a 500 (the client would retry and hold twice) or stop the sweep halfway.
So a send that fails is logged and the job stays queued with its heartbeat: the sweep
(`generations_sweep_stale`, every SWEEP_INTERVAL_SECONDS) sends it again once it has waited
STALE_QUEUED_AFTER, and the claim makes a second delivery harmless.

Tasks are sent by name, so the services that send them never import `generations.tasks` (which
imports the services). Eager mode (CELERY_TASK_ALWAYS_EAGER, for debugging) runs them inline as
`.delay()` would. The sends after a commit use `on_commit(..., robust=True)`: whatever a send raises
then is logged by Django and never reaches the request or the sweep whose transaction committed.

A parked job's next poll (`generation_poll_send`) is the resume task with a countdown and the park's
token (the heartbeat it was parked with): a message from an earlier park claims nothing.
"""

from __future__ import annotations

import logging

from django.db import transaction
from kombu.exceptions import OperationalError

from core.dispatch import task_send

logger = logging.getLogger(__name__)

RUN_TASK = "generations.tasks.generation_run_task"
RESUME_TASK = "generations.tasks.generation_resume_task"

# What a send raises when the broker cannot take the message: kombu's wrapper for connection errors,
# and the OSError a filesystem broker raises for a folder it cannot write.
BROKER_DOWN = (OperationalError, OSError)


def _send(name: str, generation_id: str, countdown: float | None = None, *extra: str) -> bool:
    """Send one task now. False (logged) when the broker cannot take it; the sweep sends it again."""
    try:
        task_send(name, args=[generation_id, *extra], countdown=countdown or None)
    except BROKER_DOWN:
        logger.warning("could not send %s for generation %s: the broker is unreachable; the sweep will "
                       "send it again", name.rsplit(".", 1)[-1], generation_id, exc_info=True)
        return False
    return True


def generation_run_send(generation_id: str, countdown: float | None = None) -> bool:
    return _send(RUN_TASK, generation_id, countdown)


def generation_resume_send(generation_id: str) -> bool:
    return _send(RESUME_TASK, generation_id)


def generation_poll_send(generation_id: str, *, parked_at: str, countdown: float) -> bool:
    """The next poll of a job parked between polls, after `countdown` seconds. Lost (a broker down, a
    worker killed holding the delayed message), the sweep resumes the job once its heartbeat is stale."""
    return _send(RESUME_TASK, generation_id, countdown, parked_at)


def generation_run_on_commit(generation_id: str) -> None:
    """Send the run once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: generation_run_send(generation_id), robust=True)


def generation_resume_on_commit(generation_id: str) -> None:
    transaction.on_commit(lambda: generation_resume_send(generation_id), robust=True)
