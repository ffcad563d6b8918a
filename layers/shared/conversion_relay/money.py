"""Provider amounts (integers in minor units) to exact major-unit Decimals.

The exponent is data, not code: providers disagree with ISO 4217 (Stripe treats ISK as two-decimal and
MGA as zero-decimal), so each provider names the table it was paid in. Floats never appear: a float
cannot hold 19.99 exactly and destinations receive whatever string we produce.
"""

from __future__ import annotations

import json
from decimal import Context, Decimal
from functools import cache
from importlib import resources


@cache
def _tables() -> dict[str, tuple[int, dict[str, int]]]:
    raw = json.loads(
        resources.files("conversion_relay").joinpath("data/currency_exponents.json").read_text("utf-8")
    )
    tables: dict[str, tuple[int, dict[str, int]]] = {}
    for name, table in raw.items():
        if name.startswith("_"):
            continue
        by_code = {code: int(exponent) for exponent, codes in table["exponents"].items() for code in codes}
        tables[name] = (int(table["default"]), by_code)
    return tables


def normalize_currency(currency: str) -> str:
    """Upper-case a 3-letter code; anything else is a ValueError naming the rule (the value is not PII)."""
    valid = isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isalpha()
    if not valid:
        raise ValueError(f"currency must be a 3-letter ISO 4217 code, got {currency!r}")
    return currency.upper()


def exponent(currency: str, table: str = "iso") -> int:
    """Number of minor-unit digits of `currency` in `table` ("iso" or "stripe")."""
    tables = _tables()
    if table not in tables:
        raise ValueError(f"unknown currency exponent table {table!r}; known: {sorted(tables)}")
    default, by_code = tables[table]
    return by_code.get(normalize_currency(currency), default)


def to_major_units(amount_minor: int, currency: str, table: str = "iso") -> Decimal:
    """Exact major units, e.g. (1999, "usd") -> Decimal("19.99"), (5000, "krw", "stripe") -> Decimal("5000").

    The result keeps the currency's scale (100 USD cents -> "1.00"), which is what the amount means.
    """
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"amount_minor must be an int in minor units, got {type(amount_minor).__name__}")
    digits = exponent(currency, table)
    number = Decimal(amount_minor)
    # scaleb rounds to the context precision; give it enough digits that it never has to.
    precision = max(28, len(number.as_tuple().digits) + 1)
    return number.scaleb(-digits, context=Context(prec=precision))
