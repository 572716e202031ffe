"""Operators' credit grants and corrections: postings with a reason and the acting admin, never edits."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied

from accounts.models import User
from billing.adjustments import credits_adjust
from billing.models import Entry, LedgerAccount, Transaction, WalletFlag
from billing.selectors import unbalanced_transactions, wallet_drift
from billing.services import credits_hold, credits_summary
from core.errors import Conflict, InvalidRequest

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(db: Any) -> User:
    return User.objects.create_superuser(email="admin@example.com", password="x" * 12)


def test_a_grant_is_a_balanced_posting_with_the_reason_and_the_admin(owner: Any, admin: User) -> None:
    txn = credits_adjust(user=owner, amount=250, reason="Sorry about the outage", admin=admin, idempotency_key="k1")
    assert credits_summary(user=owner).balance == 750
    assert (txn.kind, txn.memo, txn.created_by) == ("grant", "Sorry about the outage", admin)
    legs = sorted((e.account.code or "wallet", e.amount) for e in txn.entries.select_related("account"))
    assert legs == [("adjustment", -250), ("wallet", 250)]
    assert unbalanced_transactions() == [] and wallet_drift() == []


def test_a_correction_removes_credits_without_editing_earlier_entries(owner: Any, admin: User) -> None:
    before = list(Entry.objects.filter(account__user=owner).values_list("pk", "amount"))
    txn = credits_adjust(user=owner, amount=-120, reason="Duplicate grant", admin=admin, idempotency_key="k2")
    assert txn.kind == "correction"
    assert credits_summary(user=owner).balance == 380
    assert list(Entry.objects.filter(account__user=owner, pk__in=[pk for pk, _ in before])
                .values_list("pk", "amount")) == before
    assert wallet_drift() == []


def test_a_correction_beyond_the_available_credits_is_refused_and_changes_nothing(owner: Any, admin: User) -> None:
    credits_hold(user=owner, amount=400, reference="generation:running")
    with pytest.raises(Conflict) as refused:
        credits_adjust(user=owner, amount=-200, reason="Too much", admin=admin, idempotency_key="k3")
    assert refused.value.code == "adjustment_exceeds_balance"
    assert "would leave -100 available" in refused.value.message
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 400, "available": 100}
    assert not Transaction.objects.filter(idempotency_key="adjust:k3").exists()


def test_a_forced_clawback_may_take_the_wallet_below_zero_and_flags_it(owner: Any, admin: User) -> None:
    credits_adjust(user=owner, amount=-800, reason="Chargeback", admin=admin, idempotency_key="k4", force=True)
    assert credits_summary(user=owner).balance == -300
    flag = WalletFlag.objects.get(account__user=owner)
    assert (flag.amount, flag.reference, flag.resolved_at) == (-800, "adjust:k4", None)
    assert "Chargeback" in flag.reason
    assert wallet_drift() == []


def test_a_replayed_adjustment_posts_once(owner: Any, admin: User) -> None:
    first = credits_adjust(user=owner, amount=50, reason="Promo", admin=admin, idempotency_key="same")
    again = credits_adjust(user=owner, amount=50, reason="Promo", admin=admin, idempotency_key="same")
    assert first.pk == again.pk
    assert credits_summary(user=owner).balance == 550


def test_reusing_a_key_for_a_different_adjustment_is_a_conflict(owner: Any, outsider: Any, admin: User) -> None:
    credits_adjust(user=owner, amount=50, reason="Promo", admin=admin, idempotency_key="same")
    with pytest.raises(Conflict):
        credits_adjust(user=owner, amount=60, reason="Promo", admin=admin, idempotency_key="same")
    with pytest.raises(Conflict):
        credits_adjust(user=outsider, amount=50, reason="Promo", admin=admin, idempotency_key="same")
    assert credits_summary(user=outsider).balance == 500


def test_only_staff_adjust_and_only_with_a_reason_and_an_amount(owner: Any, outsider: Any, admin: User) -> None:
    with pytest.raises(PermissionDenied):
        credits_adjust(user=owner, amount=10, reason="Me", admin=outsider, idempotency_key="x1")
    with pytest.raises(InvalidRequest):
        credits_adjust(user=owner, amount=10, reason="  ", admin=admin, idempotency_key="x2")
    with pytest.raises(InvalidRequest):
        credits_adjust(user=owner, amount=0, reason="Nothing", admin=admin, idempotency_key="x3")
    assert credits_summary(user=owner).balance == 500


# --- the admin form ------------------------------------------------------------------------------------------

ADJUST_URL = "/admin/billing/ledgeraccount/adjust/"


def test_the_admin_form_posts_an_adjustment_once_even_when_submitted_twice(client: Any, owner: Any,
                                                                          admin: User) -> None:
    client.force_login(admin)
    page = client.get(ADJUST_URL, {"email": owner.email})
    key = page.context["form"].initial["idempotency_key"]
    form = {"email": owner.email, "amount": "75", "reason": "Goodwill", "idempotency_key": key}
    assert client.post(ADJUST_URL, form).status_code == 302
    assert client.post(ADJUST_URL, form).status_code == 302
    assert credits_summary(user=owner).balance == 575
    txn = Transaction.objects.get(idempotency_key=f"adjust:{key}")
    assert (txn.created_by, txn.memo) == (admin, "Goodwill")


def test_the_admin_form_shows_a_refused_correction_as_a_form_error(client: Any, owner: Any, admin: User) -> None:
    client.force_login(admin)
    response = client.post(ADJUST_URL, {"email": owner.email, "amount": "-900", "reason": "Chargeback",
                                        "idempotency_key": "form-k"})
    assert response.status_code == 200
    assert "Tick “force”" in response.content.decode()
    assert credits_summary(user=owner).balance == 500


def test_the_wallet_action_opens_the_form_for_that_user(client: Any, owner: Any, admin: User) -> None:
    client.force_login(admin)
    wallet = LedgerAccount.objects.get(user=owner)
    response = client.post("/admin/billing/ledgeraccount/", {"action": "adjust_credits_action",
                                                            "_selected_action": [wallet.pk]})
    assert response.status_code == 302
    assert response["Location"] == f"{ADJUST_URL}?email=owner%40example.com"


def test_staff_without_the_ledger_permission_cannot_adjust(client: Any, owner: Any) -> None:
    staff = User.objects.create_user(email="support@example.com", password="x" * 12, is_staff=True)
    client.force_login(staff)
    assert client.get(ADJUST_URL).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="add_transaction", content_type__app_label="billing"))
    staff = User.objects.get(pk=staff.pk)
    client.force_login(staff)
    assert client.get(ADJUST_URL).status_code == 200
