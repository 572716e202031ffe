"""Stripe top-ups: Checkout Sessions for credit packs, the webhook events that pay for them, refunds that
claw credits back, and the reads that reconcile the two sides.

Wire format and SDK behaviour: docs/STRIPE.md, "The wire protocol" §6 ("ref §6.x" in these modules).

Money moves only from verified webhook events (ref §6.2: "fulfil from webhooks, not from the success
redirect"), in double-entry postings between the Stripe clearing account and the user's wallet:
a top-up is stripe -N / wallet +N under the key "stripe:checkout:<cs_id>"; a clawback is wallet -N /
stripe +N under "stripe:refund:<charge_id>:<amount_refunded>". Both keys are unique in the ledger, so
an event delivered five times, or two events that both say "paid" (completed and
async_payment_succeeded), post once.

The modules, by job:
- `client`: whether payments are configured, the SDK client, the errors callers show, shared prefixes.
- `checkout`: the credit packs, a buyer's sessions (the access funnel) and creating a session.
- `ledger`: the postings (top-up, clawback, parked refunds) and the lock that serialises Stripe events.
- `events`: verifying a webhook's signature and handling each event type once, in any order.
- `reconcile`: the reads that match Stripe's side with ours, and crediting a session Stripe says is paid.
"""
