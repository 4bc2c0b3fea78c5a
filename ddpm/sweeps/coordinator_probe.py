"""What the machine and the PostgreSQL server did during one coordinator benchmark point
(``ddpm.sweeps.coordinator_bench``): CPU busy share of all cores (``/proc/stat``), the server's CPU seconds
(the postmaster and its backends, ``/proc``), its connections and lock waiters (``pg_stat_activity``,
sampled), and its counters (``pg_stat_database`` deltas: transactions, sessions, rows)."""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Optional

_DB_COUNTERS = ("xact_commit", "xact_rollback", "sessions", "tup_returned", "tup_fetched", "tup_inserted",
                "tup_updated", "tup_deleted", "deadlocks")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def _proc_cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds of ``pid`` (with ``children``: of its waited-for children too), 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / _TICK


def _children_of(ppid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        out.append(int(name))
            except (OSError, ValueError, IndexError):
                continue
    return out


class Probe:
    """Samples the server every ``every_s`` seconds in a thread between ``start()`` and ``stop()``."""

    def __init__(self, engine: Any, every_s: float = 0.5) -> None:
        self.engine, self.every_s = engine, every_s
        self.samples: list[tuple[int, int, int]] = []   # (connections, waiting on a lock, active)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.postmaster: Optional[int] = None

    def _query(self, sql: str) -> Any:
        import sqlalchemy

        with self.engine.connect() as c:
            return c.execute(sqlalchemy.text(sql)).fetchone()

    def _counters(self) -> dict[str, int]:
        row = self._query(f"SELECT {', '.join(_DB_COUNTERS)} FROM pg_stat_database WHERE datname = current_database()")
        return dict(zip(_DB_COUNTERS, (int(v or 0) for v in row)))

    def _server_cpu_s(self) -> float:
        if self.postmaster is None:
            return 0.0
        return _proc_cpu_s(self.postmaster, children=True) + sum(_proc_cpu_s(p) for p in _children_of(self.postmaster))

    def start(self) -> None:
        backend = int(self._query("SELECT pg_backend_pid()")[0])
        try:  # a server on this machine: its postmaster is our backend's parent
            with open(f"/proc/{backend}/stat") as f:
                self.postmaster = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            self.postmaster = None
        self.t0, self.cpu0, self.db0 = time.monotonic(), _cpu_jiffies(), self._counters()
        self.pg_cpu0 = self._server_cpu_s()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                row = self._query("SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock'), "
                                  "count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity "
                                  "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                self.samples.append((int(row[0]), int(row[1]), int(row[2])))
            except Exception:  # the server refused the probe too (too many clients): counted as missing
                self.samples.append((-1, -1, -1))

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        wall = time.monotonic() - self.t0
        busy, total = (b - a for a, b in zip(self.cpu0, _cpu_jiffies()))
        db = {k: v - self.db0[k] for k, v in self._counters().items()}
        ok = [s for s in self.samples if s[0] >= 0]
        return {"cpu_busy_pct": round(100 * busy / max(total, 1), 1), "cores": os.cpu_count(),
                "pg_cpu_s": round(self._server_cpu_s() - self.pg_cpu0, 2) if self.postmaster else None,
                "pg_connections_max": max((s[0] for s in ok), default=None),
                "pg_connections_mean": round(sum(s[0] for s in ok) / len(ok), 1) if ok else None,
                "pg_lock_waiters_max": max((s[1] for s in ok), default=None),
                "pg_active_mean": round(sum(s[2] for s in ok) / len(ok), 1) if ok else None,
                "probe_refused": len(self.samples) - len(ok), "probe_wall_s": round(wall, 2), "pg_stat_database": db}
