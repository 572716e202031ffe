"""Referral codes: each user has one; a new user who redeems someone's code gets a bonus, and so does
the code's owner, once per referred user, as ledger postings from the referral-bonuses account."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from billing.models import AccountKind, LedgerAccount, Referral, ReferralCode
from billing.services import _lock_wallet, _post, system_account
from config.errors import Conflict, InvalidRequest

# No 0/O, 1/I/L: codes are read aloud and typed from screenshots.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
DEFAULT_BONUS = 100


def referral_bonus() -> int:
    return int(getattr(settings, "REFERRAL_BONUS_CREDITS", DEFAULT_BONUS))


def _normalise(code: str) -> str:
    return code.strip().upper().replace("-", "").replace(" ", "")


def referral_code_get_or_create(*, user: Any) -> ReferralCode:
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
def referral_redeem(*, user: Any, code: str) -> Referral:
    """Redeem `code` for `user`: both get the bonus. Redeeming the same code again returns the first
    redemption and posts nothing; a user redeems at most one code, never their own, and not the code
    of someone they referred themselves (two accounts referring each other would mint bonuses)."""
    code_row = ReferralCode.objects.filter(code=_normalise(code)).first()
    if code_row is None:
        raise InvalidRequest("No such referral code.", code="referral_unknown",
                             fields={"code": ["Check the code and try again."]})
    if code_row.user_id == user.pk:
        raise InvalidRequest("That is your own referral code: share it with someone new.", code="referral_own",
                             fields={"code": ["You cannot redeem your own code."]})
    # Both wallets are locked, in user-id order: two users redeeming each other's codes at the same
    # moment take the locks in the same order and cannot deadlock. The redeeming user's lock also
    # serialises a double submit, which then finds the first redemption below.
    wallets = {uid: _lock_wallet(uid) for uid in sorted((user.pk, code_row.user_id))}
    existing = Referral.objects.filter(referred=user).first()
    if existing is not None:
        if existing.code_id == code_row.pk:
            return existing
        raise Conflict("You have already redeemed a referral code.", code="referral_already_redeemed")
    if Referral.objects.filter(referred_id=code_row.user_id, code__user=user).exists():
        raise Conflict("You referred this user: their code cannot be redeemed by you.", code="referral_mutual")
    referral = Referral.objects.create(code=code_row, referred=user)
    bonus = referral_bonus()
    if bonus > 0:
        source = system_account("referral", AccountKind.REFERRAL)
        # Keyed by the referred user, so each referred account pays out exactly once per side, even if
        # the Referral row were ever recreated.
        for uid, role, memo in ((user.pk, "referred", "Referral bonus: welcome"),
                                (code_row.user_id, "referrer", "Referral bonus: you invited someone")):
            _, created = _post(idempotency_key=f"referral:{user.pk}:{role}", kind="grant", memo=memo,
                               reference=f"referral:{referral.pk}", legs=[(source, -bonus), (wallets[uid], bonus)])
            if created:
                LedgerAccount.objects.filter(pk=wallets[uid].pk).update(balance=F("balance") + bonus)
    return referral
