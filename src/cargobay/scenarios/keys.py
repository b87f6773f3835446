"""Keyboard input for scenarios: QEMU ``QKeyCode`` names and typing text as key chords.

QMP's ``send-key`` presses the keys of one chord together and releases them; typing
text is one chord per character, with ``shift`` added for upper-case letters and the
shifted symbols of a US keyboard layout (the layout the guest's console assumes by
default).  Characters a US keyboard cannot type are refused when the scenario is
loaded, not in the middle of a run.
"""

from __future__ import annotations

from cargobay.errors import InvalidInput

__all__ = ["QCODES", "char_to_chord", "text_to_chords"]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"

QCODES: frozenset[str] = frozenset(
    [
        *_LETTERS,
        *_DIGITS,
        *(f"f{n}" for n in range(1, 25)),
        *(f"kp_{n}" for n in range(10)),
        *[
            "unmapped",
            "pause",
            "ro",
            "kp_comma",
            "kp_equals",
            "power",
            "hiragana",
            "henkan",
            "yen",
            "sleep",
            "wake",
            "audionext",
            "audioprev",
            "audiostop",
            "audioplay",
            "audiomute",
            "volumeup",
            "volumedown",
            "mediaselect",
            "mail",
            "calculator",
            "computer",
            "ac_home",
            "ac_back",
            "ac_forward",
            "ac_refresh",
            "ac_bookmarks",
            "muhenkan",
            "katakanahiragana",
            "lang1",
            "lang2",
            "shift",
            "shift_r",
            "alt",
            "alt_r",
            "altgr",
            "altgr_r",
            "ctrl",
            "ctrl_r",
            "menu",
            "esc",
            "minus",
            "equal",
            "backspace",
            "tab",
            "bracket_left",
            "bracket_right",
            "ret",
            "semicolon",
            "apostrophe",
            "grave_accent",
            "backslash",
            "comma",
            "dot",
            "slash",
            "asterisk",
            "spc",
            "caps_lock",
            "num_lock",
            "scroll_lock",
            "kp_divide",
            "kp_multiply",
            "kp_subtract",
            "kp_add",
            "kp_enter",
            "kp_decimal",
            "sysrq",
            "less",
            "home",
            "pgup",
            "pgdn",
            "end",
            "left",
            "up",
            "down",
            "right",
            "insert",
            "delete",
            "stop",
            "again",
            "props",
            "undo",
            "front",
            "copy",
            "open",
            "paste",
            "find",
            "cut",
            "lf",
            "help",
            "meta_l",
            "meta_r",
            "compose",
        ],
    ]
)
"""QEMU's QKeyCode enumeration (qapi/ui.json), what ``send-key`` accepts as ``qcode``."""

_PLAIN: dict[str, str] = {
    **{c: c for c in _LETTERS + _DIGITS},
    " ": "spc",
    "\n": "ret",
    "\t": "tab",
    "-": "minus",
    "=": "equal",
    "[": "bracket_left",
    "]": "bracket_right",
    "\\": "backslash",
    ";": "semicolon",
    "'": "apostrophe",
    "`": "grave_accent",
    ",": "comma",
    ".": "dot",
    "/": "slash",
}
_SHIFTED: dict[str, str] = {
    **{c.upper(): c for c in _LETTERS},
    **dict(zip("!@#$%^&*()", "1234567890", strict=True)),
    "_": "minus",
    "+": "equal",
    "{": "bracket_left",
    "}": "bracket_right",
    "|": "backslash",
    ":": "semicolon",
    '"': "apostrophe",
    "~": "grave_accent",
    "<": "comma",
    ">": "dot",
    "?": "slash",
}


def char_to_chord(char: str) -> list[str]:
    """The keys to press together to type ``char`` (``"A"`` -> ``["shift", "a"]``)."""
    if char in _PLAIN:
        return [_PLAIN[char]]
    if char in _SHIFTED:
        return ["shift", _SHIFTED[char]]
    raise InvalidInput(
        f"cannot type {char!r} with QMP send-key (US layout: letters, digits, space, "
        "newline, tab and ASCII punctuation); use keys: [[...]] for other keys"
    )


def text_to_chords(text: str) -> list[list[str]]:
    """One chord per character of ``text``."""
    return [char_to_chord(char) for char in text]
