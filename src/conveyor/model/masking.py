"""Secret masking that holds: multi-line values, their usual encodings, across chunk boundaries.

`Masker` knows the secrets and every form a build is likely to print them in: the value
itself (and its CRLF form), each long line of a multi-line value (a PEM key printed with
`head`), a JSON value re-serialized (compact, indented) and its long string values, base64 (standard and URL-safe, with or without padding, and wrapped at 76 columns
as `base64` prints it), JSON-escaped (`json.dumps`), and URL-encoded. `StreamMasker` feeds
text through a Masker as it arrives in chunks or lines and holds back only the tail that
could still be the start of a secret, so a secret split over two writes is masked too.
Pure: no I/O.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET = 3  # shorter values would mask ordinary text
MIN_LINE = 8  # a line of a multi-line secret masked on its own when at least this long


def variants(secret: str) -> set[str]:
    """The forms of `secret` a log may show."""
    value = secret.strip("\r\n")
    if len(value) < MIN_SECRET:
        return set()
    out = {value, secret.strip()}
    if "\n" in value:
        out.add(value.replace("\r\n", "\n").replace("\n", "\r\n"))
        for line in value.splitlines():
            line = line.strip()
            if len(line) >= MIN_LINE and not line.startswith("-----"):
                out.add(line)
    out |= _json_forms(value)
    raw = value.encode("utf-8")
    for enc in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = enc.decode("ascii")
        out.add(text)
        out.add(text.rstrip("="))
        if len(text) > 76:
            out.add("\n".join(text[i : i + 76] for i in range(0, len(text), 76)))
    out.add(json.dumps(value)[1:-1])
    out.add(json.dumps(value, ensure_ascii=False)[1:-1])
    out.add(quote(value, safe=""))
    out.add(quote_plus(value, safe=""))
    return {v for v in out if len(v) >= MIN_SECRET}


def _json_forms(value: str) -> set[str]:
    """A JSON secret printed another way (`jq -c`, re-indented), and its long string values."""
    if not value.lstrip().startswith(("{", "[")):
        return set()
    try:
        data = json.loads(value)
    except ValueError:
        return set()
    out = {json.dumps(data), json.dumps(data, separators=(",", ":")), json.dumps(data, indent=2)}
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and len(item) >= MIN_LINE:
            out.add(item)
    return out


class Masker:
    """Replaces every known form of every secret by ***, longest first."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.forms: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str) -> None:
        if not secret or secret in self.secrets:
            return
        self.secrets.append(secret)
        known = set(self.forms)
        self.forms.extend(sorted(variants(secret) - known))
        self.forms.sort(key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.forms)

    def mask(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    __call__ = mask

    def contains(self, text: str) -> bool:
        """Whether `text` shows any form of a secret."""
        return any(form in text for form in self.forms)

    def pending(self, text: str) -> int:
        """Where the longest tail of `text` that is a proper prefix of a form starts (or len)."""
        start = len(text)
        for form in self.forms:
            lo = max(0, len(text) - len(form) + 1)
            pos = text.find(form[0], lo)
            while pos != -1 and pos < start:
                if form.startswith(text[pos:]):
                    start = pos
                    break
                pos = text.find(form[0], pos + 1)
        return start


class StreamMasker:
    """Masks text written in pieces: `feed` returns what is safe to show now, `flush` the rest.

    The text held back (unmasked, until the next piece) is the tail that may still become a
    secret, and any secret crossing that point: at most a few secrets' length.
    """

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self._held = ""

    def feed(self, text: str) -> str:
        if not self.masker:
            out, self._held = self._held + text, ""
            return out
        buf = self._held + text
        cut = self.masker.pending(buf)
        moved = True
        while moved:  # never cut through a secret: hold back any form that straddles the cut
            moved = False
            for form in self.masker.forms:
                pos = buf.find(form, max(0, cut - len(form) + 1))
                if pos != -1 and pos < cut < pos + len(form):
                    cut, moved = pos, True
        self._held = buf[cut:]
        return self.masker.mask(buf[:cut])

    def flush(self) -> str:
        out, self._held = self.masker.mask(self._held), ""
        return out
