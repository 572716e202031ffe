"""What crosses the wire to Google and back: the user's text and assets as request parts and the
generation config, responses checked for policy blocks and turned into Outputs, and token counts
priced at the catalog's rates."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from google.genai import types

from generations.providers.base import CatalogModel, Output, ProviderError, ProviderStatus
from generations.providers.google.errors import policy_error

# Finish / block reasons that mean the output (or the prompt) was stopped by a safety or policy filter
# (types.FinishReason / types.BlockedReason in 3.4.0).
POLICY_FINISH_REASONS = {
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
}


def enum_name(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def asset_part(value: Any, name: str) -> tuple[bytes, str]:
    if not callable(getattr(value, "read", None)):
        raise ProviderError(f"{name} must be an uploaded asset.", code="invalid_input")
    return value.read(), (getattr(value, "mime", "") or "application/octet-stream")


def text_input(model: CatalogModel, inputs: Mapping[str, Any]) -> list[Any]:
    """The user turn: the configured text field, plus any asset fields named in config["asset_inputs"]."""
    parts: list[Any] = []
    for field in model.config.get("asset_inputs", []):
        value = inputs.get(field)
        if not value:
            continue
        data, mime = asset_part(value, field)
        if mime.startswith("text/"):
            parts.append(types.Part.from_text(text=data.decode("utf-8", "replace")))
        else:  # images and PDFs go to Gemini as inline bytes
            parts.append(types.Part.from_bytes(data=data, mime_type=mime))
    text = str(inputs.get(model.config.get("text_input", "prompt")) or "").strip()
    if text:
        parts.append(types.Part.from_text(text=text))
    if not parts:
        raise ProviderError("Give the model some text to work on.", code="invalid_input")
    return parts


def _price(config: Mapping[str, Any], key: str) -> Decimal | None:
    value = config.get(key)
    return Decimal(str(value)) if value is not None else None


def _token_usage(response: Any, config: Mapping[str, Any]) -> tuple[dict[str, Any], Decimal | None]:
    """usageMetadata → token counts, and their cost at the catalog's per-1M-token prices. Thinking tokens
    are billed as output (ai.google.dev/gemini-api/docs/pricing); image output tokens have their own price."""
    meta = getattr(response, "usage_metadata", None)
    if meta is None:
        return {}, None
    prompt = int(meta.prompt_token_count or 0)
    candidates = int(meta.candidates_token_count or 0)
    thoughts = int(meta.thoughts_token_count or 0)
    image_out = sum(int(d.token_count or 0) for d in (meta.candidates_tokens_details or [])
                    if enum_name(d.modality) == "IMAGE")
    text_out = max(0, candidates - image_out) + thoughts
    usage = {"input_tokens": prompt, "output_tokens": candidates, "thinking_tokens": thoughts,
             "image_output_tokens": image_out}
    price_in = _price(config, "usd_per_1m_input_tokens")
    price_out = _price(config, "usd_per_1m_output_tokens")
    if price_in is None or price_out is None:
        return usage, None
    price_image = _price(config, "usd_per_1m_output_image_tokens") or price_out
    # Unrounded: the pipeline rounds the final cost (up, to 6 places) in pricing.actual.
    return usage, (prompt * price_in + text_out * price_out + image_out * price_image) / Decimal(1_000_000)


def _check_content_response(response: Any) -> Any:
    """The first candidate, or a final error when Google blocked the prompt or the output."""
    feedback = getattr(response, "prompt_feedback", None)
    if feedback is not None and feedback.block_reason:
        reason = enum_name(feedback.block_reason)
        detail = f" {feedback.block_reason_message}" if feedback.block_reason_message else ""
        raise policy_error(f"Google blocked the prompt ({reason}).{detail}")
    if not response.candidates:
        raise ProviderError("Gemini returned no answer.", code="no_output", retryable=True)
    candidate = response.candidates[0]
    reason = enum_name(candidate.finish_reason)
    if reason in POLICY_FINISH_REASONS:
        detail = f" {candidate.finish_message}" if candidate.finish_message else ""
        raise policy_error(f"Gemini stopped because the output was flagged ({reason}).{detail}")
    return candidate


def _parts(candidate: Any) -> list[Any]:
    content = getattr(candidate, "content", None)
    return list(getattr(content, "parts", None) or [])


def generation_config(model: CatalogModel, inputs: Mapping[str, Any]) -> Any:
    config = model.config
    # No tools are passed, so automatic function calling has nothing to do; off keeps it out of the logs.
    kwargs: dict[str, Any] = {"automatic_function_calling": types.AutomaticFunctionCallingConfig(disable=True)}
    system = config.get("system_instruction") or inputs.get("system_prompt")
    if system:
        kwargs["system_instruction"] = system
    for field in ("temperature", "max_output_tokens", "seed"):
        if inputs.get(field) is not None:
            kwargs[field] = inputs[field]
    if "thinking_budget" in config:
        kwargs["thinking_config"] = types.ThinkingConfig(thinking_budget=int(config["thinking_budget"]))
    if model.output_kind == "image":
        kwargs["response_modalities"] = list(config.get("response_modalities", ["IMAGE"]))
        if inputs.get("aspect_ratio"):
            kwargs["image_config"] = types.ImageConfig(aspect_ratio=inputs["aspect_ratio"])
    return types.GenerateContentConfig(**kwargs)


def content_result(model: CatalogModel, response: Any, tag: str) -> ProviderStatus:
    candidate = _check_content_response(response)
    usage, cost = _token_usage(response, model.config)
    reason = enum_name(candidate.finish_reason)
    parts = _parts(candidate)
    texts = [p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", False)]
    logs = [f"Gemini used {usage.get('input_tokens', 0)} input and "
            f"{usage.get('output_tokens', 0) + usage.get('thinking_tokens', 0)} output tokens"
            + (f" (${cost})." if cost is not None else ".")]
    stem = model.provider_model.replace("/", "-")
    if model.output_kind == "image":
        images = [p.inline_data for p in parts
                  if getattr(p, "inline_data", None) is not None and p.inline_data.data
                  and str(p.inline_data.mime_type or "").startswith("image/")]
        if not images:
            if reason == "NO_IMAGE" or texts:
                said = " ".join(texts).strip()
                raise ProviderError("Gemini answered without an image" + (f": {said}" if said else "."),
                                    code="no_output", retryable=False)
            raise ProviderError("Gemini returned no image.", code="no_output", retryable=True)
        extension = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
        outputs = [Output(kind="image", mime=blob.mime_type, data=blob.data,
                          filename=f"{stem}-{tag}-{i + 1}.{extension.get(blob.mime_type, 'png')}",
                          metadata={"model_text": " ".join(texts).strip()} if texts else {})
                   for i, blob in enumerate(images)]
        usage["images"] = len(outputs)
    else:
        text = "".join(texts).strip()
        if not text:
            if reason == "MAX_TOKENS":
                raise ProviderError("Gemini used its whole output budget (max output tokens) before answering; "
                                    "raise the limit and try again.", code="max_tokens", retryable=False)
            raise ProviderError("Gemini returned an empty answer.", code="no_output", retryable=False)
        if reason == "MAX_TOKENS":
            logs.append("The answer was cut off at the max output tokens limit.")
        extension = model.config.get("output_extension", "md")
        outputs = [Output(kind="text", mime="text/plain", data=text.encode("utf-8"),
                          filename=f"{stem}-{tag}.{extension}",
                          metadata={"finish_reason": reason, "response_id": response.response_id or ""})]
    return ProviderStatus(state="succeeded", progress=100, logs=logs, outputs=outputs, usage=usage, cost_usd=cost)


def images_result(model: CatalogModel, response: Any, requested: int, tag: str) -> ProviderStatus:
    generated = list(response.generated_images or [])
    images = [g for g in generated if g.image is not None and g.image.image_bytes]
    filtered = [g.rai_filtered_reason for g in generated if g.rai_filtered_reason]
    if not images:
        raise policy_error(("Imagen's safety filters removed the image: " + "; ".join(filtered)) if filtered
                           else "Imagen returned no image; Google's safety filters probably removed it.")
    logs = [f"Imagen returned {len(images)} of {requested} image(s)."]
    if filtered:
        logs.append("Filtered by Google: " + "; ".join(filtered))
    stem = model.provider_model
    outputs = []
    for i, g in enumerate(images):
        mime = g.image.mime_type or "image/png"
        ext = "jpg" if mime == "image/jpeg" else "png"
        outputs.append(Output(kind="image", mime=mime, data=g.image.image_bytes,
                              filename=f"{stem}-{tag}-{i + 1}.{ext}",
                              metadata={"enhanced_prompt": g.enhanced_prompt} if g.enhanced_prompt else {}))
    # Imagen is priced per image delivered (ai.google.dev/gemini-api/docs/pricing): the price card applies.
    return ProviderStatus(state="succeeded", progress=100, logs=logs, outputs=outputs,
                          usage={"images": len(outputs), "units": len(outputs)})

