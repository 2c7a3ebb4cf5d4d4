from __future__ import annotations

import re

import pytest

from common.rooms.codes import CODE_PATTERN, generate_room_code, normalize_room_code


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


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "abc",
        "abc-defg-hi",
        "abcdefghijk",
        "abc-defg-hij ",
        " abc-defg-hij",
        "abc-de1g-hij",
        "abc_defg_hij",
        "\u212abc-defg-hij",
        "\u017fbc-defg-hij",
        "abc-defg-hij\n",
    ],
)
def test_rejects_anything_else(typed: str) -> None:
    assert normalize_room_code(typed) is None
