"""Atomic file writes: write to a temporary file beside the target, fsync, then rename.

A run killed while saving never leaves a truncated checkpoint, config or report behind. The file gets the
mode a plain ``open(path, "w")`` would give it: an existing file keeps its mode, a new one 0o666 & ~umask
(``mkstemp`` alone would leave every config, checkpoint and report at 0600).
"""
from __future__ import annotations

import glob
import json
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, IO


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it (/proc/self/status, Linux >= 4.7); elsewhere set and
    restored under a lock (os.umask is the only portable reader)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _target_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)  # an existing file keeps its mode, as open("w") would
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            os.fchmod(f.fileno(), _target_mode(path))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise _with_path(e, path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def append_jsonl(path: str | Path, obj: Any) -> None:
    """Append one JSON line and fsync, so metrics survive a kill -9."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "a") as f:
            f.write(json.dumps(obj, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise _with_path(e, path)


def _with_path(e: BaseException, path: Path) -> BaseException:
    """A write error without a file name (ENOSPC on write/fsync) gets the target's, so its message names it."""
    if isinstance(e, OSError) and e.filename is None and e.errno is not None:
        return OSError(e.errno, e.strerror, str(path))
    return e


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line from a kill mid-write: ignore it
    return rows


def jsonl_text(rows: list[Any]) -> str:
    """The text ``append_jsonl`` would have written for ``rows``, one line each."""
    return "".join(json.dumps(r, default=str) + "\n" for r in rows)


def write_jsonl(path: str | Path, rows: list[Any]) -> None:
    """Replace a JSON-lines file atomically with ``rows`` (drops any torn line)."""
    atomic_write_text(path, jsonl_text(rows))


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files an interrupted :func:`atomic_write` of ``path`` left behind.

    Only for a file a single process writes (a run's checkpoints): a temporary of a write in progress
    elsewhere would be removed too."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def portable_path(path: str | Path) -> str:
    """A path as it may be stored or shown beside results: relative to the working directory when inside it,
    else under ``~`` when inside the home folder; a relative path is kept as given."""
    p = Path(path)
    if not p.is_absolute():
        return str(path)
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        for a, b in ((p, base), (p.resolve(), base.resolve())):
            try:
                return prefix + str(a.relative_to(b))
            except ValueError:
                continue
    return str(p)
