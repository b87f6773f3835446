"""PC-AT scancodes for typing text and key combinations over Spice."""

from __future__ import annotations

import string

import pytest

from cargobay.errors import InvalidInput
from cargobay.vmcontrol.spice.keys import KEYS, combo_strokes, text_strokes, wire_code

SHIFT = 0x2A


def test_plain_and_shifted_text() -> None:
    assert text_strokes("a1 ") == [
        (0x1E, True),
        (0x1E, False),
        (0x02, True),
        (0x02, False),
        (0x39, True),
        (0x39, False),
    ]
    assert text_strokes("A!") == [
        (SHIFT, True),
        (0x1E, True),
        (0x1E, False),
        (SHIFT, False),
        (SHIFT, True),
        (0x02, True),
        (0x02, False),
        (SHIFT, False),
    ]
    assert text_strokes("\n\t") == [(0x1C, True), (0x1C, False), (0x0F, True), (0x0F, False)]


@pytest.mark.parametrize(
    ("ch", "code"),
    [
        ("q", 0x10),
        ("p", 0x19),
        ("l", 0x26),
        ("z", 0x2C),
        ("m", 0x32),
        ("0", 0x0B),
        ("/", 0x35),
        ("`", 0x29),
        ("\\", 0x2B),
        ("=", 0x0D),
        ("'", 0x28),
    ],
)
def test_us_layout_spot_checks(ch: str, code: int) -> None:
    assert text_strokes(ch) == [(code, True), (code, False)]


def test_every_printable_ascii_char_has_a_distinct_stroke() -> None:
    seen: dict[tuple[tuple[int, bool], ...], str] = {}
    for ch in string.printable:
        if ch in "\r\x0b\x0c":
            continue
        strokes = tuple(text_strokes(ch))
        assert strokes not in seen, (ch, seen.get(strokes))
        seen[strokes] = ch
    assert len(seen) == len(string.printable) - 3


def test_untypeable_text() -> None:
    with pytest.raises(InvalidInput, match="position 2"):
        text_strokes("ab\u00e9")


def test_combos() -> None:
    assert combo_strokes("ctrl+alt+delete") == [
        (0x1D, True),
        (0x38, True),
        (0x153, True),
        (0x153, False),
        (0x38, False),
        (0x1D, False),
    ]
    assert combo_strokes("Return") == [(0x1C, True), (0x1C, False)]
    assert combo_strokes("F12") == [(0x58, True), (0x58, False)]
    assert KEYS["f1"] == 0x3B
    assert KEYS["f10"] == 0x44
    with pytest.raises(InvalidInput, match="unknown key"):
        combo_strokes("ctrl+hyper")
    with pytest.raises(InvalidInput):
        combo_strokes("+")


def test_wire_codes() -> None:
    assert wire_code(0x1C, True) == 0x1C
    assert wire_code(0x1C, False) == 0x9C
    assert wire_code(KEYS["up"], True) == 0x48E0
    assert wire_code(KEYS["up"], False) == 0xC8E0
    for bad in (0, 0x80, 0x9C, 0x200, -1):
        with pytest.raises(InvalidInput):
            wire_code(bad, True)
