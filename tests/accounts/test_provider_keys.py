"""Users' own provider keys: checked with the provider, sealed with AES-256-GCM, never shown, rotatable,
and used (at no credit cost) by the jobs submitted on them. OpenAI's fake stands in for the provider."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.crypto import Sealed, open_sealed, seal
from accounts.models import ProviderKey
from accounts.services import provider_key_reveal, provider_keys_rotate
from billing.services import credits_summary
from core.errors import InvalidRequest
from generations.credentials import provider_key_save
from generations.models import Generation, Status
from generations.runner import generation_run
from generations.services import generation_create
from tests.fakes.openai import OpenAIFake
from tests.fakes.server import FakeServer

pytestmark = pytest.mark.django_db
KEY_A = base64.b64encode(b"a" * 32).decode()
KEY_B = base64.b64encode(b"b" * 32).decode()


@pytest.fixture
def openai_fake(settings: Any) -> Iterator[FakeServer]:
    with FakeServer(OpenAIFake) as server:
        server.state["keys"] = {"sk-user-own-key-1234", "sk-platform-key-9999"}
        settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, "openai": f"{server.url}/v1"}
        settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "openai": ""}
        settings.GENERATION_POLL_INTERVAL = 0.01
        yield server


def test_a_sealed_key_opens_only_for_its_own_user_and_provider(settings: Any) -> None:
    settings.KEY_ENCRYPTION_KEYS = f"k1:{KEY_A}"
    sealed = seal("sk-secret", user_id=7, provider="openai")
    assert b"sk-secret" not in sealed.ciphertext and len(sealed.nonce) == 12 and sealed.key_id == "k1"
    assert open_sealed(sealed, user_id=7, provider="openai") == "sk-secret"
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        open_sealed(sealed, user_id=8, provider="openai")
    with pytest.raises(InvalidTag):
        open_sealed(sealed, user_id=7, provider="fal")
    tampered = Sealed(sealed.key_id, sealed.nonce, bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:])
    with pytest.raises(InvalidTag):
        open_sealed(tampered, user_id=7, provider="openai")


def test_saving_checks_the_key_with_the_provider_and_refuses_a_rejected_one(owner: Any, openai_fake: FakeServer) -> None:
    with pytest.raises(InvalidRequest) as refused:
        provider_key_save(user=owner, provider="openai", api_key="sk-wrong-key-0000")
    assert refused.value.code == "invalid_key" and "OpenAI rejected this key" in refused.value.message
    assert not ProviderKey.objects.exists()
    row = provider_key_save(user=owner, provider="openai", api_key="sk-user-own-key-1234")
    assert row.last4 == "1234" and row.verified_at is not None
    assert b"sk-user-own-key" not in bytes(row.ciphertext)
    assert provider_key_reveal(row=row) == "sk-user-own-key-1234"
    assert any(_auth(r) == "Bearer sk-user-own-key-1234" for r in openai_fake.requests)


def test_the_api_shows_only_the_last_four_characters(owner: Any, owner_api: APIClient, openai_fake: FakeServer) -> None:
    saved = owner_api.put("/api/v1/provider-keys/openai", {"api_key": "sk-user-own-key-1234"}, format="json")
    assert saved.status_code == 200, saved.json()
    listed = owner_api.get("/api/v1/provider-keys").json()
    assert listed["results"][0]["provider"] == "openai" and listed["results"][0]["last4"] == "1234"
    assert "sk-user-own-key" not in str(listed) and "sk-user-own-key" not in str(saved.json())
    bad = owner_api.put("/api/v1/provider-keys/openai", {"api_key": "sk-wrong-key-0000"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_key"
    assert owner_api.delete("/api/v1/provider-keys/openai").status_code == 204
    assert owner_api.delete("/api/v1/provider-keys/openai").status_code == 404


def test_rotation_reseals_every_key_under_the_new_master_key(owner: Any, outsider: Any, settings: Any,
                                                             openai_fake: FakeServer) -> None:
    settings.KEY_ENCRYPTION_KEYS = f"old:{KEY_A}"
    provider_key_save(user=owner, provider="openai", api_key="sk-user-own-key-1234")
    provider_key_save(user=outsider, provider="openai", api_key="sk-platform-key-9999")
    settings.KEY_ENCRYPTION_KEYS = f"new:{KEY_B},old:{KEY_A}"
    call_command("rotate_provider_keys")
    assert set(ProviderKey.objects.values_list("key_id", flat=True)) == {"new"}
    settings.KEY_ENCRYPTION_KEYS = f"new:{KEY_B}"  # the old master key can now be retired
    assert provider_key_reveal(row=ProviderKey.objects.get(user=owner)) == "sk-user-own-key-1234"
    assert provider_keys_rotate() == 0


def test_models_without_any_key_are_unavailable_with_the_reason(owner_api: APIClient, catalog: None,
                                                                openai_fake: FakeServer) -> None:
    models = {m["id"]: m for m in owner_api.get("/api/v1/models").json()["results"]}
    openai_model = next(m for m in models.values() if m["provider"] == "openai")
    assert openai_model["availability"]["available"] is False
    assert "account page" in openai_model["availability"]["reason"]
    assert models["local/sketch"]["availability"] == {"available": True, "key_source": "none", "reason": ""}


def _auth(request: dict[str, Any]) -> str:
    return next((v for k, v in request["headers"].items() if k.lower() == "authorization"), "")


def _chat_model() -> str:
    from generations.models import AIModel

    return AIModel.objects.filter(provider="openai", operation="text-generation").values_list("id", flat=True).first()


def _chat_inputs(model_id: str) -> dict[str, Any]:
    from generations.models import AIModel

    schema = AIModel.objects.get(pk=model_id).input_schema
    field = next(name for name in ("prompt", "text", "message", "input") if name in schema["properties"])
    return {field: "Say hello"}


def test_a_job_on_the_users_own_key_charges_no_credits_and_records_the_cost(
        owner: Any, project: Any, catalog: None, openai_fake: FakeServer) -> None:
    model_id = _chat_model()
    with pytest.raises(InvalidRequest) as unavailable:
        generation_create(user=owner, project_id=project.pk, model_id=model_id, inputs=_chat_inputs(model_id))
    assert unavailable.value.code == "model_unavailable"
    provider_key_save(user=owner, provider="openai", api_key="sk-user-own-key-1234")
    generation = generation_create(user=owner, project_id=project.pk, model_id=model_id, inputs=_chat_inputs(model_id))
    assert generation.key_source == "user" and generation.credits_held == 0
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED, generation.error_message
    assert generation.credits_charged == 0 and generation.provider_cost_usd is not None
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}
    calls = [r for r in openai_fake.requests if r["path"].endswith("/chat/completions")]
    assert calls and _auth(calls[-1]) == "Bearer sk-user-own-key-1234"


def test_a_platform_fee_applies_on_the_users_own_key_when_configured(
        owner: Any, project: Any, catalog: None, openai_fake: FakeServer, settings: Any) -> None:
    settings.BYO_KEY_FEE_PERCENT = 10
    provider_key_save(user=owner, provider="openai", api_key="sk-user-own-key-1234")
    model_id = _chat_model()
    generation = generation_create(user=owner, project_id=project.pk, model_id=model_id, inputs=_chat_inputs(model_id))
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED
    assert generation.credits_charged == generation.credits_held >= 1


def test_a_job_submitted_on_the_users_key_fails_cleanly_if_the_key_is_removed(
        owner: Any, project: Any, catalog: None, openai_fake: FakeServer, settings: Any) -> None:
    settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "openai": "sk-platform-key-9999"}
    provider_key_save(user=owner, provider="openai", api_key="sk-user-own-key-1234")
    model_id = _chat_model()
    generation = generation_create(user=owner, project_id=project.pk, model_id=model_id, inputs=_chat_inputs(model_id))
    ProviderKey.objects.filter(user=owner).delete()
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == (Status.FAILED, "no_key")
    assert not [r for r in openai_fake.requests if r["path"].endswith("/chat/completions")]  # not on the platform's bill
    assert Generation.objects.get(pk=generation.pk).credits_charged == 0


def test_the_admin_lists_keys_by_their_last_four_characters_only(client: Any, owner: Any,
                                                                  openai_fake: FakeServer) -> None:
    from accounts.models import User

    provider_key_save(user=owner, provider="openai", api_key="sk-user-own-key-1234")
    client.force_login(User.objects.create_superuser(email="admin@example.com", password="x" * 12))
    page = client.get("/admin/accounts/providerkey/").content.decode()
    assert "1234" in page and "sk-user-own-key" not in page
    row = ProviderKey.objects.get(user=owner)
    detail = client.get(f"/admin/accounts/providerkey/{row.pk}/change/").content.decode()
    assert "sk-user-own-key" not in detail and "ciphertext" not in detail.lower()
