"""How credit amounts are written in messages: "1 credit", "2 credits", "1,500 credits"."""

from __future__ import annotations


def credits_display(credits: int) -> str:
    return f"{credits:,} credit" + ("" if credits == 1 else "s")
