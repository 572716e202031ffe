"""Provider lookup by name. Adapters are imported lazily so a worker only loads what it runs."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from generations.providers.base import Provider

PROVIDERS: dict[str, str] = {
    "local": "generations.providers.local.LocalProvider",
    "fal": "generations.providers.fal.adapter.FalProvider",
    "replicate": "generations.providers.replicate.ReplicateProvider",
    "google": "generations.providers.google.adapter.GoogleProvider",
    "openai": "generations.providers.openai.OpenAIProvider",
    "anthropic": "generations.providers.anthropic.AnthropicProvider",
    "openrouter": "generations.providers.openrouter.OpenRouterProvider",
}


class UnknownProvider(LookupError):
    pass


@cache
def get_provider(name: str) -> Provider:
    try:
        dotted = PROVIDERS[name]
    except KeyError as exc:
        raise UnknownProvider(f"No provider named {name!r}.") from exc
    module_name, class_name = dotted.rsplit(".", 1)
    return getattr(import_module(module_name), class_name)()
