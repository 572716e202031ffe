from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.stripe import reconcile
from billing.stripe.client import TOPUP_PREFIX, payments_enabled
from core.errors import ServiceError


class Command(BaseCommand):
    help = ("Match Stripe payments with credits: paid sessions without credits, credits without a paid "
            "session, refunds waiting for their payment, and wallets flagged by a refund. With --fetch, also "
            "asks Stripe about open sessions whose webhook may have been lost; --fulfil credits the paid ones.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fetch", action="store_true",
                            help="Ask Stripe for the state of open sessions older than --older-than minutes.")
        parser.add_argument("--fulfil", action="store_true",
                            help="With --fetch: credit sessions Stripe reports paid (the same posting a webhook makes).")
        parser.add_argument("--older-than", type=int, default=10, metavar="MINUTES")

    def handle(self, *args: Any, **options: Any) -> None:
        problems = 0
        for session in reconcile.paid_sessions_without_credits():
            problems += 1
            self.stderr.write(f"paid without credits: session {session.pk} of {session.user.email} "
                              f"({session.credits} credits, status {session.status})")
        for event in reconcile.paid_events_without_credits():
            problems += 1
            obj = event.payload.get("data", {}).get("object", {})
            self.stderr.write(f"paid without credits: event {event.pk} ({event.type}) for session {obj.get('id')}: "
                              f"{event.outcome or 'not processed'}")
        for txn in reconcile.credits_without_payment():
            problems += 1
            self.stderr.write(f"credits without payment: posting {txn.idempotency_key} ({txn.memo})")
        for txn in reconcile.stripe_account_foreign_postings():
            problems += 1
            self.stderr.write(f"credits without payment: posting {txn.idempotency_key} on the Stripe clearing "
                              f"account was not made by a Stripe event")
        for event in reconcile.parked_refunds():
            problems += 1
            obj = event.payload.get("data", {}).get("object", {})
            self.stderr.write(f"refund waiting for its payment: event {event.pk}, charge {obj.get('id')}, "
                              f"payment_intent {obj.get('payment_intent')}, {obj.get('amount_refunded')} refunded")
        for flag in reconcile.open_wallet_flags():
            problems += 1
            who = flag.account.user.email if flag.account.user else flag.account
            if flag.reference.startswith(TOPUP_PREFIX):  # a payment that did not match its pack
                self.stderr.write(f"flagged wallet: {who} has a payment held for review, {flag.amount} credits "
                                  f"not posted ({flag.reason}) [{flag.reference}]")
            else:  # a refund's clawback that took the wallet below zero
                self.stderr.write(f"flagged wallet: {who} is {flag.amount} credits short ({flag.reason}) "
                                  f"[{flag.reference}]")
        for session in reconcile.stale_placeholders():
            self.stdout.write(f"note: checkout {session.pk} of user {session.user_id} never got a Stripe id "
                              f"(the request to Stripe did not finish); nothing can be paid on it")
        if options["fetch"]:
            problems += self._fetch(older_than=timedelta(minutes=options["older_than"]), fulfil=options["fulfil"])
        if problems:
            raise CommandError(f"{problems} Stripe reconciliation problem(s).")
        self.stdout.write("Stripe OK: every paid session has its credits and every top-up has a paid session.")

    def _fetch(self, *, older_than: timedelta, fulfil: bool) -> int:
        if not payments_enabled():
            raise CommandError("--fetch needs STRIPE_SECRET_KEY.")
        problems = 0
        for session in reconcile.open_sessions_to_check(older_than=older_than):
            try:
                remote = reconcile.checkout_session_retrieve(session_id=session.pk)
            except ServiceError as exc:
                problems += 1
                self.stderr.write(f"could not check session {session.pk}: {exc.message}")
                continue
            if remote.get("payment_status") != "paid":
                continue
            if fulfil and reconcile.checkout_session_fulfil_from_stripe(session_id=session.pk):
                self.stdout.write(f"credited session {session.pk}: Stripe reports it paid; its webhook never came")
                continue
            problems += 1
            self.stderr.write(f"paid without credits: Stripe reports session {session.pk} paid; "
                              f"its webhook never came (run with --fulfil to credit it)")
        return problems
