from __future__ import annotations

import re

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.rooms.codes import CODE_PATTERN, INPUT_PATTERN, generate_room_code, normalize_room_code

ACCEPTED = ["abc-defg-hij", "ABC-DEFG-HIJ", "abcdefghij", "AbCdEfGhIj", "abc-defghij", "abcdefg-hij"]
REFUSED = [
    "",
    "abc",
    "abc-defg-hi",
    "abcdefghijk",
    "abc-defg-hij ",
    " abc-defg-hij",
    "abc-de1g-hij",
    "abc_defg_hij",
    "abc--defg-hij",
    "\u212abc-defg-hij",
    "\u017fbc-defg-hij",
    "abc-defg-hij\n",
]
# INPUT_PATTERN as the API description's readers apply it: JSON Schema's (ECMA-262) `pattern`.
_INPUT_SCHEMA = jsonschema_rs.validator_for({"type": "string", "pattern": INPUT_PATTERN})


def test_generated_codes_have_the_public_shape_and_vary() -> None:
    codes = {generate_room_code() for _ in range(2000)}
    assert all(re.fullmatch(CODE_PATTERN, code) for code in codes)
    assert len(codes) == 2000  # 26^10 possibilities: a repeat here would mean a broken generator
    # Every letter turns up somewhere: the alphabet is all of a-z.
    assert set("".join(codes).replace("-", "")) == set("abcdefghijklmnopqrstuvwxyz")
    # And in every position: no letter of the code is drawn from less than the whole alphabet.
    for position in range(10):
        assert {code.replace("-", "")[position] for code in codes} == set("abcdefghijklmnopqrstuvwxyz")


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("abc-defg-hij", "abc-defg-hij"),
        ("ABC-DEFG-HIJ", "abc-defg-hij"),
        ("abcdefghij", "abc-defg-hij"),
        ("AbCdEfGhIj", "abc-defg-hij"),
    ],
)
def test_normalises_case_and_dashes(typed: str, canonical: str) -> None:
    assert normalize_room_code(typed) == canonical


@pytest.mark.parametrize("typed", REFUSED)
def test_rejects_anything_else(typed: str) -> None:
    assert normalize_room_code(typed) is None


@pytest.mark.parametrize("typed", ACCEPTED + REFUSED)
def test_the_described_pattern_accepts_exactly_what_the_server_does(typed: str) -> None:
    assert _INPUT_SCHEMA.is_valid(typed) == (normalize_room_code(typed) is not None)


# Strings near the shape of a code (letters of both cases, dashes, look-alikes, whitespace), so that
# most of them are almost codes: where a looser or stricter pattern would disagree with the server.
@given(st.text(alphabet="aZq-\u212a\u017f1 \n_", min_size=8, max_size=13))
@settings(max_examples=300, derandomize=True, database=None)
def test_the_described_pattern_agrees_with_the_server_near_the_shape(typed: str) -> None:
    assert _INPUT_SCHEMA.is_valid(typed) == (normalize_room_code(typed) is not None)
