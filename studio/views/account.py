from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.selectors import api_token_list_for_user
from accounts.services import api_token_create, api_token_revoke
from studio.forms import TokenForm

TEMPLATE = "studio/account.html"


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    tokens = list(api_token_list_for_user(request.user))
    return {"tokens": tokens, "token_form": extra.pop("token_form", None) or TokenForm(), **extra}


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
