from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.selectors import unbalanced_transactions, wallet_drift


class Command(BaseCommand):
    help = "Check every posting balances and every wallet's cached balance and holds match its entries."

    def handle(self, *args: Any, **options: Any) -> None:
        unbalanced = unbalanced_transactions()
        drift = wallet_drift()
        for txn in unbalanced:
            self.stderr.write(f"unbalanced transaction {txn}")
        for row in drift:
            self.stderr.write(f"wallet {row['wallet']} (user {row['user']}): cached balance "
                              f"{row['cached_balance']} vs entries {row['balance']}; cached held "
                              f"{row['cached_held']} vs open holds {row['held']}")
        if unbalanced or drift:
            raise CommandError(f"{len(unbalanced)} unbalanced postings, {len(drift)} wallets drifted.")
        self.stdout.write("Ledger OK: every posting balances and every wallet matches its entries.")
