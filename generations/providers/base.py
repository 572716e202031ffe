"""The contract every provider adapter implements.

The runner (generations.runner) calls `submit` once, then `poll` until the status is
terminal, writing progress, queue position and log lines into the Generation as they arrive, and
`cancel` when the user asks. Provider calls happen outside database transactions.

Errors: an adapter raises `ProviderError(retryable=True)` for transient trouble (HTTP 429/5xx, timeouts,
connection errors) and `retryable=False` for anything the same request would hit again (validation,
content policy, bad key). `poll` may instead return a `failed` status with the same meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from django.core.files.storage import default_storage

State = Literal["queued", "running", "succeeded", "failed", "canceled"]
OutputKind = Literal["image", "video", "audio", "text", "mesh", "other"]
OUTPUT_KINDS: tuple[OutputKind, ...] = get_args(OutputKind)


def as_output_kind(value: object) -> OutputKind | None:
    """`value` when it names an output kind (a catalog's or a provider's string), else None."""
    for kind in OUTPUT_KINDS:
        if value == kind:
            return kind
    return None


class ProviderError(Exception):
    def __init__(self, message: str, *, code: str = "provider_error", retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class CatalogModel:
    """What a provider needs to know about the model it runs (a plain copy, never an ORM object)."""

    id: str  # catalog id, e.g. "local/sketch" or "fal-ai/flux/schnell"
    provider: str
    provider_model: str  # the provider's own name for it
    operation: str
    output_kind: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class AssetInput:
    """An input that refers to one of the user's assets (schema `"format": "asset"`).

    The runner resolves asset ids through the access funnel before the provider sees them, and hands
    the provider this description: the adapter reads the bytes with `read()` (local, or to upload them
    to the provider) or passes `url` (a short-lived download URL) when the provider fetches by URL.
    """

    id: str
    kind: str
    mime: str
    name: str
    storage_name: str
    size: int = 0
    width: int | None = None
    height: int | None = None
    url: str = ""

    def read(self) -> bytes:
        with default_storage.open(self.storage_name, "rb") as fh:
            return fh.read()


@dataclass
class ProviderJob:
    provider: str
    request_id: str
    data: dict[str, Any] = field(default_factory=dict)  # whatever the adapter needs to poll or cancel
    # The job's credentials, set by the runner on every job it polls or cancels (a job can be resumed
    # in another process than the one that submitted it). Never stored: `data` is persisted, this is not.
    credentials: dict[str, str] | None = field(default=None, repr=False, compare=False)


@dataclass
class Output:
    """One produced file. Exactly one of `data` (bytes) or `url` is set."""

    kind: OutputKind
    mime: str
    data: bytes | None = None
    url: str | None = None
    filename: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProviderStatus:
    state: State
    progress: int | None = None  # 0-100 when the provider reports it
    queue_position: int | None = None
    logs: list[str] = field(default_factory=list)  # new lines since the previous poll
    outputs: list[Output] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)  # units actually used, e.g. {"images": 1}
    # The provider's own reported cost, when it gives one, on *any* terminal state: failed and canceled
    # work can be billed too (Replicate bills the time a failed or canceled prediction ran). The runner
    # records it whatever the user is charged, so the margin report is true.
    cost_usd: Decimal | None = None
    error_code: str = ""
    error_message: str = ""
    retryable: bool = False

    @property
    def terminal(self) -> bool:
        return self.state in ("succeeded", "failed", "canceled")


@dataclass
class WebhookEvent:
    """A provider callback that passed signature verification."""

    request_id: str  # the provider's request/prediction id, as stored in Generation.provider_request_id
    status: ProviderStatus


class WebhookRejected(Exception):
    """A callback that failed verification (bad or missing signature, stale timestamp, bad body)."""


@runtime_checkable
class Provider(Protocol):
    """Every adapter. Remote adapters also have the optional members below.

    - `credentials` is `{"api_key": "..."}`: the user's own key when they saved one, else the platform
      key from the environment (generations.credentials resolves which).
    - `output_hosts`: host names (exact, or a leading "*." for subdomains) that outputs returned by URL
      may be downloaded from; generations.fetch refuses any other.
    - `check_credentials(credentials)`: one cheap authenticated call; raises ProviderError(code=
      "invalid_key") when the provider rejects the key. Used when a user saves a key and by
      `manage.py provider_check`.
    - `parse_webhook(headers, body, *, source="") -> WebhookEvent`: verify a callback as the provider
      documents and decode it; raise WebhookRejected otherwise. `source` is the sender's address, for
      per-sender limits on what a bad signature may cost (fal refetches its keys). Only providers that
      sign their webhooks have it.

    `cancel(job)` asks the provider to stop the job and returns True when it accepted the request. It is
    a request, not a stop: the job may still finish (fal: 202 then the app completes; 400
    ALREADY_COMPLETED), so the runner keeps polling to a terminal state afterwards, for at most
    GENERATION_CANCEL_GRACE, and delivers a result that arrives. It never raises.

    `parks_between_polls`: True when a job's state lives at the provider (fal's queue, Replicate's
    predictions), so the runner may let go of it between polls and any worker may poll it next
    (generations.runner, docs/ARCHITECTURE.md "Queues"); False for jobs that live in this worker process
    (the local engines, the synchronous adapters' thread calls). An adapter whose jobs differ defines it
    as a method of the job instead (Google: Veo's operations park, its synchronous calls do not).
    """

    name: str
    parks_between_polls: bool = False

    def submit(self, model: CatalogModel, inputs: dict[str, Any], *, credentials: dict[str, str] | None,
               webhook_url: str | None = None) -> ProviderJob: ...

    def poll(self, job: ProviderJob) -> ProviderStatus: ...

    def cancel(self, job: ProviderJob) -> bool: ...
