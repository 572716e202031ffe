"""The Celery app. Broker and worker settings live in config.settings under the CELERY_ namespace."""

import os
from pathlib import Path
from typing import Any

from celery import Celery, signals

from config import broker

broker.install()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

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
