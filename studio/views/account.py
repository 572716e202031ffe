from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.selectors import api_token_list_for_user, provider_key_list_for_user
from accounts.services import api_token_create, api_token_revoke, provider_key_delete
from assets.uploads.quota import storage_summary_for_user
from core.errors import ServiceError
from generations.credentials import PROVIDER_LABELS, provider_key_save, remote_providers
from studio.forms import TokenForm
from studio.views.budgets import budget_card_context, notifications_context

TEMPLATE = "studio/account.html"


def _provider_rows(user: Any, errors: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per remote provider: the saved key's last four characters, or whether the platform
    provides a key, so people can see which models they can run and on whose bill."""
    saved = {row.provider: row for row in provider_key_list_for_user(user)}
    return [{"provider": name, "label": PROVIDER_LABELS.get(name, name), "saved": saved.get(name),
             "platform": bool(settings.PROVIDER_KEYS.get(name)), "error": (errors or {}).get(name, "")}
            for name in remote_providers()]


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    tokens = list(api_token_list_for_user(request.user))
    return {"tokens": tokens, "token_form": extra.pop("token_form", None) or TokenForm(),
            "provider_rows": _provider_rows(request.user, extra.pop("key_errors", None)),
            **budget_card_context(request.user), **notifications_context(request.user),
            "storage": storage_summary_for_user(request.user), **extra}


@login_required
@require_GET
def account_page(request: HttpRequest) -> HttpResponse:
    return render(request, TEMPLATE, _context(request))


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST)
    if not form.is_valid():
        template = f"{TEMPLATE}#tokens" if request.htmx else TEMPLATE
        return render(request, template, _context(request, token_form=form), status=200 if request.htmx else 400)
    row, token = api_token_create(user=request.user, name=form.cleaned_data["name"])
    # The token is only in this response: it is not stored (only its digest is), so there is no
    # redirect after this POST and nothing to show it again from.
    template = f"{TEMPLATE}#tokens" if request.htmx else TEMPLATE
    response = render(request, template, _context(request, new_token=token, new_row=row))
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_key: str) -> HttpResponse:
    revoked = api_token_revoke(user=request.user, token_key=token_key)
    note = "Token revoked; it no longer works." if revoked else "That token was already revoked."
    if request.htmx:
        return render(request, f"{TEMPLATE}#tokens", _context(request, token_note=note))
    messages.success(request, note)
    return redirect("studio:account")


@login_required
@require_POST
def provider_key_save_view(request: HttpRequest, provider: str) -> HttpResponse:
    errors: dict[str, str] = {}
    note = ""
    try:
        row = provider_key_save(user=request.user, provider=provider, api_key=request.POST.get("api_key", ""))
        note = f"Saved your {PROVIDER_LABELS.get(provider, provider)} key …{row.last4}; the provider accepted it."
    except ServiceError as exc:
        errors[provider] = exc.message
    if request.htmx:
        return render(request, f"{TEMPLATE}#provider-keys", _context(request, key_errors=errors, key_note=note))
    if errors:
        return render(request, TEMPLATE, _context(request, key_errors=errors), status=400)
    messages.success(request, note)
    return redirect("studio:account")


@login_required
@require_POST
def provider_key_delete_view(request: HttpRequest, provider: str) -> HttpResponse:
    removed = provider_key_delete(user=request.user, provider=provider)
    note = "Key removed; this provider's models now use the platform key, if there is one." if removed else "No key was saved."
    if request.htmx:
        return render(request, f"{TEMPLATE}#provider-keys", _context(request, key_note=note))
    messages.success(request, note)
    return redirect("studio:account")
