"""``response_format: {"type": "json_object"}``: decoding constrained to one valid JSON object.

A small character-level JSON state machine, run over the decoded text of candidate tokens. Pure
Python (no torch): ``sampling.py`` asks it whether a token may come next.

* The output is one JSON object (RFC 8259), then the end-of-turn token; nothing before or after it.
* Whitespace is allowed between tokens, never twice in a row (so a model cannot idle forever in it),
  nesting is limited to ``MAX_DEPTH``.
* Termination is guaranteed: a token is accepted only if the shortest text that closes the object
  still fits in the tokens that remain, so the answer is valid JSON even when ``max_tokens`` is reached
  (given room for the two characters of ``{}``).
* Tokens whose text is not whole UTF-8 characters, and special tokens, are never allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MAX_DEPTH = 16
_WHITESPACE = " \n"
_ESCAPES = '"\\/bfnrtu'
_HEX = "0123456789abcdefABCDEF"
_DIGITS = "0123456789"

# Modes of the machine (what the next character may be).
VALUE = "value"  # any value (at the top: only an object)
FIRST_KEY = "first_key"  # after "{": a key or "}"
KEY = "key"  # after "," in an object: a key
COLON = "colon"  # after a key
FIRST_ITEM = "first_item"  # after "[": a value or "]"
AFTER = "after"  # after a value: "," or the closing bracket
STRING = "string"
ESCAPE = "escape"  # after a backslash in a string
UNICODE = "unicode"  # inside \\uXXXX
NUMBER = "number"
LITERAL = "literal"  # inside true / false / null
DONE = "done"


@dataclass(frozen=True)
class JsonState:
    """Where the text generated so far stands; immutable so that candidates are cheap to try."""

    mode: str = VALUE
    stack: str = ""
    """Open containers, innermost last: ``{`` or ``[``."""
    is_key: bool = False
    """In ``STRING``/``ESCAPE``/``UNICODE``: whether the string is an object key."""
    pending: str = ""
    """``LITERAL``: the characters still to come; ``UNICODE``: hex digits still expected (as dots);
    ``NUMBER``: the number's text so far."""
    after_space: bool = False

    def feed(self, text: str) -> JsonState | None:
        """The state after ``text``, or None when ``text`` cannot continue a JSON object from here."""
        state: JsonState | None = self
        for char in text:
            assert state is not None
            state = state._step(char)
            if state is None:
                return None
        return state

    # -- one character -------------------------------------------------------------------------

    def _step(self, c: str) -> JsonState | None:
        mode = self.mode
        if mode == STRING:
            if c == '"':
                return replace(self, mode=COLON if self.is_key else AFTER, is_key=False, after_space=False)
            if c == "\\":
                return replace(self, mode=ESCAPE)
            return None if ord(c) < 0x20 else self
        if mode == ESCAPE:
            if c not in _ESCAPES:
                return None
            return replace(self, mode=UNICODE, pending="....") if c == "u" else replace(self, mode=STRING)
        if mode == UNICODE:
            if c not in _HEX:
                return None
            rest = self.pending[1:]
            return replace(self, mode=UNICODE if rest else STRING, pending=rest)
        if mode == LITERAL:
            if c != self.pending[0]:
                return None
            rest = self.pending[1:]
            return replace(self, pending=rest) if rest else replace(self, mode=AFTER, pending="")
        if mode == NUMBER:
            grown = self.pending + c
            if _number_prefix(grown):
                return replace(self, pending=grown)
            if not _number_complete(self.pending):
                return None
            return replace(self, mode=AFTER, pending="")._step(c)
        if mode == DONE:
            return None
        if c in _WHITESPACE:
            if self.after_space or (mode == VALUE and not self.stack):
                return None
            return replace(self, after_space=True)
        moved = self._structural(c)
        return None if moved is None else replace(moved, after_space=False)

    def _structural(self, c: str) -> JsonState | None:
        mode, stack = self.mode, self.stack
        if mode in (FIRST_KEY, KEY):
            if c == '"':
                return replace(self, mode=STRING, is_key=True)
            if c == "}" and mode == FIRST_KEY:
                return self._close()
            return None
        if mode == COLON:
            return replace(self, mode=VALUE) if c == ":" else None
        if mode == AFTER:
            closer = "}" if stack[-1:] == "{" else "]"
            if c == ",":
                return replace(self, mode=KEY if closer == "}" else VALUE)
            return self._close() if c == closer else None
        if mode == FIRST_ITEM and c == "]":
            return self._close()
        # VALUE or FIRST_ITEM: a value starts.
        if not stack and c != "{":
            return None
        if c in "{[":
            if len(stack) >= MAX_DEPTH:
                return None
            return replace(self, mode=FIRST_KEY if c == "{" else FIRST_ITEM, stack=stack + c)
        if c == '"':
            return replace(self, mode=STRING, is_key=False)
        if c in "-" + _DIGITS:
            return replace(self, mode=NUMBER, pending=c)
        for word in ("true", "false", "null"):
            if c == word[0]:
                return replace(self, mode=LITERAL, pending=word[1:])
        return None

    def _close(self) -> JsonState:
        stack = self.stack[:-1]
        return replace(self, mode=AFTER if stack else DONE, stack=stack)

    # -- termination ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """The object is complete: only the end-of-turn token may follow."""
        return self.mode == DONE

    def closing(self) -> str:
        """The shortest text that completes the object from here ("" when done)."""
        mode, text = self.mode, ""
        if mode == DONE:
            return ""
        if not self.stack:  # nothing generated yet
            return "{}"
        if mode == STRING:
            text = '"'
        elif mode == ESCAPE:
            text = 'n"'
        elif mode == UNICODE:
            text = "0" * len(self.pending) + '"'
        elif mode == COLON:
            text = ":0"
        elif mode == KEY:
            text = '"":0'
        elif mode == VALUE:
            text = "0"
        elif mode == NUMBER:
            text = "" if _number_complete(self.pending) else "0"
        elif mode == LITERAL:
            text = self.pending
        if mode in (STRING, ESCAPE, UNICODE) and self.is_key:
            text += ":0"
        return text + "".join("}" if b == "{" else "]" for b in reversed(self.stack))


def _number_prefix(text: str) -> bool:
    """Whether ``text`` can still grow into a JSON number."""
    i, n = 0, len(text)
    if i < n and text[i] == "-":
        i += 1
    if i == n:
        return True
    if text[i] == "0":
        i += 1
    elif text[i] in _DIGITS:
        while i < n and text[i] in _DIGITS:
            i += 1
    else:
        return False
    if i < n and text[i] == ".":
        i += 1
        if i == n:
            return True
        if text[i] not in _DIGITS:
            return False
        while i < n and text[i] in _DIGITS:
            i += 1
    if i < n and text[i] in "eE":
        i += 1
        if i < n and text[i] in "+-":
            i += 1
        if i == n:
            return True
        if text[i] not in _DIGITS:
            return False
        while i < n and text[i] in _DIGITS:
            i += 1
    return i == n


def _number_complete(text: str) -> bool:
    return bool(text) and text[-1] in _DIGITS and _number_prefix(text)


class JsonConstraint:
    """Which tokens may come next for one generated answer; advanced with each chosen token.

    Args:
        token_texts: Each token id's decoded text; None for tokens that are never allowed (special
            tokens, partial UTF-8 characters).
        eos_ids: End-of-turn tokens, allowed only once the object is complete.
    """

    def __init__(self, token_texts: list[str | None], eos_ids: list[int]) -> None:
        self.token_texts = token_texts
        self.eos_ids = eos_ids
        self.state = JsonState()
        self._single = {text: i for i, text in enumerate(token_texts) if text is not None and len(text) == 1}

    def allows(self, token: int, remaining: int) -> bool:
        """Whether ``token`` may come next, leaving ``remaining`` tokens after it."""
        if token in self.eos_ids:
            return self.state.done
        text = self.token_texts[token] if token < len(self.token_texts) else None
        if not text:
            return False
        moved = self.state.feed(text)
        return moved is not None and len(moved.closing()) <= remaining

    def forced(self, remaining: int = 1 << 30) -> int:
        """A token that keeps the answer closable: the next character of the shortest closing, else any
        one-character token allowed (the end-of-turn token when the object is complete)."""
        closing = self.state.closing()
        if not closing:
            return self.eos_ids[0]
        token = self._single.get(closing[0])
        if token is not None:
            return token
        return next((t for t in self._single.values() if self.allows(t, remaining)), self.eos_ids[0])

    def advance(self, token: int) -> None:
        if token in self.eos_ids:
            return
        text = self.token_texts[token] if token < len(self.token_texts) else None
        moved = self.state.feed(text or "")
        if moved is not None:
            self.state = moved
