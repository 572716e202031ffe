"""Sending a Celery task by its name, so that the services which queue work never import the `tasks`
modules (those import the services, and sit above them in the layers: docs/ARCHITECTURE.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import current_app


def task_send(name: str, *, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
              countdown: float | None = None) -> None:
    """Queue the task `name` as `.delay()` would: to the broker (its queue from CELERY_TASK_ROUTES), or,
    with CELERY_TASK_ALWAYS_EAGER, run here and now. Raises what the broker raises when it is down."""
    app: Any = current_app
    if app.conf.task_always_eager:
        if name not in app.tasks:  # a web process has not imported the tasks modules (a worker has)
            app.loader.import_default_modules()
        app.tasks[name].apply(args=list(args), kwargs=kwargs or {}, countdown=countdown)
    else:
        app.send_task(name, args=list(args), kwargs=kwargs or {}, countdown=countdown)
