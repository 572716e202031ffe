"""Stripe top-ups: Checkout Sessions created through the real `stripe` SDK against a loopback fake of
Stripe's API (tests/fakes/stripe.py), and webhook events signed locally with the documented scheme
(docs/STRIPE.md, "The wire protocol" §6), delivered twice, late and out of order."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from billing.models import (
    CheckoutSession,
    CheckoutStatus,
    CreditPack,
    Notification,
    StripeEvent,
    Transaction,
    WalletFlag,
)
from billing.selectors import unbalanced_transactions, wallet_drift
from billing.services import credits_hold, credits_summary, hold_settle
from billing.stripe.events import stripe_event_handle
from tests.conftest import api_client_for
from tests.fakes.server import FakeServer
from tests.fakes.stripe import StripeFake, charge_object, event, parse_form, session_object, signed

pytestmark = [pytest.mark.django_db]

WHSEC = "whsec_test_secret"
SITE = "https://studio.example"


@pytest.fixture
def stripe_fake() -> Iterator[FakeServer]:
    with FakeServer(StripeFake) as server:
        StripeFake.install(server.state)
        yield server


@pytest.fixture
def stripe_on(settings: Any, stripe_fake: FakeServer) -> FakeServer:
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    settings.STRIPE_WEBHOOK_SECRET = WHSEC
    settings.STRIPE_API_BASE = stripe_fake.url
    settings.SITE_URL = SITE
    return stripe_fake


@pytest.fixture
def stripe_off(settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    settings.STRIPE_API_BASE = ""


def pack(code: str = "starter-500") -> CreditPack:
    # Migration 0003 seeds these; a transactional test elsewhere (PostgreSQL leg) flushes the tables.
    from billing.models import Plan
    from billing.seed import seed_defaults

    seed_defaults(Plan, CreditPack)
    return CreditPack.objects.get(code=code)


def open_session(user: Any, code: str = "starter-500", session_id: str | None = None) -> CheckoutSession:
    """A session as checkout_session_create leaves it (the webhook side does not care how it got there)."""
    p = pack(code)
    return CheckoutSession.objects.create(id=session_id or f"cs_test_{uuid.uuid4().hex}", user=user, pack=p,
                                          credits=p.credits, amount_total=p.price_cents, currency=p.currency,
                                          url="https://checkout.stripe.com/c/pay/x")


def deliver(client: Any, payload: dict[str, Any], *, secret: str = WHSEC, timestamp: int | None = None,
            body: bytes | None = None) -> Any:
    raw, header = signed(payload, secret, timestamp=timestamp)
    return client.post("/webhooks/stripe", data=body if body is not None else raw, content_type="application/json",
                       HTTP_STRIPE_SIGNATURE=header)


def completed(session: CheckoutSession, *, payment_status: str = "paid", pi: str = "pi_1", created: int = 0,
              type_: str = "checkout.session.completed") -> dict[str, Any]:
    obj = session_object(session.pk, user_id=session.user_id, pack=session.pack.code,
                         amount_total=session.amount_total, payment_status=payment_status, payment_intent=pi)
    return event(type_, obj, created=created or None)


def refunded(session: CheckoutSession, amount_refunded: int, *, pi: str = "pi_1", created: int = 0) -> dict[str, Any]:
    return event("charge.refunded", charge_object(payment_intent=pi, amount=session.amount_total,
                                                  amount_refunded=amount_refunded), created=created or None)


def topups(session: CheckoutSession) -> int:
    return Transaction.objects.filter(idempotency_key=f"stripe:checkout:{session.pk}").count()


def clawed_back(session: CheckoutSession) -> int:
    return -(Transaction.objects.filter(kind="clawback", reference=f"checkout:{session.pk}",
                                        entries__account__kind="wallet")
             .aggregate(s=Sum("entries__amount"))["s"] or 0)


def assert_ledger_sound() -> None:
    assert unbalanced_transactions() == []
    assert wallet_drift() == []


# --- creating sessions ---------------------------------------------------------------------------------

def test_a_checkout_session_is_created_at_stripe_with_our_idempotency_key(stripe_on: FakeServer, owner: Any) -> None:
    response = api_client_for(owner).post("/api/v1/checkout-sessions", {"pack": "starter-500"}, format="json")

    assert response.status_code == 201, response.content
    (request,) = stripe_on.requests
    assert (request["method"], request["path"]) == ("POST", "/v1/checkout/sessions")
    assert request["headers"]["Authorization"] == "Bearer sk_test_fake"
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    key = request["headers"]["Idempotency-Key"]
    assert key.startswith("checkout-") and uuid.UUID(key.removeprefix("checkout-"))
    form = parse_form(request["body"])
    assert form["mode"] == "payment"
    assert form["client_reference_id"] == str(owner.pk)
    assert form["metadata"] == {"pack": "starter-500", "user": str(owner.pk)}
    assert form["line_items"] == [{"quantity": "1", "price_data": {
        "currency": "usd", "unit_amount": "500",
        "product_data": {"name": "500 credits", "description": "500 studio credits"}}}]
    assert form["success_url"] == f"{SITE}/credits/success?session_id={{CHECKOUT_SESSION_ID}}"
    assert form["cancel_url"] == f"{SITE}/credits/?canceled=1"

    row = CheckoutSession.objects.get()
    remote = stripe_on.state["sessions"][row.pk]
    assert response.json()["id"] == row.pk == remote["id"]
    assert response.json()["url"] == row.url == remote["url"]
    assert (row.user, row.credits, row.amount_total, row.status) == (owner, 500, 500, CheckoutStatus.OPEN)
    assert credits_summary(user=owner).balance == 500  # nothing is credited before Stripe says paid


def test_a_retried_request_reuses_the_same_idempotency_key(stripe_on: FakeServer, owner: Any) -> None:
    stripe_on.state["errors"].append({"on": "create", "status": 500, "type": "api_error", "message": "hiccup"})

    response = api_client_for(owner).post("/api/v1/checkout-sessions", {"pack": "starter-500"}, format="json")

    assert response.status_code == 201
    first, second = stripe_on.requests
    assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"]
    assert CheckoutSession.objects.count() == 1 and len(stripe_on.state["sessions"]) == 1


def test_an_unknown_pack_is_refused_without_calling_stripe(stripe_on: FakeServer, owner: Any) -> None:
    response = api_client_for(owner).post("/api/v1/checkout-sessions", {"pack": "gold-bars"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"pack": ["Choose one of the offered credit packs."]}
    assert stripe_on.requests == [] and not CheckoutSession.objects.exists()


def test_when_stripe_refuses_the_session_no_row_is_left_behind(stripe_on: FakeServer, owner: Any) -> None:
    stripe_on.state["errors"].append({"on": "create", "status": 400, "code": "currency_unsupported",
                                      "message": "Nope."})

    response = api_client_for(owner).post("/api/v1/checkout-sessions", {"pack": "starter-500"}, format="json")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "payment_provider_error"
    assert not CheckoutSession.objects.exists()


def test_the_credit_packs_endpoint_lists_the_active_packs(stripe_on: FakeServer, owner: Any) -> None:
    CreditPack.objects.filter(code="production-10000").update(active=False)

    body = api_client_for(owner).get("/api/v1/credit-packs").json()

    assert body["payments_enabled"] is True
    assert [(p["code"], p["credits"], p["price_cents"]) for p in body["results"]] == [
        ("starter-500", 500, 500), ("studio-2000", 2000, 1800)]


# --- Stripe off ------------------------------------------------------------------------------------------

def test_with_stripe_off_the_api_answers_503_with_a_clear_code(stripe_off: None, owner: Any, client: Any) -> None:
    api = api_client_for(owner)

    response = api.post("/api/v1/checkout-sessions", {"pack": "starter-500"}, format="json")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "payments_not_configured"
    assert api.get("/api/v1/credit-packs").json()["payments_enabled"] is False
    hook = client.post("/webhooks/stripe", data=b"{}", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=0")
    assert hook.status_code == 503 and not StripeEvent.objects.exists()
    assert not CheckoutSession.objects.exists()


def test_with_stripe_off_the_buy_page_says_payments_are_not_configured(stripe_off: None, owner: Any,
                                                                        client: Any) -> None:
    client.force_login(owner)

    page = client.get("/credits/").content.decode()
    refused = client.post("/credits/checkout", {"pack": "starter-500"})

    assert "Payments are not configured" in page and 'name="pack"' not in page
    assert refused.status_code == 503 and "Payments are not configured" in refused.content.decode()


# --- the web pages ---------------------------------------------------------------------------------------

def test_the_buy_page_lists_packs_and_sends_the_buyer_to_stripe(stripe_on: FakeServer, owner: Any,
                                                                client: Any) -> None:
    client.force_login(owner)

    page = client.get("/credits/").content.decode()
    response = client.post("/credits/checkout", {"pack": "studio-2000"})

    assert "500 credits" in page and "2,000 credits" in page and "$18.00" in page and "10,000 credits" in page
    assert page.count('name="pack"') == 3
    row = CheckoutSession.objects.get()
    assert response.status_code == 302 and response["Location"] == row.url
    assert row.url.startswith("https://checkout.stripe.com/c/pay/cs_test_") and row.pack.code == "studio-2000"


def test_the_success_page_waits_for_stripe_then_shows_the_credits(stripe_on: FakeServer, owner: Any,
                                                                  client: Any) -> None:
    client.force_login(owner)
    session = open_session(owner)
    url = f"/credits/success?session_id={session.pk}"

    waiting = client.get(url).content.decode()
    still = client.get(url + "&partial=status", HTTP_HX_REQUEST="true")
    deliver(client, completed(session))
    done = client.get(url + "&partial=status", HTTP_HX_REQUEST="true")

    assert "Waiting for Stripe to confirm your payment" in waiting and "500" in waiting
    assert still.status_code == 200 and "every 2s" in still.content.decode()
    assert done.status_code == 286  # htmx stops polling
    body = done.content.decode()
    assert "Payment confirmed: 500 credits were added" in body and "1,000" in body
    assert 'id="credits"' in body and 'hx-swap-oob="true"' in body


def test_an_outsider_cannot_see_someone_elses_checkout_session(stripe_on: FakeServer, owner: Any, outsider: Any,
                                                               client: Any) -> None:
    created = api_client_for(owner).post("/api/v1/checkout-sessions", {"pack": "starter-500"}, format="json").json()
    outsider_api = api_client_for(outsider)

    assert outsider_api.get(f"/api/v1/checkout-sessions/{created['id']}").status_code == 404
    assert outsider_api.get("/api/v1/checkout-sessions").json()["results"] == []
    assert api_client_for(owner).get(f"/api/v1/checkout-sessions/{created['id']}").json()["id"] == created["id"]
    client.force_login(outsider)
    assert client.get(f"/credits/success?session_id={created['id']}").status_code == 404


# --- webhook signatures ----------------------------------------------------------------------------------

@pytest.mark.parametrize("tamper", ["wrong secret", "body changed", "no header", "stale timestamp"])
def test_a_forged_or_stale_signature_is_refused_with_400_and_changes_nothing(stripe_on: FakeServer, owner: Any,
                                                                            client: Any, tamper: str) -> None:
    session = open_session(owner)
    payload = completed(session)
    raw, header = signed(payload, WHSEC)
    if tamper == "wrong secret":
        raw, header = signed(payload, "whsec_someone_else")
    elif tamper == "body changed":
        raw = raw.replace(b'"amount_total":500', b'"amount_total":5')
    elif tamper == "no header":
        header = ""
    else:  # ref §6.3: timestamps older than the 300 s tolerance are refused
        raw, header = signed(payload, WHSEC, timestamp=int(time.time()) - 301)

    response = client.post("/webhooks/stripe", data=raw, content_type="application/json",
                           **({"HTTP_STRIPE_SIGNATURE": header} if header else {}))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    assert not StripeEvent.objects.exists() and topups(session) == 0
    assert CheckoutSession.objects.get().status == CheckoutStatus.OPEN
    assert credits_summary(user=owner).balance == 500


def test_a_replayed_event_is_answered_200_and_does_nothing(stripe_on: FakeServer, owner: Any, client: Any) -> None:
    session = open_session(owner)
    payload = completed(session)

    first = deliver(client, payload)
    again = deliver(client, payload)

    assert first.json()["outcome"] == "credited 500"
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate: already received"
    assert StripeEvent.objects.count() == 1 and topups(session) == 1
    assert credits_summary(user=owner).balance == 1000


# --- events twice, late and out of order -----------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_the_same_events_delivered_five_times_in_shuffled_order_credit_exactly_once(
        stripe_on: FakeServer, owner: Any, client: Any, seed: int) -> None:
    session = open_session(owner)
    now = int(time.time())
    events = [completed(session, payment_status="unpaid", created=now),
              completed(session, type_="checkout.session.async_payment_succeeded", created=now + 1),
              completed(session, created=now + 2),  # a second "paid" signal for the same session
              event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"}, created=now + 3)]
    deliveries = events * 5
    random.Random(seed).shuffle(deliveries)

    for payload in deliveries:
        assert deliver(client, payload).status_code == 200

    assert topups(session) == 1
    assert credits_summary(user=owner).balance == 1000
    assert CheckoutSession.objects.get().status == CheckoutStatus.PAID
    assert StripeEvent.objects.count() == 4
    assert_ledger_sound()


@pytest.mark.parametrize("seed", range(5))
def test_refunds_delivered_out_of_order_and_repeatedly_claw_back_exactly_what_was_refunded(
        stripe_on: FakeServer, owner: Any, client: Any, seed: int) -> None:
    session = open_session(owner)
    now = int(time.time())
    events = [completed(session, payment_status="unpaid", created=now),
              completed(session, type_="checkout.session.async_payment_succeeded", created=now + 1),
              refunded(session, 250, created=now + 2),
              refunded(session, 500, created=now + 3)]
    deliveries = events * 5
    random.Random(seed).shuffle(deliveries)

    for payload in deliveries:
        assert deliver(client, payload).status_code == 200

    assert topups(session) == 1 and clawed_back(session) == 500
    assert credits_summary(user=owner).balance == 500
    row = CheckoutSession.objects.get()
    assert (row.status, row.refunded_credits) == (CheckoutStatus.REFUNDED, 500)
    assert not StripeEvent.objects.filter(processed_at__isnull=True).exists()
    assert_ledger_sound()


def test_a_refund_that_overtakes_its_payment_is_applied_once_the_credits_post(stripe_on: FakeServer, owner: Any,
                                                                             client: Any) -> None:
    session = open_session(owner)

    parked = deliver(client, refunded(session, 500))
    assert parked.json()["outcome"].startswith("pending")
    assert credits_summary(user=owner).balance == 500 and clawed_back(session) == 0

    deliver(client, completed(session))

    assert topups(session) == 1 and clawed_back(session) == 500
    assert credits_summary(user=owner).balance == 500
    assert StripeEvent.objects.get(type="charge.refunded").processed_at is not None
    assert_ledger_sound()


# --- delayed payment methods -----------------------------------------------------------------------------

def test_an_unpaid_completion_credits_nothing_until_the_async_payment_succeeds(stripe_on: FakeServer, owner: Any,
                                                                              client: Any) -> None:
    session = open_session(owner)

    pending = deliver(client, completed(session, payment_status="unpaid", pi="pi_sepa"))
    assert pending.json()["outcome"] == "awaiting payment (payment_status=unpaid)"
    assert topups(session) == 0 and credits_summary(user=owner).balance == 500
    assert CheckoutSession.objects.get().payment_intent == "pi_sepa"

    deliver(client, completed(session, type_="checkout.session.async_payment_succeeded", pi="pi_sepa"))

    row = CheckoutSession.objects.get()
    assert (row.status, row.paid_at is not None) == (CheckoutStatus.PAID, True)
    assert topups(session) == 1 and credits_summary(user=owner).balance == 1000


def test_a_failed_async_payment_marks_the_session_failed_and_credits_nothing(stripe_on: FakeServer, owner: Any,
                                                                            client: Any) -> None:
    session = open_session(owner)

    deliver(client, completed(session, payment_status="unpaid"))
    failed = deliver(client, completed(session, payment_status="unpaid",
                                       type_="checkout.session.async_payment_failed"))

    assert failed.json()["outcome"] == "payment failed; nothing credited"
    assert CheckoutSession.objects.get().status == CheckoutStatus.FAILED
    assert topups(session) == 0 and credits_summary(user=owner).balance == 500
    assert_ledger_sound()


def test_a_late_failure_event_does_not_undo_a_paid_session(stripe_on: FakeServer, owner: Any, client: Any) -> None:
    session = open_session(owner)
    deliver(client, completed(session))

    deliver(client, completed(session, type_="checkout.session.async_payment_failed"))

    assert CheckoutSession.objects.get().status == CheckoutStatus.PAID
    assert credits_summary(user=owner).balance == 1000


def test_a_paid_session_whose_row_was_lost_is_credited_from_its_metadata(stripe_on: FakeServer, owner: Any,
                                                                        client: Any) -> None:
    session = open_session(owner)
    CheckoutSession.objects.all().delete()  # as if our write after Stripe answered never happened

    deliver(client, completed(session))

    row = CheckoutSession.objects.get(pk=session.pk)
    assert (row.user, row.credits, row.status) == (owner, 500, CheckoutStatus.PAID)
    assert credits_summary(user=owner).balance == 1000


@pytest.mark.parametrize("paid", [{"amount_total": 1}, {"currency": "eur"}, {"amount_total": None}],
                         ids=["one cent", "another currency", "no amount"])
def test_a_rebuilt_session_whose_amount_or_currency_is_not_the_packs_is_flagged_for_a_person_not_credited(
        stripe_on: FakeServer, owner: Any, client: Any, paid: dict[str, Any]) -> None:
    session = open_session(owner)
    CheckoutSession.objects.all().delete()  # our row is lost: only the metadata speaks for the session
    payload = completed(session)
    payload["data"]["object"].update(paid)

    response = deliver(client, payload)
    # Its async_payment_succeeded twin says "paid" again: still one flag, still no credits.
    twin = completed(session, type_="checkout.session.async_payment_succeeded")
    twin["data"]["object"].update(paid)
    deliver(client, twin)

    assert response.status_code == 200
    assert response.json()["outcome"].startswith("flagged, not credited: paid ")
    assert not CheckoutSession.objects.exists() and topups(session) == 0
    assert credits_summary(user=owner).balance == 500
    flag = WalletFlag.objects.get()
    assert (flag.account.user, flag.amount, flag.reference, flag.resolved_at) == (
        owner, 500, f"stripe:checkout:{session.pk}", None)
    assert "costs 500 USD cents" in flag.reason
    assert Notification.objects.filter(user=owner, kind="payment_review").count() == 1
    assert StripeEvent.objects.count() == 2
    assert_ledger_sound()
    err = StringIO()
    with pytest.raises(CommandError, match="Stripe reconciliation problem"):
        call_command("stripe_reconcile", stdout=StringIO(), stderr=err)
    assert ("flagged wallet: owner@example.com has a payment held for review, 500 credits not posted"
            in err.getvalue())
    assert f"(checkout.session.completed) for session {session.pk}" in err.getvalue()


@pytest.mark.parametrize("body", [b"[]", b'"evt"', b"42", b"null", b'{"id": "evt_1", "type": "x", "data": []}',
                                  b'{"id": "evt_1", "type": "x", "data": {"object": []}}',
                                  b'{"id": "evt_1", "type": "x", "created": "soon", "data": {"object": {}}}',
                                  b"[" * 100_000 + b"]" * 100_000,
                                  b'{"id": "evt_1", "type": "x", "created": 100000000000000, "data": {"object": {}}}',
                                  b'{"id": "evt_1", "type": "x", "created": -100000000000000, "data": {"object": {}}}',
                                  b'{"id": "evt_' + b"1" * 300 + b'", "type": "x", "data": {"object": {}}}',
                                  b'{"id": "evt_1", "type": "' + b"x" * 101 + b'", "data": {"object": {}}}'],
                         ids=["array", "string", "number", "null", "data array", "object array", "created string",
                              "deep nesting", "created past year 9999", "created before 1970", "id too long",
                              "type too long"])
def test_a_correctly_signed_body_that_is_not_an_event_is_a_400_in_the_json_error_shape(
        stripe_on: FakeServer, client: Any, body: bytes) -> None:
    import stripe

    header = stripe.WebhookSignature.generate_signature_header(body.decode(), WHSEC)
    response = client.post("/webhooks/stripe", data=body, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=header)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_event"
    assert response.json()["error"]["message"]
    assert not StripeEvent.objects.exists()


def test_an_event_for_a_session_that_is_not_ours_is_acknowledged_and_ignored(stripe_on: FakeServer, owner: Any,
                                                                            client: Any) -> None:
    obj = session_object("cs_test_elsewhere", user_id=owner.pk, pack="starter-500", amount_total=500)
    obj["metadata"] = {}

    response = deliver(client, event("checkout.session.completed", obj))

    assert response.status_code == 200 and response.json()["outcome"].startswith("ignored")
    assert not CheckoutSession.objects.exists() and credits_summary(user=owner).balance == 500


# --- refunds ---------------------------------------------------------------------------------------------

def test_a_full_refund_claws_back_all_the_credits(stripe_on: FakeServer, owner: Any, client: Any) -> None:
    session = open_session(owner)
    deliver(client, completed(session))

    outcome = deliver(client, refunded(session, 500)).json()["outcome"]

    assert outcome == "clawed back 500"
    assert credits_summary(user=owner).balance == 500
    assert not WalletFlag.objects.exists()
    assert_ledger_sound()


def test_partial_refunds_claw_back_in_proportion_and_add_up_to_the_whole(stripe_on: FakeServer, owner: Any,
                                                                        client: Any) -> None:
    session = open_session(owner, "studio-2000")  # 2,000 credits for $18.00
    deliver(client, completed(session))

    deliver(client, refunded(session, 600))  # a third of the money: 666.67 credits, rounded down
    assert clawed_back(session) == 666 and credits_summary(user=owner).balance == 500 + 2000 - 666
    assert CheckoutSession.objects.get().refunded_credits == 666

    deliver(client, refunded(session, 1800))  # the rest: amount_refunded is the running total
    assert clawed_back(session) == 2000 and credits_summary(user=owner).balance == 500
    assert_ledger_sound()


def test_a_refund_the_wallet_cannot_cover_is_posted_in_full_and_flagged(stripe_on: FakeServer, owner: Any,
                                                                       client: Any) -> None:
    session = open_session(owner)
    deliver(client, completed(session))
    credits_hold(user=owner, amount=900, reference="job:spent")
    hold_settle(reference="job:spent", amount=900)  # 1,000 − 900: 100 left

    outcome = deliver(client, refunded(session, 500)).json()["outcome"]

    assert outcome == "clawed back 500; wallet flagged, 400 short"
    assert credits_summary(user=owner).balance == -400  # not clamped at zero
    flag = WalletFlag.objects.get()
    assert (flag.account.user, flag.amount, flag.resolved_at) == (owner, 400, None)
    assert flag.reference.startswith("stripe:refund:ch_test:500")
    note = Notification.objects.get(user=owner)
    assert note.kind == "wallet_flagged" and "400 more than you had available" in note.message
    assert_ledger_sound()


# --- reconciliation --------------------------------------------------------------------------------------

def test_reconciliation_is_clean_when_every_payment_has_its_credits(stripe_on: FakeServer, owner: Any,
                                                                   client: Any) -> None:
    deliver(client, completed(open_session(owner)))
    out = StringIO()

    call_command("stripe_reconcile", stdout=out)

    assert "Stripe OK" in out.getvalue()


def test_reconciliation_lists_payments_without_credits_credits_without_payment_and_flags(
        stripe_on: FakeServer, owner: Any, client: Any) -> None:
    credited = open_session(owner)
    deliver(client, completed(credited))
    CheckoutSession.objects.filter(pk=credited.pk).update(status=CheckoutStatus.OPEN)  # credits, but not paid
    unposted = open_session(owner)
    CheckoutSession.objects.filter(pk=unposted.pk).update(status=CheckoutStatus.PAID)  # paid, no credits
    deliver(client, event("charge.refunded", charge_object(payment_intent="pi_unknown", amount=500,
                                                           amount_refunded=500, charge_id="ch_orphan")))
    spent = open_session(owner, session_id="cs_test_spent")
    deliver(client, completed(spent, pi="pi_spent"))
    credits_hold(user=owner, amount=1400, reference="job:all")  # 1,500 − 1,400: 100 left
    hold_settle(reference="job:all", amount=1400)
    deliver(client, refunded(spent, 500, pi="pi_spent"))
    err = StringIO()

    with pytest.raises(CommandError, match="4 Stripe reconciliation problem"):
        call_command("stripe_reconcile", stdout=StringIO(), stderr=err)

    lines = err.getvalue()
    assert f"paid without credits: session {unposted.pk}" in lines
    assert f"credits without payment: posting stripe:checkout:{credited.pk}" in lines
    assert "refund waiting for its payment" in lines and "ch_orphan" in lines
    assert "flagged wallet: owner@example.com is 400 credits short" in lines


def test_reconciliation_asks_stripe_about_open_sessions_and_can_credit_a_lost_webhook(
        stripe_on: FakeServer, owner: Any, client: Any) -> None:
    created = api_client_for(owner).post("/api/v1/checkout-sessions", {"pack": "starter-500"}, format="json").json()
    CheckoutSession.objects.filter(pk=created["id"]).update(created_at=timezone.now() - timedelta(hours=1))
    StripeFake.mark_paid(stripe_on.state, created["id"], "pi_lost")
    err = StringIO()

    with pytest.raises(CommandError):
        call_command("stripe_reconcile", "--fetch", stdout=StringIO(), stderr=err)
    assert f"Stripe reports session {created['id']} paid" in err.getvalue()
    assert credits_summary(user=owner).balance == 500

    out = StringIO()
    call_command("stripe_reconcile", "--fetch", "--fulfil", stdout=out)
    assert f"credited session {created['id']}" in out.getvalue()
    assert credits_summary(user=owner).balance == 1000

    late = CheckoutSession.objects.get(pk=created["id"])
    assert deliver(client, completed(late, pi="pi_lost")).json()["outcome"] == "already credited"
    assert credits_summary(user=owner).balance == 1000
    assert_ledger_sound()


# --- PostgreSQL: concurrent deliveries -------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_the_same_events_credit_and_claw_back_exactly_once(settings: Any) -> None:
    from billing.signup import user_create

    settings.STRIPE_WEBHOOK_SECRET = WHSEC
    buyer = user_create(email="buyer@example.com", password="x" * 12, starter_credits=0)
    session = open_session(buyer)
    now = int(time.time())
    events = [completed(session, created=now), completed(session, type_="checkout.session.async_payment_succeeded",
                                                         created=now + 1),
              refunded(session, 100, created=now + 2), refunded(session, 300, created=now + 3)]
    n = 12
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        order = list(events)
        random.Random(seed).shuffle(order)
        try:
            barrier.wait()
            for payload in order:
                stripe_event_handle(payload=payload)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert topups(session) == 1 and clawed_back(session) == 300
    assert credits_summary(user=buyer).balance == 200
    assert StripeEvent.objects.count() == 4
    assert_ledger_sound()


def test_operators_resolve_a_wallet_flag_in_the_admin(client: Any, owner: Any) -> None:
    from accounts.models import User
    from billing.models import LedgerAccount, WalletFlag
    from billing.services import system_account

    wallet = LedgerAccount.objects.get(user=owner)
    flag = WalletFlag.objects.create(account=wallet, reason="refund exceeded balance", amount=-40, reference="ch_1")
    admin = User.objects.create_superuser(email="ops@example.com", password="x" * 12)
    client.force_login(admin)
    assert client.get("/admin/billing/walletflag/").status_code == 200
    client.post("/admin/billing/walletflag/", {"action": "resolve", "_selected_action": [flag.pk]})
    flag.refresh_from_db()
    assert flag.resolved_at is not None and flag.resolved_by == admin
    assert system_account("stripe", "stripe")  # the clearing account exists for the reconciliation
