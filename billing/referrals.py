"""Referral codes: each user has one; a new user who redeems someone's code gets a bonus, and so does
the code's owner, once per referred user, as ledger postings from the referral-bonuses account.

Bonuses are money, so redemption is guarded against minting them (each refusal a 400 saying why):
- only a new account may redeem: signed up within REFERRAL_REDEEM_WINDOW_DAYS (default 14), with no
  generation and no credit purchase yet, and with a verified email address (allauth's EmailAddress),
  so throwaway sign-ups cannot each earn the referrer a bonus and established accounts cannot join in;
- once per account (Referral.referred is unique);
- at most the referrer's plan's `referral_bonus_cap` redemptions per code;
- never closing a cycle: a user may not redeem the code of anyone they referred, directly or down a
  chain of any length (A refers B, B refers C, C's code is refused to A).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from billing.limits import plan_for_user
from billing.models import AccountKind, CheckoutSession, CheckoutStatus, LedgerAccount, Referral, ReferralCode
from billing.services import _lock_wallet, _post, system_account
from core.errors import Conflict, InvalidRequest

if TYPE_CHECKING:
    from accounts.models import User

# No 0/O, 1/I/L: codes are read aloud and typed from screenshots.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
DEFAULT_BONUS = 100
DEFAULT_REDEEM_WINDOW_DAYS = 14


def referral_bonus() -> int:
    return int(getattr(settings, "REFERRAL_BONUS_CREDITS", DEFAULT_BONUS))


def referral_redeem_window() -> timedelta:
    return timedelta(days=int(getattr(settings, "REFERRAL_REDEEM_WINDOW_DAYS", DEFAULT_REDEEM_WINDOW_DAYS)))


def _normalise(code: str) -> str:
    return code.strip().upper().replace("-", "").replace(" ", "")


def referral_code_get_or_create(*, user: User) -> ReferralCode:
    """The user's code, made on first use."""
    existing = ReferralCode.objects.filter(user=user).first()
    if existing is not None:
        return existing
    for _ in range(5):
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        try:
            with transaction.atomic():
                return ReferralCode.objects.create(user=user, code=code)
        except IntegrityError:
            # Either this user's code was made concurrently (return it) or the random code is taken
            # (31^8 ≈ 8.5e11 codes: rare, try another).
            existing = ReferralCode.objects.filter(user=user).first()
            if existing is not None:
                return existing
    raise RuntimeError("Could not find a free referral code.")


@transaction.atomic
def referral_redeem(*, user: User, code: str) -> Referral:
    """Redeem `code` for `user`: both get the bonus. Redeeming the same code again returns the first
    redemption and posts nothing; a user redeems at most one code, never their own, only while their
    account is new and verified, within the referrer's cap, and never one that closes a cycle of
    referrals (see the module docstring)."""
    code_row = ReferralCode.objects.filter(code=_normalise(code)).first()
    if code_row is None:
        raise InvalidRequest("No such referral code.", code="referral_unknown",
                             fields={"code": ["Check the code and try again."]})
    if code_row.user_id == user.pk:
        raise InvalidRequest("That is your own referral code: share it with someone new.", code="referral_own",
                             fields={"code": ["You cannot redeem your own code."]})
    # Every redemption first locks the referral-bonuses account: the cycle check below reads the
    # referrals that redemptions locking other wallets may be adding, so two of them (b → c and d → a,
    # with a → b and c → d made) could each pass it and together close a loop. Redemptions are rare,
    # so serialising them costs little. Taken before the wallets, by every redemption, so no deadlock.
    source = system_account("referral", AccountKind.REFERRAL)
    LedgerAccount.objects.select_for_update().filter(pk=source.pk).first()
    # Both wallets are locked, in user-id order: two users redeeming each other's codes at the same
    # moment take the locks in the same order and cannot deadlock. The redeeming user's lock also
    # serialises a double submit, which then finds the first redemption below.
    wallets = {uid: _lock_wallet(uid) for uid in sorted((user.pk, code_row.user_id))}
    existing = Referral.objects.filter(referred=user).first()
    if existing is not None:
        if existing.code_id == code_row.pk:
            return existing
        raise Conflict("You have already redeemed a referral code.", code="referral_already_redeemed")
    _check_newcomer(user)
    _check_no_cycle(user_id=user.pk, referrer_id=code_row.user_id)
    # Counted under the referrer's wallet lock (taken above), so two redemptions at the cap cannot
    # both pass.
    cap = plan_for_user(code_row.user).referral_bonus_cap
    if Referral.objects.filter(code=code_row).count() >= cap:
        raise InvalidRequest(f"This referral code has been used its {cap} times: ask for another one.",
                             code="referral_cap_reached", fields={"code": ["This code cannot be redeemed again."]})
    referral = Referral.objects.create(code=code_row, referred=user)
    bonus = referral_bonus()
    if bonus > 0:
        # Keyed by the referred user, so each referred account pays out exactly once per side, even if
        # the Referral row were ever recreated.
        for uid, role, memo in ((user.pk, "referred", "Referral bonus: welcome"),
                                (code_row.user_id, "referrer", "Referral bonus: you invited someone")):
            _, created = _post(idempotency_key=f"referral:{user.pk}:{role}", kind="grant", memo=memo,
                               reference=f"referral:{referral.pk}", legs=[(source, -bonus), (wallets[uid], bonus)])
            if created:
                LedgerAccount.objects.filter(pk=wallets[uid].pk).update(balance=F("balance") + bonus)
    return referral


def _check_newcomer(user: User) -> None:
    """Refuse accounts that are not new (see the module docstring) or whose email is not verified."""
    if not EmailAddress.objects.filter(user=user, verified=True).exists():
        raise InvalidRequest("Verify your email address first: the confirmation link is in your inbox.",
                             code="referral_unverified", fields={"code": ["Your email address is not verified."]})
    window = referral_redeem_window()
    if user.date_joined < timezone.now() - window:
        raise InvalidRequest(f"Referral codes are for new accounts, redeemed within {window.days} days of "
                             f"signing up.", code="referral_not_new",
                             fields={"code": ["Only new accounts can redeem a code."]})
    bought = CheckoutSession.objects.filter(user=user, status__in=[CheckoutStatus.PAID, CheckoutStatus.REFUNDED])
    # `user.generations`: the relation generations declares on the user; billing sits below generations
    # and does not import them (docs/ARCHITECTURE.md, "Layers").
    if bought.exists() or user.generations.exists():
        raise InvalidRequest("Referral codes are for new accounts, redeemed before their first generation or "
                             "purchase.", code="referral_not_new",
                             fields={"code": ["Only new accounts can redeem a code."]})


def _check_no_cycle(*, user_id: Any, referrer_id: Any) -> None:
    """Walk up from the referrer (who referred them, and who referred that one, ...): meeting the
    redeeming user means this redemption would close a loop of accounts referring each other."""
    seen = set()
    current = referrer_id
    while current is not None and current not in seen:
        if current == user_id:
            raise InvalidRequest("You are in this code's chain of referrals: it cannot be redeemed by you.",
                                 code="referral_cycle", fields={"code": ["Accounts cannot refer each other."]})
        seen.add(current)
        current = Referral.objects.filter(referred_id=current).values_list("code__user_id", flat=True).first()
