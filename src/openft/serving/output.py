"""Generated tokens -> the text (and logprobs) a client may be sent, for one choice. No torch.

* The text is the decoding of the tokens before the end-of-turn token.
* Stop strings: text is never sent past one. Up to ``max(len(stop)) - 1`` characters (and any
  trailing half of a UTF-8 character) are held back until the next tokens show they start no stop string.
* Logprob entries are sent with the text of their token: an entry goes out once all of its token's
  text has been sent, and at the end every entry whose token starts inside the final text.
* ``tokens_used`` counts what the choice generated, the end-of-turn token included, as usage does.
"""

from __future__ import annotations

from typing import Any

from openft.serving.backend import FinishReason


class ChoiceText:
    """The sendable text of one generated answer, fed token by token.

    Args:
        tokenizer: Decodes the tokens.
        stop: Stop strings (empty ones ignored).
    """

    def __init__(self, tokenizer: Any, stop: list[str] | tuple[str, ...]) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.tokens: list[int] = []
        self.tokens_used = 0
        self.sent = 0
        """Characters of text already sent."""
        self.stopped = False
        """A stop string was found: nothing more is sent."""
        self.text = ""
        self._entries: list[tuple[int, dict[str, Any]]] = []
        """(end offset of the token's text, its logprob entry) not sent yet."""

    def add(self, token: int, entry: dict[str, Any] | None) -> tuple[str, list[dict[str, Any]]]:
        """Take a generated (non end-of-turn) token; the new text and logprob entries that may be sent."""
        self.tokens.append(token)
        self.tokens_used += 1
        self.text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if entry is not None:
            self._entries.append((len(self.text), entry))
        return self._send(final=False)

    def end_of_turn(self) -> None:
        """The model ended its turn (the token counts in usage, not in the text)."""
        self.tokens_used += 1

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """The held-back text and entries, sent when the choice ends."""
        if self.stopped:
            return "", []
        return self._send(final=True)

    def reason(self, ended_turn: bool) -> FinishReason:
        return "stop" if self.stopped or ended_turn else "length"

    def _send(self, *, final: bool) -> tuple[str, list[dict[str, Any]]]:
        if self.stopped:
            return "", []
        text = self.text
        cuts = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if cuts:
            self.stopped = True
            text = text[: min(cuts)]
        elif not final:
            text = text.rstrip("\ufffd")  # the first bytes of a character still being generated
            text = text[: max(len(text) - self.hold, 0)]
        piece = text[self.sent :] if len(text) > self.sent else ""
        self.sent = max(self.sent, len(text))
        done = final or self.stopped
        entries: list[dict[str, Any]] = []
        while self._entries:
            end, entry = self._entries[0]
            start = end - len(entry["token"])
            if end <= self.sent or (done and start < self.sent):
                entries.append(entry)
                self._entries.pop(0)
            else:
                break
        if done:
            self._entries.clear()
        return piece, entries
