"""Scrub secrets before anything leaves the machine (W&B config, reports, printed storage URLs).

``redact_url("postgresql://ddpm:s3cret@db:5432/optuna")`` -> ``"postgresql://ddpm:***@db:5432/optuna"``;
``redact(obj)`` walks dicts, lists and tuples, applies ``redact_url`` to every string and masks the value of
every key that names a secret (password, secret, token, api_key, ...).
"""
from __future__ import annotations

import re
from typing import Any

MASK = "***"

# scheme://user:password@host  (RFC 3986 userinfo; the password part is everything up to the last '@')
_URL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)(?P<pw>[^\s@/]*(?:@[^\s@/]*)*)(?P<at>@)")
# key=value pairs inside libpq/ODBC style strings: "host=db password=s3cret"
_KV_SECRET = re.compile(r"(?P<key>\b(?:password|passwd|pwd)\s*=\s*)(?P<pw>'[^']*'|\"[^\"]*\"|[^\s;&]+)", re.IGNORECASE)
_SECRET_KEY = re.compile(r"pass(word|wd)?$|pwd$|secret|token|api[_-]?key|credential", re.IGNORECASE)


def redact_url(s: str) -> str:
    """The string with the password of every ``scheme://user:password@host`` and ``password=...`` masked."""
    s = _URL_USERINFO.sub(lambda m: f"{m['head']}{MASK}{m['at']}" if m["pw"] else m[0], s)
    return _KV_SECRET.sub(lambda m: f"{m['key']}{MASK}", s)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(str(key)))


def redact(obj: Any) -> Any:
    """A copy of ``obj`` (dicts, lists, tuples, strings, scalars) with secrets masked."""
    if isinstance(obj, str):
        return redact_url(obj)
    if isinstance(obj, dict):
        return {k: (MASK if is_secret_key(k) and v not in (None, "") else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    return obj
