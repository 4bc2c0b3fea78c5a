"""Where a study lives: storage URLs -> Optuna storages (a registry by URL scheme).

- ``sqlite:///path.db`` (the default, ``runs/<study>/study.db``): embedded, nothing to start. Several
  local workers share it safely: every connection waits up to 60 s for SQLite's write lock instead of
  failing with "database is locked", and trials write a handful of rows per epoch.
- ``postgresql://user:password@host:5432/db``: for workers on several machines (driver: psycopg 3).
- ``journal:///abs/path.log`` or ``journal:relative/path.log``: Optuna's append-only journal file
  (``JournalStorage`` + ``JournalFileBackend``), safe for concurrent local writers; no heartbeats.

SQLite and PostgreSQL are RDB storages: a running trial sends a heartbeat every
``heartbeat.interval`` seconds; one silent for ``heartbeat.grace_period`` (its worker died) is marked
failed and re-queued by ``RetryHeartbeatStaleTrialCallback``; the retry resumes from its checkpoint.
A URL's password is never printed or stored: see :func:`redact_url`.
"""
from __future__ import annotations

import contextlib
import re
import sqlite3
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import optuna
from optuna.storages import BaseStorage

from ddpm.errors import DDPMError
from ddpm.registry import Registry


class StorageError(DDPMError):
    """A storage URL is malformed or its server cannot be reached."""


# one redaction implementation for the whole project (ddpm/redact.py); re-exported for the sweep modules
from ddpm.redact import redact_text, redact_url, secrets_of, url_password  # noqa: E402,F401


@dataclass(frozen=True)
class Heartbeat:
    interval: int = 10
    grace_period: int = 30
    max_retry: int = 2


StorageOpener = Callable[[str, Optional[Heartbeat]], BaseStorage]
STORAGES: Registry[StorageOpener] = Registry("storage scheme")
register_storage: Callable[[str], Callable[[StorageOpener], StorageOpener]] = STORAGES.register


def default_storage_url(out_dir: str | Path, study: str) -> str:
    return f"sqlite:///{Path(out_dir) / study / 'study.db'}"


def local_study_storages(out_dir: str | Path = "runs") -> list[str]:
    """The studies on disk: URLs of the default per-study storages ``<out_dir>/<study>/study.db``."""
    return [default_storage_url(out_dir, p.parent.name) for p in sorted(Path(out_dir).glob("*/study.db"))]


def scheme_of(url: str) -> str:
    head = url.split(":", 1)[0].lower() if ":" in url else ""
    return head.split("+", 1)[0]


def uses_heartbeat(url: str) -> bool:
    return scheme_of(url) in ("sqlite", "postgresql")


def _rdb(url: str, engine_kwargs: dict, heartbeat: Optional[Heartbeat]) -> BaseStorage:
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    kwargs: dict = {}
    if heartbeat is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retry, inherit_intermediate_values=True)
        kwargs = dict(heartbeat_interval=heartbeat.interval, grace_period=heartbeat.grace_period,
                      heartbeat_stale_trial_callback=retry)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)


@register_storage("sqlite")
def _sqlite(url: str, heartbeat: Optional[Heartbeat]) -> BaseStorage:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path:
        raise StorageError(f"storage {url!r}: a SQLite URL looks like sqlite:///runs/study.db (three slashes)")
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _check_sqlite_file(url, Path(path.split("?", 1)[0]))
    # wait for the write lock (seconds) rather than failing when several workers write at once
    return _rdb(url, {"connect_args": {"timeout": 60}}, heartbeat)


def check_storage_file(url: str) -> None:
    """For a SQLite URL whose file exists: the read-only integrity check below (a StorageError when the file
    is damaged); nothing for other storages. Callers run it before creating anything beside the file."""
    file = local_storage_file(url)
    if file is not None and scheme_of(url) == "sqlite":
        _check_sqlite_file(url, file)


def _check_sqlite_file(url: str, path: Path) -> None:
    """SQLite finds a damaged page only when a query reaches it, possibly after Optuna has written to the
    file: an existing file is checked first (``PRAGMA quick_check``, opened read-only so it is never
    modified; milliseconds for a study's few MB). A file SQLite cannot open for other reasons is left to
    the normal path."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
    except sqlite3.Error:
        return
    try:
        rows = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        if any(w in str(e).lower() for w in _CORRUPT):
            raise StorageError(_unreadable(url, e)) from None
        return
    finally:
        con.close()
    problems = [r[0] for r in rows if r and r[0] != "ok"]
    if problems:
        raise StorageError(_unreadable(url, sqlite3.DatabaseError(f"database disk image is malformed: {problems[0]}")))


def postgres_driver_url(url: str) -> str:
    """``postgres[ql][+driver]://...`` as SQLAlchemy's psycopg 3 URL (SQLAlchemy 2.1 maps plain postgresql:// to it too)."""
    return re.sub(r"^postgres(ql)?(\+[a-z0-9]+)?://", "postgresql+psycopg://", url)


@register_storage("postgresql")
def _postgresql(url: str, heartbeat: Optional[Heartbeat]) -> BaseStorage:
    return _rdb(postgres_driver_url(url), {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}, heartbeat)


register_storage("postgres")(_postgresql)


@register_storage("journal")
def _journal(url: str, heartbeat: Optional[Heartbeat]) -> BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = url.split(":", 1)[1]
    if path.startswith("//"):
        path = path[2:]  # journal:///abs -> /abs, journal://rel -> rel
    if not path:
        raise StorageError(f"storage {url!r}: a journal URL looks like journal:runs/study.log or journal:///abs/path.log")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(path))


def open_storage(url: str, heartbeat: Optional[Heartbeat] = None) -> BaseStorage:
    """An Optuna storage for ``url``, connected (raises StorageError with the redacted URL if not)."""
    scheme = scheme_of(url)
    if scheme not in STORAGES:
        raise StorageError(f"storage {redact_url(url)!r}: unknown scheme {scheme or '(none)'!r}; "
                           f"valid: sqlite:///path.db, postgresql://user:pw@host/db, journal:path.log")
    try:
        return STORAGES[scheme](url, heartbeat)
    except StorageError:
        raise
    except Exception as e:  # sqlalchemy OperationalError, psycopg errors, OSError, ...
        db = _database_error(e)
        if db is not None and any(w in _first_line(db, url).lower() for w in _CORRUPT):
            raise StorageError(_unreadable(url, e)) from None
        raise StorageError(f"storage {redact_url(url)!r} is unreachable: {_first_line(e, url)}") from None


def local_storage_file(url: str) -> Optional[Path]:
    """The file behind a SQLite or journal URL; None for servers and in-memory SQLite."""
    scheme = scheme_of(url)
    if scheme == "sqlite":
        path = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
        return Path(path) if path and path != ":memory:" else None
    if scheme == "journal":
        path = url.split(":", 1)[1]
        return Path(path[2:] if path.startswith("//") else path) if path else None
    return None


def open_storage_readonly(url: str) -> BaseStorage:
    """Like :func:`open_storage`, for commands that only read (``ddpm trials``, ``studies``, ``report``):
    a SQLite or journal file that does not exist is an error, never created (nor its folders), and a
    SQLite file is opened read-only (an empty or foreign file is not given Optuna's tables)."""
    file = local_storage_file(url)
    if file is None:
        return open_storage(url)
    if not file.is_file():
        what = "is a folder, not a storage file" if file.is_dir() else "does not exist"
        raise StorageError(f"storage {redact_url(url)!r}: {file} {what} (nothing was created); "
                           f"check the path, or list studies with `ddpm studies`")
    if scheme_of(url) != "sqlite":
        return open_storage(url)  # a journal file is only read until something writes a trial
    _check_sqlite_file(url, file)
    from urllib.parse import quote

    uri = f"file:{quote(str(file.resolve()))}?mode=ro"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False)

    try:
        return _rdb(f"sqlite:///{file}", {"creator": connect}, None)
    except Exception as e:
        if "readonly database" in str(e):  # Optuna tried to create its tables: not a study storage
            raise StorageError(f"storage {redact_url(url)!r}: {file} holds no Optuna study tables "
                               f"(left unchanged)") from None
        raise StorageError(_unreadable(url, e)) from None


# SQLite's words for a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB)
_CORRUPT = ("malformed", "not a database", "corrupt", "encrypted")


def _database_error(e: BaseException) -> Optional[BaseException]:
    """The database driver's error behind ``e`` (Optuna wraps it in StorageInternalError), if any."""
    import sqlalchemy.exc

    seen = 0
    cur: Optional[BaseException] = e
    while cur is not None and seen < 8:
        if isinstance(cur, (sqlalchemy.exc.DatabaseError, sqlite3.DatabaseError)):
            return cur
        cur, seen = cur.__cause__ or cur.__context__, seen + 1
    return None


def _unreadable(url: str, e: BaseException) -> str:
    db = _database_error(e) or e
    line = _first_line(db, url)
    if scheme_of(url) == "sqlite" and any(w in line.lower() for w in _CORRUPT):
        path = local_storage_file(url) or url
        return (f"storage {redact_url(url)!r}: {path} is corrupt or not a SQLite database ({line}); "
                f"it was left untouched: restore it from a copy, or start the study under another name")
    return f"storage {redact_url(url)!r} cannot be read: {line}"


@contextlib.contextmanager
def reading(url: str) -> Iterator[None]:
    """Around calls that read a storage: SQLite reports a damaged file lazily, on the first query, so a
    database error there becomes one StorageError line naming the file (the file is never written)."""
    try:
        yield
    except StorageError:
        raise
    except Exception as e:
        if _database_error(e) is None:
            raise
        raise StorageError(_unreadable(url, e)) from None


def _first_line(e: BaseException, url: str) -> str:
    """The driver's first error line with the URL's password masked (raw and decoded, as drivers echo it)."""
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    pw = _userinfo_password(url)
    if pw and "@" in pw:  # SQLAlchemy ends the password at the first '@': the rest became the host name
        line = "the password holds a raw '@' (the driver reads the text after it as the host); write it as %40"
    return redact_text(f"{type(e).__name__}: {line}", secrets_of(url))[:300]


def _userinfo_password(url: str) -> str | None:
    """The raw password of ``url`` before any query (an '@' in the query is not part of it)."""
    return url_password(url.split("?", 1)[0])
