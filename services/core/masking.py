"""The one masking choke point: every text that leaves the process passes `mask_text` (or `mask`
for structures) on its way out: CLI output, journal, audit, logs, traces, notifications, errors.

Two defences, applied in this order:
1. Forms: a password wherever a URL or DSN can carry one, whatever the value: `scheme://user:pw@`
   (any scheme, an empty user too), keyword DSNs (`password=pw`, `password='a b'`), queries
   (`?password=pw`, `&token=pw`), NAME=value and "name": "value" with a secret-looking name.
2. Literals: every value the config resolved from a `${VAR}` reference, and every `SecretStr` in
   it, registered when the config is parsed (`register`). They are masked wherever they sit, in
   whatever field they landed, including after a library reshaped the URL around them.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, TextIO, TypeVar

from pydantic import BaseModel, SecretStr

MASK = "**********"
# Shorter values are not registered: masking every "3000" or "true" would garble all output, and
# a value that short is no secret worth the name (the forms above still mask it in a URL or DSN).
MIN_LITERAL = 6

_SECRET_KEY = re.compile(
    r"password|passwd|secret|token|api[_-]?key|credential|database_url|redis_url|webhook", re.I)
_SECRET_NAME = r"[A-Za-z_]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|credential)[A-Za-z0-9_]*"
_FORMS = [
    # scheme://[user]:password@ (redis://:pw@host, postgresql+psycopg2://u:pw@h, rediss://...)
    re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>[^@\s]+)(?P<tail>@)", re.I),
    # name='quoted value' / name="quoted value" (keyword DSN, shell, repr) and JSON "name": "value"
    re.compile(rf"""(?P<head>\b{_SECRET_NAME}["']?\s*[=:]\s*(?P<q>['"]))(?P<secret>(?:\\.|(?!(?P=q)).)*)(?P<tail>(?P=q))""",
               re.I),
    # name=value unquoted: keyword DSN (up to a space), query string (up to & or #), env assignment
    re.compile(rf"(?P<head>\b{_SECRET_NAME}\s*=\s*)(?P<secret>[^\s&#'\",;)}}\]]+)(?P<tail>)", re.I),
]

# What each form's match must contain (lower case): an ASCII text holding none of a form's hints
# cannot match it, so the form's regex (tens of microseconds per line) is skipped. Non-ASCII text
# always runs every form: re.I folds a few non-ASCII letters (e.g. U+212A KELVIN SIGN to k).
_NAME_HINTS = ("pass", "pwd", "secret", "token", "key", "credential")  # in every _SECRET_NAME
_FORM_HINTS = [("://",), _NAME_HINTS, _NAME_HINTS]

_lock = threading.Lock()
_literals: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(values: Iterable[str]) -> None:
    """Mask these literal values from now on, in this process (with their URL-encoded forms, and
    the password inside any that is a URL or a DSN)."""
    global _pattern
    found: set[str] = set()
    for value in values:
        for part in (value, *_passwords(value)):
            found.update({part, urllib.parse.quote(part, safe=""), urllib.parse.unquote(part)})
    found = {v for v in found if len(v) >= MIN_LITERAL and v != MASK}
    with _lock:
        if found <= _literals:
            return
        _literals.update(found)
        # Longest first: a URL is masked whole before the password inside it would be.
        ordered = sorted(_literals, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in ordered))


def register_config(model: BaseModel) -> None:
    """Every SecretStr in a loaded config (the ${VAR} values are registered as they resolve)."""
    register(_secret_values(model))


def registered() -> frozenset[str]:
    return frozenset(_literals)


def forget() -> None:
    """Drop every registered literal (tests only)."""
    global _pattern
    with _lock:
        _literals.clear()
        _pattern = None


def mask_text(text: str) -> str:
    """`text` with every password form and every registered secret replaced by MASK."""
    if not text:
        return text
    folded = text.lower() if text.isascii() else None
    for form, hints in zip(_FORMS, _FORM_HINTS, strict=True):
        # MASK has no letters: a form's sub never makes a hint appear for the forms after it.
        if folded is None or any(hint in folded for hint in hints):
            text = form.sub(_masked, text)
    pattern = _pattern
    return pattern.sub(MASK, text) if pattern is not None else text


def mask(value: Any, key: str = "") -> Any:
    """A copy of value safe to print or store: SecretStr, secret-named keys, every string through
    `mask_text`. Mappings, lists and tuples are copied; other values returned as they are."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, Enum):  # a StrEnum is a str, but never a secret: keep its type
        return value
    if isinstance(value, Mapping):
        return {k: mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(mask(v, key) for v in value)
    if isinstance(value, list):
        return [mask(v, key) for v in value]
    if isinstance(value, str):
        if key and _SECRET_KEY.search(key) and value:
            return MASK
        return mask_text(value)
    return value


E = TypeVar("E")


def mask_fields(event: E, keep: Iterable[str] = ("op_id", "step_id", "env", "expected")) -> E:
    """A copy of a dataclass (an operation's event) with every text field masked; `keep` as is."""
    if not dataclasses.is_dataclass(event) or isinstance(event, type):
        return event
    changes = {f.name: mask(getattr(event, f.name)) for f in dataclasses.fields(event)
               if f.name not in keep and isinstance(getattr(event, f.name), (str, Mapping, list, tuple))}
    return dataclasses.replace(event, **changes)


class MaskedStream:
    """A text stream whose every write is masked first (the CLI's stdout and stderr): whatever a
    command prints, a warning or a traceback, passes here. Everything else goes to the stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(mask_text(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _masked(match: re.Match[str]) -> str:
    if not match["secret"] or match["secret"] == MASK:
        return match[0]
    return f"{match['head']}{MASK}{match['tail']}"


def _passwords(value: str) -> list[str]:
    """The password(s) a URL or a DSN carries, as written (their decoded forms are added by the caller)."""
    found = []
    for form in _FORMS:
        found += [m["secret"] for m in form.finditer(value) if m["secret"]]
    return found


def _secret_values(node: Any) -> Iterable[str]:
    if isinstance(node, SecretStr):
        yield node.get_secret_value()
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _secret_values(getattr(node, name))
    elif isinstance(node, Mapping):
        for item in node.values():
            yield from _secret_values(item)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from _secret_values(item)
