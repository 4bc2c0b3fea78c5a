"""How numbers are shown to people (console tables, reports): one formatter for values, one for durations,
and which stored URLs may be shown as links.

Intervals and differences with uncertainty have their own rules (digits set by the interval's width):
``ddpm.sweeps.verdict.fmt_interval``.
"""
from __future__ import annotations

import math
from typing import Any, Optional


def fmt(v: Any, digits: int = 4, missing: str = "–") -> str:
    """A value as shown: floats to ``digits`` significant figures, ``nan`` for NaN, booleans lower case,
    lists comma-separated, ``missing`` for None (the console uses "-", the report "–")."""
    if v is None:
        return missing
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x, digits, missing) for x in v)
    return str(v)


def fmt_seconds(s: Optional[float]) -> str:
    if s is None:
        return "–"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def web_url(url: Any) -> bool:
    """True for an http(s) URL: the only kind shown as a link (a stored ``javascript:`` URL never is)."""
    return isinstance(url, str) and url.lower().startswith(("https://", "http://"))
