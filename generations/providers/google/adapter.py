"""`GoogleProvider`: Gemini and Imagen calls run on a thread behind submit/poll (generations.providers.jobs),
Veo as a long-running operation (generations.providers.google.video). The package docstring says why."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from google.genai import types

from generations.providers.base import CatalogModel, ProviderError, ProviderJob, ProviderStatus
from generations.providers.google.client import PROVIDER, api_key_for, genai_client
from generations.providers.google.errors import from_sdk_error, sdk_call
from generations.providers.google.io import content_result, generation_config, images_result, text_input
from generations.providers.google.video import video_poll, video_submit
from generations.providers.http import client_timeout
from generations.providers.jobs import Call, ThreadJobRegistry

SYNC_TIMEOUT_SECONDS = 180.0  # one generateContent / :predict call, unless the catalog says otherwise
CHECK_TIMEOUT_SECONDS = 15.0


def _prepare_generate_content(model: CatalogModel, inputs: Mapping[str, Any], api_key: str) -> Call:
    # Inputs (asset bytes included) are read here, in submit, so a bad input fails the submit itself.
    contents, config = text_input(model, inputs), generation_config(model, inputs)
    timeout = client_timeout(model.config, SYNC_TIMEOUT_SECONDS)

    def call() -> ProviderStatus:
        with genai_client(api_key, vertex=False, timeout=timeout,
                          api_version=model.config.get("api_version")) as client:
            response = sdk_call(client.models.generate_content, model=model.provider_model, contents=contents,
                                config=config)
        return content_result(model, response, uuid.uuid4().hex[:8])

    return call


def _prepare_generate_images(model: CatalogModel, inputs: Mapping[str, Any], api_key: str) -> Call:
    requested = int(inputs.get("num_images") or 1)
    config = types.GenerateImagesConfig(
        number_of_images=requested,
        aspect_ratio=inputs.get("aspect_ratio"),
        # Ask for the filter's reason so a blocked image can be explained instead of vanishing.
        include_rai_reason=True,
        person_generation=model.config.get("person_generation"),
    )
    prompt = str(inputs.get("prompt") or "").strip()
    timeout = client_timeout(model.config, SYNC_TIMEOUT_SECONDS)

    def call() -> ProviderStatus:
        with genai_client(api_key, vertex=True, timeout=timeout) as client:
            response = sdk_call(client.models.generate_images, model=model.provider_model, prompt=prompt,
                                config=config)
        return images_result(model, response, requested, uuid.uuid4().hex[:8])

    return call


SYNC_METHODS = {"generate_content": _prepare_generate_content, "generate_images": _prepare_generate_images}


def _method(model: CatalogModel) -> str:
    method = model.config.get("method")
    if method:
        return str(method)
    if model.provider_model.startswith("imagen-"):
        return "generate_images"
    if model.provider_model.startswith("veo-"):
        return "generate_videos"
    return "generate_content"


class GoogleProvider:
    name = PROVIDER
    # Every output arrives as bytes (inlineData, bytesBase64Encoded), so nothing is downloaded by URL.
    output_hosts: tuple[str, ...] = ()

    def parks_between_polls(self, job: ProviderJob) -> bool:
        # A Veo operation lives at Google (any worker can poll it); a synchronous call runs on a thread
        # of the worker that submitted it, which alone can poll it.
        return job.data.get("method") == "generate_videos"

    def __init__(self) -> None:
        # Synchronous calls (generateContent, Imagen :predict) run on a thread per call behind submit/poll,
        # so the runner keeps its heartbeat, cancel checks and deadline while Google works.
        self.registry = ThreadJobRegistry.for_calls(PROVIDER)
        # Keys per request id for Veo polls: ProviderJob.data is stored on the Generation row, so the key
        # never goes there. A poll in a fresh worker falls back to the platform key.
        self._keys: dict[str, str] = {}

    def submit(self, model: CatalogModel, inputs: dict[str, Any], *, credentials: dict[str, str] | None,
               webhook_url: str | None = None) -> ProviderJob:
        # webhook_url is ignored: the pipeline polls Google (see docs/providers/google.md).
        api_key = api_key_for(credentials)
        method = _method(model)
        if method == "generate_videos":
            job = video_submit(model, inputs, api_key)
            self._keys[job.request_id] = api_key
            return job
        prepare = SYNC_METHODS.get(method)
        if prepare is None:
            raise ProviderError(f"The Google adapter has no method {method!r}.", code="unknown_model")
        request_id = self.registry.start_call(prepare(model, inputs, api_key),
                                              description=f"Google {model.provider_model}")
        return ProviderJob(provider=PROVIDER, request_id=request_id,
                           data={"method": method, "model": model.provider_model})

    def poll(self, job: ProviderJob) -> ProviderStatus:
        if job.data.get("method") == "generate_videos":
            key = (api_key_for(job.credentials) if job.credentials
                   else self._keys.get(job.request_id) or api_key_for(None))
            status = video_poll(job, key)
            if status.terminal:
                self._keys.pop(job.request_id, None)
            return status
        return self.registry.poll(job.request_id)

    def cancel(self, job: ProviderJob) -> bool:
        if job.data.get("method") == "generate_videos":
            # google-genai 3.4.0 has no operations.cancel (operations.py has only `get`): nothing to send.
            self._keys.pop(job.request_id, None)
            return False
        # A synchronous call can only stop being waited for; Google still bills the request already sent.
        return self.registry.cancel(job.request_id)

    def check_credentials(self, credentials: dict[str, str] | None) -> None:
        """One page of models.list on the Gemini Developer API: authenticated, free, no model run."""
        api_key = api_key_for(credentials)
        with genai_client(api_key, vertex=False, timeout=CHECK_TIMEOUT_SECONDS) as client:
            try:
                client.models.list(config={"page_size": 1})
            except Exception as exc:
                raise from_sdk_error(exc) from exc


__all__ = ["GoogleProvider"]
