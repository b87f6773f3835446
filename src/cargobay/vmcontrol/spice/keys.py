"""PC-AT (set 1) scancodes for the Spice inputs channel: named keys, combos and US-ASCII text.

Spice's KEY_DOWN/KEY_UP carry a u32 whose little-endian bytes the server pushes to the
guest's keyboard controller one by one until a zero byte: a plain key is its set-1 make
code (release: make | 0x80); an extended key is 0xE0 followed by its code.  Here a key is
an int: the make code for plain keys, ``0x100 | code`` for E0-prefixed ones, and
``wire_code(key, down)`` turns it into the u32 of the message.

Text is typed as a US keyboard layout would type it: upper case and shifted symbols are
wrapped in left-shift down/up.
"""

from __future__ import annotations

from cargobay.errors import InvalidInput

__all__ = ["KEYS", "KeyStroke", "combo_strokes", "text_strokes", "wire_code"]

EXTENDED = 0x100

KEYS: dict[str, int] = {
    "esc": 0x01,
    "backspace": 0x0E,
    "tab": 0x0F,
    "enter": 0x1C,
    "ctrl": 0x1D,
    "shift": 0x2A,
    "rshift": 0x36,
    "alt": 0x38,
    "space": 0x39,
    "capslock": 0x3A,
    "numlock": 0x45,
    "scrolllock": 0x46,
    "kp_multiply": 0x37,
    "rctrl": EXTENDED | 0x1D,
    "ralt": EXTENDED | 0x38,
    "kp_enter": EXTENDED | 0x1C,
    "home": EXTENDED | 0x47,
    "up": EXTENDED | 0x48,
    "pageup": EXTENDED | 0x49,
    "left": EXTENDED | 0x4B,
    "right": EXTENDED | 0x4D,
    "end": EXTENDED | 0x4F,
    "down": EXTENDED | 0x50,
    "pagedown": EXTENDED | 0x51,
    "insert": EXTENDED | 0x52,
    "delete": EXTENDED | 0x53,
    "meta": EXTENDED | 0x5B,
    "rmeta": EXTENDED | 0x5C,
    "menu": EXTENDED | 0x5D,
}
KEYS.update({f"f{n}": 0x3B + n - 1 for n in range(1, 11)})
KEYS.update({"f11": 0x57, "f12": 0x58})
_ALIASES = {
    "escape": "esc",
    "return": "enter",
    "control": "ctrl",
    "lctrl": "ctrl",
    "lshift": "shift",
    "lalt": "alt",
    "altgr": "ralt",
    "del": "delete",
    "ins": "insert",
    "pgup": "pageup",
    "pgdn": "pagedown",
    "win": "meta",
    "super": "meta",
}

# Unshifted characters of a US layout, by row, starting at their first scancode.
_ROWS = [
    (0x02, "1234567890-="),
    (0x10, "qwertyuiop[]"),
    (0x1E, "asdfghjkl;'`"),
    (0x2B, "\\zxcvbnm,./"),
]
_SHIFTED = dict(zip("1234567890-=[];'`\\,./", '!@#$%^&*()_+{}:"~|<>?', strict=True))

_PLAIN: dict[str, int] = {" ": 0x39, "\n": 0x1C, "\t": 0x0F, "\b": 0x0E}
for _start, _chars in _ROWS:
    for _i, _ch in enumerate(_chars):
        _PLAIN[_ch] = _start + _i
for _ch in list(_PLAIN):
    if _ch.isalpha():
        KEYS[_ch] = _PLAIN[_ch]
for _d in "0123456789":
    KEYS[_d] = _PLAIN[_d]

_CHARS: dict[str, tuple[int, bool]] = {ch: (code, False) for ch, code in _PLAIN.items()}
_CHARS.update({ch.upper(): (code, True) for ch, code in _PLAIN.items() if ch.isalpha()})
_CHARS.update({shifted: (_PLAIN[base], True) for base, shifted in _SHIFTED.items()})

KeyStroke = tuple[int, bool]
"""(key, down): one KEY_DOWN (True) or KEY_UP (False) message."""


def wire_code(key: int, down: bool) -> int:
    """The u32 ``code`` of a KEY_DOWN/KEY_UP message for ``key``."""
    if not 0 < key < 0x200 or key & 0x7F == 0 or (key < EXTENDED and key & 0x80):
        raise InvalidInput(f"not a PC-AT make code: {key:#x}")
    code = key & 0x7F
    if not down:
        code |= 0x80
    if key & EXTENDED:
        return 0xE0 | code << 8
    return code


def text_strokes(text: str) -> list[KeyStroke]:
    """Strokes that type ``text`` on a US layout (ASCII letters, digits, symbols, \\n, \\t)."""
    strokes: list[KeyStroke] = []
    shift = KEYS["shift"]
    for pos, ch in enumerate(text):
        try:
            code, shifted = _CHARS[ch]
        except KeyError:
            raise InvalidInput(
                f"cannot type {ch!r} (position {pos}): only US-ASCII text, \\n and \\t; "
                "send other keys by name"
            ) from None
        if shifted:
            strokes.append((shift, True))
        strokes += [(code, True), (code, False)]
        if shifted:
            strokes.append((shift, False))
    return strokes


def key_by_name(name: str) -> int:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in KEYS:
        return KEYS[key]
    raise InvalidInput(f"unknown key {name!r}; known keys: {', '.join(sorted(KEYS))}")


def combo_strokes(combo: str) -> list[KeyStroke]:
    """``"ctrl+alt+delete"`` -> press each key in order, release them in reverse."""
    keys = [key_by_name(part) for part in combo.split("+") if part.strip()]
    if not keys:
        raise InvalidInput(f"empty key combination {combo!r}")
    return [(k, True) for k in keys] + [(k, False) for k in reversed(keys)]
