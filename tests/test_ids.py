"""Identifiers: opaque to clients, but ordered by creation time and never repeated."""

from __future__ import annotations

import re
import time

from directo.core.ids import new_id

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _millisecond(identifier: str) -> int:
    number = 0
    for char in identifier.partition("_")[2][:9]:
        number = number * 32 + ALPHABET.index(char)
    return number


def test_an_id_is_its_prefix_then_21_characters_of_an_unambiguous_alphabet() -> None:
    identifier = new_id("msg")
    assert re.fullmatch(r"msg_[0-9a-hjkmnp-tv-z]{21}", identifier)


def test_an_id_starts_with_the_millisecond_it_was_made_in() -> None:
    before = time.time_ns() // 1_000_000
    identifier = new_id("cnv")
    after = time.time_ns() // 1_000_000
    assert before <= _millisecond(identifier) <= after


def test_ids_made_later_sort_later_and_none_repeats() -> None:
    first = new_id("msg")
    time.sleep(0.002)
    batch = [new_id("msg") for _ in range(10_000)]
    assert all(first < later for later in batch)
    assert len(set(batch)) == len(batch)
