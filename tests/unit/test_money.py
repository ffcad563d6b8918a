from decimal import Decimal

import pytest

from conversion_relay.money import exponent, normalize_currency, to_major_units


@pytest.mark.parametrize(
    ("amount", "currency", "table", "expected"),
    [
        (1999, "usd", "iso", "19.99"),
        (1999, "USD", "stripe", "19.99"),
        (100, "usd", "iso", "1.00"),
        (5, "eur", "iso", "0.05"),
        (0, "usd", "iso", "0.00"),
        (-250, "usd", "iso", "-2.50"),
        (59000, "krw", "iso", "59000"),
        (59000, "krw", "stripe", "59000"),
        (1200, "jpy", "stripe", "1200"),
        (5120, "kwd", "iso", "5.120"),
        (5120, "kwd", "stripe", "5.120"),
        (1234, "iqd", "iso", "1.234"),
        (1234, "iqd", "stripe", "12.34"),  # IQD is not three-decimal on Stripe
        (12345, "clf", "iso", "1.2345"),
        (500, "isk", "iso", "500"),
        (500, "isk", "stripe", "5.00"),  # ISK: zero-decimal in ISO, two-decimal on Stripe
        (300, "mga", "iso", "3.00"),
        (300, "mga", "stripe", "300"),  # MGA: two-decimal in ISO, zero-decimal on Stripe
        (700, "uyi", "iso", "700"),
        (700, "uyi", "stripe", "7.00"),
        (1999, "zzz", "iso", "19.99"),  # unknown codes fall back to the table's default
    ],
)
def test_to_major_units(amount, currency, table, expected):
    result = to_major_units(amount, currency, table)
    assert isinstance(result, Decimal)
    assert result == Decimal(expected)
    assert str(result) == expected  # exact, with the currency's scale, never via float


def test_default_table_is_iso():
    assert to_major_units(500, "ISK") == Decimal("500")


def test_large_amounts_are_not_rounded():
    amount = 10**40 + 1
    assert to_major_units(amount, "usd") == Decimal("100000000000000000000000000000000000000.01")


@pytest.mark.parametrize("currency", ["", "us", "usdd", "U$D", "12A", "ÜSD", " usd", None, 840])
def test_rejects_codes_that_are_not_three_letters(currency):
    with pytest.raises(ValueError, match="3-letter ISO 4217"):
        to_major_units(100, currency)


@pytest.mark.parametrize("amount", [19.99, "1999", Decimal("1999"), True, None])
def test_rejects_amounts_that_are_not_integers(amount):
    with pytest.raises(TypeError, match="int in minor units"):
        to_major_units(amount, "usd")


def test_unknown_table():
    with pytest.raises(ValueError, match="unknown currency exponent table"):
        to_major_units(100, "usd", "adyen")


@pytest.mark.parametrize(
    ("currency", "iso", "stripe"),
    [("KRW", 0, 0), ("ISK", 0, 2), ("MGA", 2, 0), ("BHD", 3, 3), ("LYD", 3, 2), ("UYW", 4, 2), ("USD", 2, 2)],
)
def test_exponent(currency, iso, stripe):
    assert exponent(currency, "iso") == iso
    assert exponent(currency.lower(), "stripe") == stripe


def test_normalize_currency_upper_cases():
    assert normalize_currency("krw") == "KRW"
