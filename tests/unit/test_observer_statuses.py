"""An observer reads an account's status in the harness's words, through the profile's map."""

from __future__ import annotations

from harness.targets.observers import _accounts

ROWS = [{"user_id": "7", "balance_tokens": 0, "debt_tokens": 40, "status": "OWING"},
        {"user_id": "8", "balance_tokens": 5, "status": "FROZEN"},
        {"user_id": "9", "balance_tokens": 5}]
IDS = {"fan_0": "7", "fan_1": "8", "fan_2": "9"}


def test_a_mapped_word_is_ours_and_an_unmapped_one_is_not_judged() -> None:
    accounts = _accounts(ROWS, IDS, statuses={"OWING": "debt", "OK": "active"}, where="test")
    assert [accounts[user].status for user in IDS] == ["debt", None, None]


def test_without_a_map_the_status_is_taken_as_written() -> None:
    accounts = _accounts(ROWS, IDS, statuses={}, where="test")
    assert [accounts[user].status for user in IDS] == ["OWING", "FROZEN", None]
