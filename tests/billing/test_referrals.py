"""Referral codes: both users get a one-time bonus, posted once however often the code is redeemed."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.db import connection
from django.utils import timezone

from billing.limits import plan_assign
from billing.models import CheckoutSession, CheckoutStatus, CreditPack, Entry, Plan, Referral, Transaction
from billing.referrals import referral_code_get_or_create, referral_redeem
from billing.selectors import unbalanced_transactions, wallet_drift
from billing.services import credits_grant, credits_summary
from billing.signup import user_create
from core.errors import Conflict, InvalidRequest
from generations.services import generation_create
from projects.services import project_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _bonus(settings: Any) -> None:
    settings.REFERRAL_BONUS_CREDITS = 100


def verified(user: Any) -> Any:
    """The user with a confirmed email address, as allauth records one."""
    EmailAddress.objects.update_or_create(user=user, email=user.email, defaults={"verified": True, "primary": True})
    return user


def newcomer(email: str) -> Any:
    return verified(user_create(email=email, password="x" * 12, starter_credits=0))


@pytest.fixture
def outsider(outsider: Any) -> Any:
    return verified(outsider)


@pytest.fixture
def owner(owner: Any) -> Any:
    return verified(owner)


def test_each_user_has_one_stable_readable_code(owner: Any) -> None:
    code = referral_code_get_or_create(user=owner).code
    assert referral_code_get_or_create(user=owner).code == code
    assert len(code) == 8 and not set(code) & set("0O1IL")


def test_redeeming_a_code_gives_both_users_the_bonus_from_the_referral_account(owner: Any, outsider: Any) -> None:
    code = referral_code_get_or_create(user=owner).code
    referral = referral_redeem(user=outsider, code=code.lower())
    assert (referral.referred, referral.code.user) == (outsider, owner)
    assert credits_summary(user=owner).balance == 600
    assert credits_summary(user=outsider).balance == 600
    source = Entry.objects.filter(account__code="referral").values_list("amount", flat=True)
    assert sorted(source) == [-100, -100]
    assert unbalanced_transactions() == [] and wallet_drift() == []


def test_redeeming_the_same_code_again_pays_nothing_more(owner: Any, outsider: Any) -> None:
    code = referral_code_get_or_create(user=owner).code
    first = referral_redeem(user=outsider, code=code)
    assert referral_redeem(user=outsider, code=code).pk == first.pk
    assert credits_summary(user=owner).balance == 600
    assert credits_summary(user=outsider).balance == 600
    assert Transaction.objects.filter(idempotency_key__startswith="referral:").count() == 2


def test_a_user_redeems_only_one_code(owner: Any, outsider: Any) -> None:
    third = newcomer("third@example.com")
    referral_redeem(user=third, code=referral_code_get_or_create(user=owner).code)
    with pytest.raises(Conflict):
        referral_redeem(user=third, code=referral_code_get_or_create(user=outsider).code)
    assert credits_summary(user=outsider).balance == 500
    assert credits_summary(user=third).balance == 100


def test_nobody_redeems_their_own_code(owner: Any) -> None:
    with pytest.raises(InvalidRequest) as refused:
        referral_redeem(user=owner, code=referral_code_get_or_create(user=owner).code)
    assert refused.value.code == "referral_own"
    assert credits_summary(user=owner).balance == 500


def test_two_users_cannot_refer_each_other(owner: Any, outsider: Any) -> None:
    referral_redeem(user=outsider, code=referral_code_get_or_create(user=owner).code)
    with pytest.raises(InvalidRequest) as refused:
        referral_redeem(user=owner, code=referral_code_get_or_create(user=outsider).code)
    assert refused.value.code == "referral_cycle" and refused.value.http_status == 400
    assert Referral.objects.count() == 1


def test_three_accounts_cannot_refer_each_other_in_a_cycle(owner: Any, outsider: Any) -> None:
    third = newcomer("third@example.com")
    referral_redeem(user=outsider, code=referral_code_get_or_create(user=owner).code)  # owner → outsider
    referral_redeem(user=third, code=referral_code_get_or_create(user=outsider).code)  # outsider → third
    with pytest.raises(InvalidRequest) as refused:  # third → owner would close the loop
        referral_redeem(user=owner, code=referral_code_get_or_create(user=third).code)
    assert refused.value.code == "referral_cycle"
    assert Referral.objects.count() == 2
    assert credits_summary(user=owner).balance == 600  # its one bonus, as the first referrer


def test_an_unverified_account_cannot_redeem(owner: Any) -> None:
    fresh = user_create(email="fresh@example.com", password="x" * 12, starter_credits=0)
    with pytest.raises(InvalidRequest) as refused:
        referral_redeem(user=fresh, code=referral_code_get_or_create(user=owner).code)
    assert refused.value.code == "referral_unverified"
    EmailAddress.objects.create(user=fresh, email=fresh.email, verified=False, primary=True)
    with pytest.raises(InvalidRequest):
        referral_redeem(user=fresh, code=referral_code_get_or_create(user=owner).code)
    assert not Referral.objects.exists()
    assert credits_summary(user=owner).balance == 500 and credits_summary(user=fresh).balance == 0


def test_an_established_account_cannot_redeem(owner: Any, outsider: Any, settings: Any) -> None:
    settings.REFERRAL_REDEEM_WINDOW_DAYS = 14
    code = referral_code_get_or_create(user=owner).code
    type(outsider).objects.filter(pk=outsider.pk).update(date_joined=timezone.now() - timedelta(days=15))
    outsider.refresh_from_db()
    with pytest.raises(InvalidRequest, match="within 14 days") as refused:
        referral_redeem(user=outsider, code=code)
    assert refused.value.code == "referral_not_new"
    assert not Referral.objects.exists() and credits_summary(user=owner).balance == 500


def test_an_account_that_has_bought_or_generated_cannot_redeem(owner: Any, catalog: None) -> None:
    code = referral_code_get_or_create(user=owner).code
    buyer, maker = newcomer("buyer@example.com"), newcomer("maker@example.com")
    pack = CreditPack.objects.first() or CreditPack.objects.create(code="p", name="P", credits=500, price_cents=500)
    CheckoutSession.objects.create(id="cs_test_bought", user=buyer, pack=pack, credits=pack.credits,
                                   amount_total=pack.price_cents, currency=pack.currency, status=CheckoutStatus.PAID)
    credits_grant(user=maker, amount=10, reason="test", idempotency_key="test:maker")
    maker_project = project_create(owner=maker, name="Mine")
    generation_create(user=maker, project_id=maker_project.pk, model_id="local/sketch", inputs={"prompt": "x"})
    for user in (buyer, maker):
        with pytest.raises(InvalidRequest, match="before their first generation or purchase"):
            referral_redeem(user=user, code=code)
    assert not Referral.objects.exists() and credits_summary(user=owner).balance == 500


def test_a_referrers_bonuses_are_capped_by_their_plan(owner: Any) -> None:
    plan_assign(user=owner, plan=Plan.objects.create(code="two-refs", name="Two refs", referral_bonus_cap=2))
    code = referral_code_get_or_create(user=owner).code
    for n in range(2):
        referral_redeem(user=newcomer(f"friend{n}@example.com"), code=code)
    late = newcomer("late@example.com")
    with pytest.raises(InvalidRequest) as refused:
        referral_redeem(user=late, code=code)
    assert refused.value.code == "referral_cap_reached" and "2 times" in refused.value.message
    assert credits_summary(user=owner).balance == 700 and credits_summary(user=late).balance == 0
    assert Plan._meta.get_field("referral_bonus_cap").default == 10


def test_an_unknown_code_is_refused(outsider: Any) -> None:
    with pytest.raises(InvalidRequest):
        referral_redeem(user=outsider, code="NOSUCHCD")


def test_the_api_shows_your_code_and_redeems_another(owner: Any, owner_api: Any, outsider_api: Any) -> None:
    mine = owner_api.get("/api/v1/referrals/code").json()
    assert mine == {"code": referral_code_get_or_create(user=owner).code, "bonus": 100, "redeemed": 0}
    response = outsider_api.post("/api/v1/referrals/redeem", {"code": mine["code"]}, format="json")
    assert response.status_code == 201
    assert response.json()["bonus"] == 100
    assert owner_api.get("/api/v1/referrals/code").json()["redeemed"] == 1
    refused = owner_api.post("/api/v1/referrals/redeem", {"code": mine["code"]}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "referral_own"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_redemptions_of_one_code_pay_once_and_crossed_ones_do_not_deadlock() -> None:
    alice = newcomer("alice@example.com")
    bob = newcomer("bob@example.com")
    alice_code = referral_code_get_or_create(user=alice).code
    bob_code = referral_code_get_or_create(user=bob).code
    # Bob submits Alice's code eight times at once, while Alice submits Bob's: one of the crossed pair
    # is refused as a cycle, whichever order the locks grant.
    attempts = [(bob, alice_code)] * 8 + [(alice, bob_code)] * 2
    barrier = threading.Barrier(len(attempts))
    outcomes: list[str] = []
    lock = threading.Lock()

    def redeem(user: Any, code: str) -> None:
        try:
            barrier.wait()
            referral_redeem(user=user, code=code)
            outcome = "ok"
        except (Conflict, InvalidRequest) as exc:
            outcome = exc.code
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=redeem, args=attempt) for attempt in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == len(attempts)
    assert Referral.objects.count() == 1
    assert credits_summary(user=alice).balance == 100 and credits_summary(user=bob).balance == 100
    assert set(outcomes) <= {"ok", "referral_cycle"}
    assert wallet_drift() == [] and unbalanced_transactions() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_redemptions_that_together_would_close_a_cycle_of_four_cannot_both_pass(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from billing import referrals

    a, b, c, d = (newcomer(f"{name}@example.com") for name in "abcd")
    code = {user.pk: referral_code_get_or_create(user=user).code for user in (a, b, c, d)}
    referral_redeem(user=b, code=code[a.pk])  # a → b
    referral_redeem(user=d, code=code[c.pk])  # c → d
    # b → c and d → a at once would close a → b → c → d → a, and their wallet locks do not overlap
    # ({b, c} and {a, d}). Each one waits after its cycle check until the other has checked too (or a
    # second passed, if the other cannot check yet), so both check before either commits unless
    # the checks are serialised.
    meeting = threading.Barrier(2)
    check = referrals._check_no_cycle

    def check_then_meet(**kwargs: Any) -> None:
        check(**kwargs)
        try:
            meeting.wait(timeout=1)
        except threading.BrokenBarrierError:
            pass

    monkeypatch.setattr(referrals, "_check_no_cycle", check_then_meet)
    outcomes: list[str] = []

    def redeem(user: Any, referrer: Any) -> None:
        try:
            referral_redeem(user=user, code=code[referrer.pk])
            outcomes.append("ok")
        except InvalidRequest as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem, args=pair) for pair in ((c, b), (a, d))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["ok", "referral_cycle"]
    assert Referral.objects.count() == 3
