"""The Celery app. Broker and worker settings live in config.settings under the CELERY_ namespace."""

import os

from celery import Celery

from config import broker

broker.install()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
