"""Scrub secrets before anything leaves the machine (W&B config and metadata, reports, printed storage URLs,
error messages). The one redaction implementation of the project: everything else calls these.

``redact_url("postgresql://ddpm:s3cret@db:5432/optuna")`` -> ``"postgresql://ddpm:***@db:5432/optuna"``;
``redact(obj)`` walks dicts, lists, tuples and dataclasses, applies ``redact_url`` to every string and masks the value of
every key that names a secret (password, secret, token, api_key, ...).

A URL's password is its userinfo after the first ':' up to the LAST '@' of the URL (RFC 3986 userinfo; a
password may hold '/', ':' and, unescaped, even '@'; when in doubt more is masked, never less). Drivers
report the percent-decoded password (``%2F`` -> ``/``), so ``secrets_of(url)`` gives both forms and
``redact_text(text, secrets)`` masks each of them wherever it occurs, on top of the URL rule.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Optional
from urllib.parse import unquote

MASK = "***"

# scheme://user:password@host inside free text: the password runs to the last '@' of the URL token (a token
# ends at white space or a quote, so "storage 'postgresql://u:p/w@h/db' is ..." masks only "p/w")
_URL_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*:)(?P<pw>[^\s'\"]*)(?P<at>@)")
# the same on a string known to be one URL (quotes and spaces may then be part of the password)
_WHOLE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^:/@]*:(?P<pw>.*)@", re.DOTALL)
# key=value pairs inside libpq/ODBC style strings: "host=db password=s3cret"
_KV_SECRET = re.compile(r"(?P<key>\b(?:password|passwd|pwd)\s*=\s*)(?P<pw>'[^']*'|\"[^\"]*\"|[^\s;&]+)", re.IGNORECASE)
_SECRET_KEY = re.compile(r"pass(word|wd)?$|pwd$|secret|token|api[_-]?key|credential", re.IGNORECASE)


def url_password(url: str) -> Optional[str]:
    """The raw (still percent-encoded) password of the URL ``url``; None when it has none."""
    m = _WHOLE_URL.search(url) if isinstance(url, str) else None
    return m["pw"] if m and m["pw"] else None


def secrets_of(url: Optional[str]) -> list[str]:
    """The forms in which the password of ``url`` may surface: raw and percent-decoded (longest first)."""
    pw = url_password(url) if url else None
    if not pw:
        return []
    forms = {pw, unquote(pw)}
    return sorted((f for f in forms if f), key=len, reverse=True)


def redact_url(s: str) -> str:
    """The string with the password of every ``scheme://user:password@host`` and ``password=...`` masked."""
    s = _URL_USERINFO.sub(lambda m: f"{m['head']}{MASK}{m['at']}" if m["pw"] else m[0], s)
    return _KV_SECRET.sub(lambda m: f"{m['key']}{MASK}", s)


def redact_text(s: str, secrets: Iterable[str] = ()) -> str:
    """``redact_url(s)``, then every known secret (e.g. ``secrets_of(url)``) masked wherever it occurs.

    A secret is masked even inside ordinary words (a password equal to a common word masks that word too):
    over-masking costs readability, under-masking a password."""
    s = redact_url(s)
    for secret in sorted({x for x in secrets if x}, key=len, reverse=True):
        s = s.replace(secret, MASK)
    return s


def redact_argv(argv: Iterable[str]) -> list[str]:
    """Process arguments safe to record: URL passwords masked, and each of them masked again wherever it
    recurs in another argument (decoded or not)."""
    argv = [str(a) for a in argv]
    secrets = [s for a in argv for s in secrets_of(a)]
    return [redact_text(a, secrets) for a in argv]


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(str(key)))


def redact(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of ``obj`` (dicts, lists, tuples, dataclass instances such as the report's sections and blocks,
    strings, scalars) with secrets masked."""
    secrets = tuple(secrets)
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    if isinstance(obj, dict):
        return {k: (MASK if is_secret_key(k) and v not in (None, "") else redact(v, secrets)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, secrets) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: redact(getattr(obj, f.name), secrets)
                                          for f in dataclasses.fields(obj) if f.init})
    return obj
