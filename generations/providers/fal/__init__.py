"""fal.ai, through the official `fal-client` SDK's queue API (submit → status with logs → result, cancel).

The package, by job: `client` (the SDK's client pointed where settings say), `errors` (fal's errors as
ProviderErrors), `io` (our inputs as fal arguments, fal's results as Outputs), `webhook` (signature
verification and callback decoding) and `adapter` (`FalProvider`: submit, poll, cancel, keys).

Wire protocol and SDK behaviour: the summary in docs/providers/fal.md ("The wire protocol", whose §
numbers the comments here cite) and fal-client 1.0.3 (`fal_client/client.py`); the fake in
tests/fakes/fal.py speaks the same protocol. How the adapter maps states, errors and costs, and where
the protocol notes and the SDK disagree: docs/providers/fal.md.
"""
