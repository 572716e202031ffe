"""Providers run catalog models. Each adapter implements the contract in `base`; `registry` finds them."""
