"""Stripe's form encoding read back into nested data, as the SDK writes it."""

from __future__ import annotations

import urllib.parse

import pytest

from harness.provider.forms import parse_form, parse_pairs
from harness.provider.objects import StripeError


def test_brackets_build_hashes_and_both_array_spellings_build_lists() -> None:
    body = urllib.parse.urlencode([
        ("amount", "2500"), ("metadata[user_id]", "7"), ("metadata[tokens]", "500"),
        ("expand[]", "latest_charge"), ("payment_method_types[0]", "card"),
        ("payment_method_types[1]", "link"), ("automatic_payment_methods[enabled]", "true"),
    ]).encode()
    assert parse_form(body) == {
        "amount": "2500", "metadata": {"user_id": "7", "tokens": "500"},
        "expand": ["latest_charge"], "payment_method_types": ["card", "link"],
        "automatic_payment_methods": {"enabled": "true"},
    }


def test_metadata_keys_that_are_digits_stay_a_hash() -> None:
    assert parse_pairs([("metadata[0]", "a"), ("metadata[1]", "b")]) == {
        "metadata": {"0": "a", "1": "b"}}


def test_arrays_of_hashes_nest() -> None:
    parsed = parse_pairs([("items[0][price]", "p1"), ("items[1][price]", "p2")])
    assert parsed == {"items": [{"price": "p1"}, {"price": "p2"}]}


@pytest.mark.parametrize("pairs", [
    [("a", "1"), ("a[b]", "2")],
    [("a[b]", "1"), ("a", "2")],
    [("a", "1"), ("a", "2")],
    [("a[]", "1"), ("a[b]", "2")],
    [("a]b", "1")],
    [("a[b][c][d][e][f]", "1")],
])
def test_conflicting_or_malformed_keys_are_a_400(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(StripeError) as caught:
        parse_pairs(pairs)
    assert caught.value.status_code == 400


def test_a_body_that_is_not_utf8_is_a_400() -> None:
    with pytest.raises(StripeError):
        parse_form(b"amount=\xff\xfe")
