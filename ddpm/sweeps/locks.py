"""One lock per study, shared by every process that works on it (a registry by storage URL scheme).

Optuna's own "is it there yet?" checks (``enqueue_trial(skip_if_exists=True)``, popping a waiting
trial, failing a stale one) read and then write in two steps; on SQLite the read takes no lock, so two
workers can both see a trial waiting and both run it. The runner therefore holds the study lock while
it creates the study and enqueues its trials, and from "is there a trial to start?" until the trial it
started is claimed (see ``ddpm.sweeps.runner``):

- ``sqlite:///path.db`` and ``journal:path.log``: ``flock`` on ``<path>.ddpm-lock`` beside the file
  (processes of one machine, as SQLite itself; released by the kernel if the process dies).
- ``postgresql://``: a session-level advisory lock (``pg_advisory_lock``) keyed by the study name, for
  workers on several machines (released by the server if the connection drops).
"""
from __future__ import annotations

import threading
import zlib
from pathlib import Path
from typing import Any, Callable, Optional

from ddpm.registry import Registry
from ddpm.sweeps.storage import (StorageError, _first_line, local_storage_file, postgres_driver_url, redact_url,
                                 scheme_of)


class StudyLock:
    """Acquire/release (idempotent) around a study's check-then-write steps; also a context manager."""

    def __init__(self, acquire: Callable[[], Any], release: Callable[[Any], None]) -> None:
        self._acquire, self._release = acquire, release
        self._held: Optional[Any] = None
        self._busy = False

    @property
    def held(self) -> bool:
        return self._busy

    def acquire(self) -> "StudyLock":
        if not self._busy:
            self._held = self._acquire()
            self._busy = True
        return self

    def release(self) -> None:
        if self._busy:
            handle, self._held, self._busy = self._held, None, False
            self._release(handle)

    def __enter__(self) -> "StudyLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


LockFactory = Callable[[str, str], StudyLock]
LOCKS: Registry[LockFactory] = Registry("lock scheme")
register_lock: Callable[..., Callable[[LockFactory], LockFactory]] = LOCKS.register


def _file_lock(path: Path) -> StudyLock:
    import fcntl

    def acquire() -> Any:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # waits; each open() is its own lock, so threads serialize too
        return f

    def release(f: Any) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()
    return StudyLock(acquire, release)


_MEMORY = threading.Lock()


@register_lock("sqlite", "journal")
def _local_file_lock(url: str, study: str) -> StudyLock:
    path = local_storage_file(url)
    if path is None:  # in-memory SQLite: one process by definition
        return StudyLock(lambda: _MEMORY.acquire(), lambda _: _MEMORY.release())
    return _file_lock(path.with_name(path.name + ".ddpm-lock"))


_ENGINES: dict[str, Any] = {}


@register_lock("postgresql", "postgres")
def _postgres_lock(url: str, study: str) -> StudyLock:
    import sqlalchemy

    driver_url = postgres_driver_url(url)
    if driver_url not in _ENGINES:
        _ENGINES[driver_url] = sqlalchemy.create_engine(driver_url, poolclass=sqlalchemy.pool.NullPool,
                                                        connect_args={"connect_timeout": 10})
    engine = _ENGINES[driver_url]
    key = zlib.crc32(f"ddpm-sweeps/{study}".encode()) - 2**31  # a signed 32-bit key, one per study name

    def acquire() -> Any:
        try:
            conn = engine.connect()
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:a, :b)"), {"a": 0x0DD9, "b": key})
            conn.commit()
        except Exception as e:  # the server is down or refuses us: the message open_storage gives (password hidden)
            raise StorageError(f"storage {redact_url(url)!r} is unreachable: {_first_line(e, url)}") from None
        return conn

    def release(conn: Any) -> None:
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:a, :b)"), {"a": 0x0DD9, "b": key})
            conn.commit()
        finally:
            conn.close()
    return StudyLock(acquire, release)


def study_lock(url: str, study: str) -> StudyLock:
    """The lock of ``study`` in the storage at ``url`` (not yet acquired)."""
    scheme = scheme_of(url)
    if scheme not in LOCKS:
        return StudyLock(lambda: None, lambda _: None)  # open_storage has already rejected unknown schemes
    return LOCKS[scheme](url, study)
