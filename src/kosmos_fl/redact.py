"""Text that leaves the process safely: no credentials in URIs, no control characters.

One helper for every place a URI is shown or sent (dashboard, ``/status``, ``start_train``, logs):
:func:`redact` drops the ``user:password@`` part of every URI in a string (and the ``password=``
of a libpq key/value DSN). :func:`printable` escapes control characters, so a newline in a
peer-supplied string cannot forge a log line. The bottom layer: logging and everything above use it.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s?#]*@")
_DSN_PASSWORD = re.compile(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")
# C0 and C1 controls, DEL, and the Unicode line/paragraph separators that some viewers break on
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def redact(text: str) -> str:
    """``text`` with the credentials of every URI in it removed (``scheme://user:pw@host`` ->
    ``scheme://host``; ``password=...`` -> ``password=***``)."""
    if "@" not in text and "=" not in text:
        return text
    return _DSN_PASSWORD.sub(r"\1***", _USERINFO.sub(r"\g<scheme>", text))


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, ...): one line, no terminal codes."""
    return _CONTROL.sub(_escape, text)


def safe(text: str) -> str:
    """Both: what a log line or an admin page may show of an untrusted or credential-bearing string."""
    return printable(redact(text))
