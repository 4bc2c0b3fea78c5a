"""``points.csv``: one row per entry x point x omega, appended (and flushed) as each point is scored, so a
Ctrl-C loses nothing scored. An entry is finished when it has a ``final`` row; a rerun into the same folder
keeps finished entries and drops the rows of an unfinished one (it trains again from the start: the clock of
a half-run cannot be resumed)."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from ddpm.errors import ConfigError
from ddpm.io import atomic_write_text

COLUMNS = ("label", "final", "train_seconds", "images_seen", "epoch", "step", "n", "sampler", "steps", "eta",
           "split", "seed", "omega", "accuracy", "accuracy_lo", "accuracy_hi", "fid", "fid_lo", "fid_hi", "floor",
           "score_seconds")
FLOATS = ("train_seconds", "epoch", "eta", "omega", "accuracy", "accuracy_lo", "accuracy_hi", "fid", "fid_lo",
          "fid_hi", "floor", "score_seconds")
INTS = ("final", "images_seen", "step", "n", "seed")
SETTINGS = ("n", "sampler", "steps", "eta", "split", "seed")   # the same for every row of one folder


def _typed(row: dict[str, str], path: Path, line: int) -> dict[str, Any]:
    out: dict[str, Any] = dict(row)
    try:
        for k in FLOATS:
            out[k] = float(row[k])
        for k in INTS:
            out[k] = int(row[k])
        out["steps"] = int(row["steps"]) if row["steps"] not in ("", "None") else None
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: line {line} is not a time-to-quality point ({COLUMNS[0]}, ..., "
                          f"{COLUMNS[-1]}); write to another --out folder") from None
    return out


def read_points(path: Path) -> list[dict[str, Any]]:
    """Every row of ``points.csv`` (typed); [] when there is none. A torn last line (a kill mid-write) is dropped."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is not None and tuple(reader.fieldnames) != COLUMNS:
            raise ConfigError(f"{path}: columns {','.join(reader.fieldnames)} are not a time-to-quality "
                              f"points file's; write to another --out folder")
        rows = list(reader)
    out = []
    for i, row in enumerate(rows):
        if None in row.values() and i == len(rows) - 1:
            break
        out.append(_typed(row, path, i + 2))
    return out


def finished_labels(rows: list[dict[str, Any]]) -> set[str]:
    return {r["label"] for r in rows if r["final"]}


def check_same_settings(rows: list[dict[str, Any]], scoring: dict[str, Any], path: Path) -> None:
    """Rows already in the folder were scored like this file's points (else they would not compare)."""
    for r in rows:
        for k in SETTINGS:
            if r[k] != scoring[k]:
                raise ConfigError(f"{path}: entry {r['label']} was scored with {k} = {r[k]!r}, the benchmark "
                                  f"file says {scoring[k]!r}; write to another --out folder")


def keep_only(path: Path, rows: list[dict[str, Any]], labels: set[str]) -> list[dict[str, Any]]:
    """Rewrite ``points.csv`` with the rows of ``labels`` only (atomically); returns them."""
    kept = [r for r in rows if r["label"] in labels]
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows({k: r[k] for k in COLUMNS} for r in kept)
    atomic_write_text(path, text.getvalue())
    return kept


def append_points(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows (header first when the file is new), flushed to disk before returning."""
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        w.writerows({k: r[k] for k in COLUMNS} for r in rows)
        f.flush()
        os.fsync(f.fileno())
