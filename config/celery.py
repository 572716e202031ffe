"""The Celery app. Broker and worker settings live in config/settings/base.py under the CELERY_ namespace.

It sets no DJANGO_SETTINGS_MODULE of its own: this module is imported by every entry point (through
config/__init__.py), before config/wsgi.py could default to production. A worker started by `make run`
inherits manage.py's (dev), the Docker image sets production's, and a bare `celery -A config worker`
needs the variable set."""

import os
from pathlib import Path
from typing import Any

from celery import Celery, signals

from config import broker

broker.install()

app = Celery("studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _announce_ready(**kwargs: Any) -> None:
    """`make run`'s supervisor (accounts/management/commands/run_studio.py) prints the demo credentials
    only when every process is up: a worker or beat it starts touches STUDIO_READY_FILE once ready."""
    path = os.environ.get("STUDIO_READY_FILE")
    if path:
        Path(path).touch()


signals.worker_ready.connect(_announce_ready, weak=False)
signals.beat_init.connect(_announce_ready, weak=False)
