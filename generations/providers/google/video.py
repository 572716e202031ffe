"""Veo: a video job is a long-running operation on Vertex. Submit starts it and keeps its name; each
poll asks for it with `operations.get` until it is done, and the video comes back inline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.genai import types

from generations.providers.base import CatalogModel, Output, ProviderError, ProviderJob, ProviderStatus
from generations.providers.google.client import PROVIDER, genai_client
from generations.providers.google.errors import POLICY_MESSAGE, RETRYABLE_RPC_CODES, sdk_call
from generations.providers.google.io import asset_part
from generations.providers.http import client_timeout

POLL_TIMEOUT_SECONDS = 60.0  # one operations.get; the video bytes come back inline in its body


def video_submit(model: CatalogModel, inputs: Mapping[str, Any], api_key: str) -> ProviderJob:
    image = None
    if inputs.get("image"):
        data, mime = asset_part(inputs["image"], "image")
        image = types.Image(image_bytes=data, mime_type=mime)
    prompt = str(inputs.get("prompt") or "").strip() or None
    seconds = int(inputs.get("duration_seconds") or model.config.get("default_duration_seconds", 8))
    config = types.GenerateVideosConfig(
        number_of_videos=1,
        duration_seconds=seconds,
        aspect_ratio=inputs.get("aspect_ratio"),
        resolution=inputs.get("resolution"),
        negative_prompt=inputs.get("negative_prompt") or None,
        seed=inputs.get("seed"),
        # Vertex requires generateAudio for Veo 3 models; the price card is the with-audio rate.
        generate_audio=bool(model.config.get("generate_audio", True)),
        person_generation=model.config.get("person_generation"),
    )
    with genai_client(api_key, vertex=True, timeout=client_timeout(model.config, 60.0)) as client:
        operation = sdk_call(client.models.generate_videos, model=model.provider_model,
                             source=types.GenerateVideosSource(prompt=prompt, image=image), config=config)
    if not operation.name:
        raise ProviderError("Google accepted the video job but returned no operation name.",
                            code="provider_error", retryable=True)
    return ProviderJob(provider=PROVIDER, request_id=operation.name,
                       data={"method": "generate_videos", "operation": operation.name,
                             "model": model.provider_model, "seconds": seconds})


def video_poll(job: ProviderJob, api_key: str) -> ProviderStatus:
    name = job.data.get("operation") or job.request_id
    polls = int(job.data.get("polls", 0)) + 1
    job.data["polls"] = polls  # in memory for this run; the runner keeps the same job object between polls
    with genai_client(api_key, vertex=True, timeout=POLL_TIMEOUT_SECONDS) as client:
        # A pydantic model: mypy, without pydantic's plugin here, does not see its fields.
        operation = sdk_call(client.operations.get, types.GenerateVideosOperation(name=name))  # type: ignore[call-arg]
    if not operation.done:
        logs = [f"Veo is rendering (operation {name.rsplit('/', 1)[-1]})."] if polls == 1 else []
        return ProviderStatus(state="running", logs=logs)
    if operation.error:
        code = int(operation.error.get("code") or 0)
        message = str(operation.error.get("message") or "The video job failed at Google.")
        if POLICY_MESSAGE.search(message):
            return ProviderStatus(state="failed", error_code="content_policy", error_message=f"Google: {message}")
        return ProviderStatus(state="failed", error_code="provider_error", error_message=f"Google: {message}",
                              retryable=code in RETRYABLE_RPC_CODES)
    result = operation.result or operation.response
    generated = list(getattr(result, "generated_videos", None) or [])
    videos = [g.video for g in generated if g.video is not None and g.video.video_bytes]
    if not videos:
        reasons = list(getattr(result, "rai_media_filtered_reasons", None) or [])
        filtered_count: int = getattr(result, "rai_media_filtered_count", None) or 0
        if reasons or filtered_count:
            return ProviderStatus(state="failed", error_code="content_policy",
                                  error_message="Google's safety filters removed the video: "
                                  + ("; ".join(reasons) or "no reason given."))
        if any(g.video is not None and g.video.uri for g in generated):
            # Only when an output_gcs_uri was requested, which this adapter never does.
            return ProviderStatus(state="failed", error_code="unsupported_output",
                                  error_message="Google stored the video in Cloud Storage instead of returning it.")
        return ProviderStatus(state="failed", error_code="no_output", retryable=True,
                              error_message="Google finished the video job without a video.")
    seconds = int(job.data.get("seconds") or 8)
    stem = str(job.data.get("model") or "veo")
    outputs = [Output(kind="video", mime=v.mime_type or "video/mp4", data=v.video_bytes,
                      filename=f"{stem}-{name.rsplit('/', 1)[-1][:8]}-{i + 1}.mp4",
                      metadata={"duration_seconds": seconds, "operation": name})
               for i, v in enumerate(videos)]
    units = seconds * len(outputs)
    # Veo is priced per second of generated video: the price card (per second) applies to `units`.
    return ProviderStatus(state="succeeded", progress=100, outputs=outputs,
                          logs=[f"Veo finished: {len(outputs)} video(s), {units} s."],
                          usage={"videos": len(outputs), "seconds": units, "units": units})

