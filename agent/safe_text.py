"""Text from elsewhere (a feed's notes, a user's reason, the audit log) made safe for a terminal.

A control character written to a terminal is an order, not a letter: ESC starts a sequence
that moves the cursor, rewrites a line (a fake "audit log intact" under a real error) or sets
the window title; CR goes back to the start of the line; the bidirectional overrides and
isolates reorder what follows, so that "1.0.0 -> 9.9.9" can read backwards. So the agent

- refuses them in the free text it is given (API request bodies, ``agent.api.schemas``: a 422
  naming the field). Tab and newline are refused there too: every free-text field is one line
  (a reason, a comment, a name), and a newline in it could forge a line of a log or a listing;
- escapes them in what it shows (the CLI, the dashboard), because text stored before the
  refusal existed, a feed's notes and an error message quoting either can still hold them.
  ESC is shown as ``\\x1b``, U+202E as ``\\u202e``: visible, and what Python would write.

    UNSAFE_CLASS              the characters, as a regular-expression class (for JSON schemas)
    first_unsafe(text)        (index, character) of the first one, or None
    describe(character)       ``U+001B (escape)``: how a refusal names it
    escape_unsafe(text)       each one as its escape; ``keep="\\n"`` keeps line breaks for the
                              callers that lay out several lines themselves
    quoted(text)              ``repr(text)`` for a message, cut short when long
"""

from __future__ import annotations

import re

UNSAFE_CLASS = r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
"""C0 controls (tab and newline included), DEL, C1 controls, the bidi embeddings and overrides
(U+202A–U+202E) and isolates (U+2066–U+2069). Understood alike by Python's ``re``, the Rust
regex engine of pydantic-core and JSON Schema (ECMA-262) patterns."""

_UNSAFE = re.compile(UNSAFE_CLASS)
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def first_unsafe(text: str) -> tuple[int, str] | None:
    """Where the first character that must not reach a terminal is, and which it is."""
    found = _UNSAFE.search(text)
    return (found.start(), found.group()) if found else None


def describe(character: str) -> str:
    """``U+001B (escape)``: the code point and, for the usual ones, a name; never the character."""
    names = {"\t": "tab", "\n": "newline", "\r": "carriage return", "\x1b": "escape", "\x7f": "delete"}
    name = names.get(character)
    if name is None and "\u202a" <= character <= "\u2069":
        name = "bidirectional override"
    return f"U+{ord(character):04X}" + (f" ({name})" if name else "")


def escape_unsafe(text: str, *, keep: str = "") -> str:
    """``text`` with each unsafe character (except those in ``keep``) written as its escape,
    and each lone surrogate (an undecodable byte of a file or an argument) as ``\\xNN``."""

    def escaped(match: re.Match[str]) -> str:
        character = match.group()
        if character in keep:
            return character
        short = _SHORT.get(character)
        if short is not None:
            return short
        code = ord(character)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
            return f"\\x{code - 0xDC00:02x}"
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _SURROGATE.sub(escaped, _UNSAFE.sub(escaped, text))


def quoted(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message (``repr``: escapes included), cut short when longer than
    ``limit``: a refusal must not repeat the ten thousand characters it refuses."""
    return repr(text) if len(text) <= limit else f"{text[:limit // 2]!r}... ({len(text)} characters)"
