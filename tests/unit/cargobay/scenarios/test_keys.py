"""Typing text as QMP send-key chords (US layout)."""

from __future__ import annotations

import string

import pytest

from cargobay.errors import InvalidInput
from cargobay.scenarios.keys import QCODES, char_to_chord, text_to_chords


def test_plain_and_shifted_characters() -> None:
    assert text_to_chords("aZ 9\n\t") == [
        ["a"],
        ["shift", "z"],
        ["spc"],
        ["9"],
        ["ret"],
        ["tab"],
    ]
    assert char_to_chord("!") == ["shift", "1"]
    assert char_to_chord(")") == ["shift", "0"]
    assert char_to_chord("_") == ["shift", "minus"]
    assert char_to_chord("~") == ["shift", "grave_accent"]
    assert char_to_chord("|") == ["shift", "backslash"]
    assert char_to_chord(".") == ["dot"]


def test_every_printable_ascii_character_is_typeable_with_known_qcodes() -> None:
    typeable = string.ascii_letters + string.digits + string.punctuation + " \n\t"
    chords = text_to_chords(typeable)
    assert len(chords) == len(typeable)
    for chord in chords:
        assert set(chord) <= QCODES
        assert 1 <= len(chord) <= 2
    # shifted and unshifted characters never share a chord
    assert len({tuple(c) for c in chords}) == len(typeable)


@pytest.mark.parametrize("char", ["é", "\x00", "€", "\r"])
def test_untypeable_characters_are_refused(char: str) -> None:
    with pytest.raises(InvalidInput, match="cannot type"):
        char_to_chord(char)
