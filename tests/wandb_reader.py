"""Read an offline W&B run back from disk, without W&B's own (network-bound) API.

``run-<id>.wandb`` is a LevelDB-style log: a 7-byte file header (``:W&B``, magic 0xBEE1 little-endian,
version 0), then 32 KiB blocks of chunks. Each chunk has a 7-byte header (CRC-32 of type byte + payload,
uint32 LE; payload length, uint16 LE; type: FULL=1, FIRST=2, MIDDLE=3, LAST=4) and a block's tail under 7
bytes is zero padding. A record is a serialized ``wandb.proto.wandb_internal_pb2.Record``.
"""
from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    if data[:len(FILE_HEADER)] != FILE_HEADER:
        raise ValueError(f"{path}: not a W&B transaction log (header {data[:7]!r})")
    records, parts, pos = [], [], len(FILE_HEADER)
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:          # block trailer: zero padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + CHUNK_HEADER])
        if kind == 0 and length == 0:    # preallocated zeros at the end of the file
            break
        payload = data[pos + CHUNK_HEADER:pos + CHUNK_HEADER + length]
        if len(payload) < length:        # a chunk still being written
            break
        if zlib.crc32(bytes([kind]) + payload) & 0xFFFFFFFF != crc:
            raise ValueError(f"{path}: bad chunk checksum at byte {pos}")
        pos += CHUNK_HEADER + length
        if kind in (FULL, FIRST):
            parts = [payload]
        else:
            parts.append(payload)
        if kind in (FULL, LAST):
            rec = pb.Record()
            rec.ParseFromString(b"".join(parts))
            records.append(rec)
            parts = []
    return records


def _key(item: Any) -> str:
    return item.key if item.key else ".".join(item.nested_key)


@dataclass
class OfflineRun:
    dir: Path
    run: pb.RunRecord
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    artifacts: list[pb.ArtifactRecord] = field(default_factory=list)
    exit_code: int | None = None

    @property
    def group(self) -> str:
        return self.run.run_group

    @property
    def job_type(self) -> str:
        return self.run.job_type

    @property
    def name(self) -> str:
        return self.run.display_name

    @property
    def tags(self) -> list[str]:
        return list(self.run.tags)

    def images(self) -> list[Path]:
        return sorted((self.dir / "files" / "media" / "images").glob("**/*.png"))


def read_offline_run(run_dir: str | Path, wait_s: float = 60.0) -> OfflineRun:
    """``run_dir`` is an ``offline-run-*`` folder (or a folder holding exactly one ``run-*.wandb``).

    ``run.finish()`` returns before W&B's service has flushed and closed the log, so this waits (up to
    ``wait_s``) until the log ends with the run's exit record.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            out = _parse_offline_run(Path(run_dir))
        except (ValueError, FileNotFoundError):  # the log is created and closed by W&B's service, later
            out = None
        if (out is not None and out.exit_code is not None) or time.monotonic() > deadline:
            return out if out is not None else _parse_offline_run(Path(run_dir))
        time.sleep(0.1)


def _parse_offline_run(run_dir: Path) -> OfflineRun:
    logs = sorted(run_dir.glob("run-*.wandb"))
    if len(logs) != 1:
        raise FileNotFoundError(f"{run_dir}: expected one run-*.wandb, found {logs}")
    out: OfflineRun | None = None
    for rec in read_records(logs[0]):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            if out is None:
                out = OfflineRun(run_dir, rec.run)
            elif rec.run.tags:  # a later run record is an update (e.g. run.tags set after init)
                del out.run.tags[:]
                out.run.tags.extend(rec.run.tags)
            for item in rec.run.config.update:
                out.config[_key(item)] = json.loads(item.value_json)
        elif out is None:
            continue
        elif kind == "config":
            for item in rec.config.update:
                out.config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            out.history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for item in rec.summary.update:
                out.summary[_key(item)] = json.loads(item.value_json)
            for item in rec.summary.remove:
                out.summary.pop(_key(item), None)
        elif kind == "files":
            out.files += [f.path for f in rec.files.files]
        elif kind == "artifact":
            out.artifacts.append(rec.artifact)
        elif kind == "exit":
            out.exit_code = rec.exit.exit_code
    if out is None:
        raise ValueError(f"{logs[0]}: no run record")
    return out


def offline_runs(root: str | Path) -> list[Path]:
    """Every ``offline-run-*`` folder under ``root`` (e.g. a run folder's ``wandb/``), oldest first."""
    return sorted(Path(root).glob("**/offline-run-*"))
