from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models


class Operation(models.TextChoices):
    TEXT_TO_IMAGE = "text-to-image"
    IMAGE_TO_IMAGE = "image-to-image"
    INPAINT = "inpaint"
    UPSCALE = "upscale"
    BACKGROUND_REMOVAL = "background-removal"
    TEXT_TO_VIDEO = "text-to-video"
    IMAGE_TO_VIDEO = "image-to-video"
    VIDEO_MATTING = "video-matting"
    TEXT_TO_SPEECH = "text-to-speech"
    AUDIO_CLEANUP = "audio-cleanup"
    TEXT_GENERATION = "text-generation"
    IMAGE_TO_3D = "image-to-3d"


class AIModel(models.Model):
    """A catalog entry: what can be run, where, with which inputs. Loaded from generations/catalog/."""

    id = models.CharField(primary_key=True, max_length=120)  # "local/sketch", "fal-ai/flux/schnell"
    provider = models.CharField(max_length=40)
    provider_model = models.CharField(max_length=200)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    operation = models.CharField(max_length=30, choices=Operation.choices)
    output_kind = models.CharField(max_length=10)
    input_schema = models.JSONField(default=dict)
    config = models.JSONField(default=dict, blank=True)  # provider-specific settings from the catalog
    timeout_seconds = models.PositiveIntegerField(default=600)
    active = models.BooleanField(default=True)
    featured = models.BooleanField(default=False)
    catalog_version = models.CharField(max_length=40, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "generations_model"
        verbose_name = "model"
        ordering = ["operation", "-featured", "name"]
        indexes = [
            # model_list(): active models by operation.
            models.Index(fields=["active", "operation"], name="gen_model_active_operation"),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def current_price(self) -> PriceCard | None:
        cards = getattr(self, "_prefetched_objects_cache", {}).get("price_cards")
        if cards is not None:
            return max(cards, key=lambda card: card.version, default=None)
        return self.price_cards.order_by("-version").first()


class PriceUnit(models.TextChoices):
    IMAGE = "image", "per image"
    MEGAPIXEL = "megapixel", "per megapixel"
    SECOND = "second", "per second"
    KILO_CHARACTERS = "1k_characters", "per 1,000 characters"
    KILO_TOKENS = "1k_tokens", "per 1,000 tokens"
    REQUEST = "request", "per request"


class PriceCard(models.Model):
    """A versioned price. A new version is added when terms change; old ones stay for the generations
    that were charged by them."""

    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, related_name="price_cards")
    version = models.PositiveIntegerField()
    unit = models.CharField(max_length=20, choices=PriceUnit.choices)
    usd_per_unit = models.DecimalField(max_digits=12, decimal_places=6)
    quantity = models.JSONField(default=dict, blank=True)  # where the unit count comes from (pricing.py)
    effective_from = models.DateField()
    source = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="gen_price_unique_version"),
            models.CheckConstraint(condition=models.Q(usd_per_unit__gte=Decimal("0")),
                                   name="gen_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} v{self.version}: ${self.usd_per_unit} {self.get_unit_display()}"


class Status(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)


class Generation(models.Model):
    """One AI job and its whole history: inputs, progress, logs, outputs (Asset.generation) and cost."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generations")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="generations")
    model = models.ForeignKey(AIModel, on_delete=models.PROTECT, related_name="generations")
    price_card = models.ForeignKey(PriceCard, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    inputs = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    queue_position = models.PositiveIntegerField(null=True, blank=True)
    logs = models.JSONField(default=list, blank=True)  # [{"t": iso time, "message": str}]
    provider = models.CharField(max_length=40)
    provider_request_id = models.CharField(max_length=200, blank=True)
    provider_data = models.JSONField(default=dict, blank=True)  # what the adapter needs to poll or cancel
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    credits_estimated = models.PositiveIntegerField(default=0)
    credits_held = models.PositiveIntegerField(default=0)
    credits_charged = models.PositiveIntegerField(default=0)
    # The most the user agreed to pay (at or above the estimate). The hold is this amount, so a job whose
    # actual cost comes in above the estimate (token- or second-priced work) can be charged up to it;
    # without it, the charge is capped at the estimate and the platform absorbs any overrun.
    max_credits = models.PositiveIntegerField(null=True, blank=True)
    cost_usd_estimated = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    provider_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Whose key pays the provider: the user's own (no credits, or the BYO fee), the platform's, or none (local).
    key_source = models.CharField(max_length=10, default="none")
    # Submitted with a webhook: no worker waits on it; the provider's callback (or the sweep) resumes it.
    awaiting_webhook = models.BooleanField(default=False)
    # Models to switch to, in order, when this one fails transiently (and the user can pay for them).
    fallback_models = models.JSONField(default=list, blank=True)
    # Each switch made: [{"from": model id, "to": model id, "reason": error code, "t": iso time}].
    # `model` and `provider` are the ones that actually served the job.
    fallbacks_used = models.JSONField(default=list, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # The BudgetUsage rows (one per budget and period) this job's hold is counted in, written with the
    # hold: settle and release adjust exactly these, even if a budget is created, removed or re-created
    # while the job runs, or the month turns.
    budget_usage_ids = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)  # the first attempt's start, as users see it
    # This attempt's claim: the model's timeout runs from here, so a job re-queued after its worker died
    # (or a transient error) gets its whole timeout again rather than the first attempt's leftovers.
    attempt_started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="gen_progress_at_most_100"),
            models.CheckConstraint(condition=models.Q(credits_charged__lte=models.F("credits_held")),
                                   name="gen_charged_within_hold"),
        ]
        indexes = [
            # generation_list_for_user(): a user's history, newest first.
            models.Index(fields=["user", "-created_at"], name="gen_user_recent"),
            # the project page's job list.
            models.Index(fields=["project", "-created_at"], name="gen_project_recent"),
            # generations_sweep_stale(): running jobs whose heartbeat stopped.
            models.Index(fields=["status", "heartbeat_at"], name="gen_status_heartbeat"),
            # selectors.with_queue_place(): how many queued jobs were created before this one. Partial, so
            # it holds only the jobs waiting (kilobytes, not a row per job ever run) and the count is an
            # index-only scan on PostgreSQL. (SQLite cannot match it against the bound status parameter
            # and counts through gen_status_heartbeat instead; fine for development.)
            models.Index(fields=["created_at"], name="gen_queued_created",
                         condition=models.Q(status="queued", cancel_requested=False)),
            # provider_webhook(): the job a provider's callback is about.
            models.Index(fields=["provider", "provider_request_id"], name="gen_provider_request"),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} {self.status} {self.id}"

    @property
    def hold_reference(self) -> str:
        return f"generation:{self.id}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def queue_place(self) -> int | None:
        """Where the job waits, as shown: a queued job's place in the studio's own queue (jobs ahead
        of it; selectors.with_queue_place annotates it), a running job's place in its provider's queue
        while the provider reports one, else None."""
        if self.status == Status.QUEUED:
            return getattr(self, "queued_ahead", None)
        return self.queue_position if self.status == Status.RUNNING else None


class ProviderOutcome(models.Model):
    """One provider attempt's result, for rolling success rates and latency (admin) and the circuit
    breaker's history. Append-only; old rows are pruned by the sweep."""

    provider = models.CharField(max_length=40)
    model = models.CharField(max_length=120)
    ok = models.BooleanField()
    transient = models.BooleanField(default=False)
    error_code = models.CharField(max_length=40, blank=True)
    latency_ms = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # provider_health(): outcomes in a recent window, per provider and model.
            models.Index(fields=["created_at", "provider", "model"], name="gen_outcome_recent"),
        ]
