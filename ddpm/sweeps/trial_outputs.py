"""A trial's outputs in the study's artifact store: what a report, a retry or a rerun needs, from any machine.

The run folder is where a trial writes; the study's artifact store (``ddpm.sweeps.artifacts``: a folder beside the
study by default, any Optuna ``ArtifactStore`` by scheme) is where every machine finds it. ``TrialOutputs`` sends:

- after each epoch: ``checkpoints/last.pt``, ``metrics.jsonl``, ``config.yaml``, ``checkpoints/best.pt`` and the
  epoch's sample grid, each only when it changed since its last upload;
- at the end: the guidance table's ``grids/omega<w>.png`` and ``eval.json`` too, with the grids and ``best.pt``
  uploaded by ``optuna.artifacts.upload_artifact`` (optuna-dashboard lists those).

The trial's record (``TrialRecord.outputs``: run-folder path -> artifact id) says which artifact holds which file.
Each upload is a new artifact; the record is switched to it in one attribute write after the upload finished, and
only then is the copy it replaces removed. A process killed mid-upload leaves the previous record valid (at worst
an unreferenced artifact in the store). Artifacts a retry inherited from its predecessor are never removed: the
failed trial's record still points at them.

Readers: ``fetch_outputs`` (a retry on a machine without its predecessor's run folder downloads the folder and
resumes after the stored epoch) and ``TrialFiles`` (``ddpm report``, the confirmation stage's best.pt: a file from
the run folder when this machine holds it, else downloaded once into a cache folder).
"""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Optional

from ddpm.sweeps.record import TrialRecord

EPOCH_FILES = ("checkpoints/last.pt", "metrics.jsonl", "config.yaml", "checkpoints/best.pt", "grids/epoch-*.png")
FINAL_FILES = (*EPOCH_FILES, "eval.json", "grids/*.png")   # + the guidance table's grids and eval.json

STORE_CACHE = ".store-cache"   # where a reader keeps files downloaded from the store (under its output folder)
Signature = tuple[int, int]   # (size, mtime_ns): a file rewritten since its upload is sent again


def run_files(run_dir: Path, patterns: Iterable[str]) -> list[str]:
    """The run folder's files matching ``patterns``, as run-folder paths (``grids/omega2.png``), in a stable order."""
    out: list[str] = []
    for pattern in patterns:
        for p in sorted(run_dir.glob(pattern)):
            rel = p.relative_to(run_dir).as_posix()
            if p.is_file() and rel not in out:
                out.append(rel)
    return out


def _signature(path: Path) -> Signature:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _digest(path: Path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_artifact(store: Any, path: Path) -> str:
    """Upload ``path`` as a new artifact (Optuna's id format, a UUID4) and return its id."""
    from ddpm.sweeps.artifacts import put_file

    artifact_id = str(uuid.uuid4())
    put_file(store, artifact_id, path)
    return artifact_id


class TrialOutputs:
    """Uploads a running trial's run-folder files to the study's store and keeps its record pointing at them."""

    def __init__(self, trial: Any, location: str, inherited: Optional[dict[str, str]] = None) -> None:
        self.trial, self.location = trial, location
        self.pointer: dict[str, str] = dict(inherited or {})   # what the trial's record says now
        self.owned: set[str] = set()                          # ids uploaded here: removable once superseded
        self.sent: dict[str, Signature] = {}                  # run-folder path -> signature of its stored copy
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from ddpm.sweeps.artifacts import open_artifact_store

            self._store = open_artifact_store(self.location, create=True)
        return self._store

    def already_stored(self, run_dir: Path, rels: Iterable[str]) -> None:
        """These files of ``run_dir`` are the stored copies the record points at (downloaded by a retry)."""
        for rel in rels:
            if (run_dir / rel).is_file():
                self.sent[rel] = _signature(run_dir / rel)

    def changed(self, run_dir: Path, patterns: Iterable[str]) -> dict[str, Signature]:
        """Files matching ``patterns`` not stored as they are now: run-folder path -> current signature."""
        now = {rel: _signature(run_dir / rel) for rel in run_files(run_dir, patterns)}
        return {rel: sig for rel, sig in now.items() if self.sent.get(rel) != sig or rel not in self.pointer}

    def sync(self, run_dir: Path, patterns: Iterable[str] = EPOCH_FILES) -> list[str]:
        """Upload what changed, then switch the record; returns the run-folder paths uploaded. Files with the same
        bytes share one artifact (best.pt of an epoch that improved is last.pt's payload: one upload, not two)."""
        todo = self.changed(run_dir, patterns)
        by_content: dict[str, str] = {}
        ids = {}
        for rel in todo:
            digest = _digest(run_dir / rel)
            if digest not in by_content:
                by_content[digest] = write_artifact(self.store, run_dir / rel)
            ids[rel] = by_content[digest]
        self.switch(ids, todo)
        return list(todo)

    def switch(self, ids: dict[str, str], signatures: dict[str, Signature]) -> None:
        """Point the record at the uploaded ``ids`` (one attribute write), then remove the copies they replace."""
        if not ids:
            return
        before = {self.pointer[rel] for rel in ids if rel in self.pointer}
        self.pointer.update(ids)
        TrialRecord.write(self.trial, outputs=dict(self.pointer))
        self.sent.update({rel: signatures[rel] for rel in ids if rel in signatures})
        self.owned.update(ids.values())
        for artifact_id in before - set(self.pointer.values()):
            if artifact_id in self.owned:   # a predecessor's artifact stays: its record points at it
                self.owned.discard(artifact_id)
                try:
                    self.store.remove(artifact_id)
                except Exception:  # already gone, or a store that refuses: an orphan copy, not a lost file
                    pass

    def finish(self, run_dir: Path) -> None:
        """At the end: the grids and best.pt through Optuna's artifact API (optuna-dashboard lists them), then
        every other output file that changed."""
        from ddpm.sweeps.artifacts import upload_files

        dashboard = upload_files(self.trial, run_dir, self.store)
        self.switch(dashboard, {rel: _signature(run_dir / rel) for rel in dashboard})
        self.sync(run_dir, FINAL_FILES)


def fetch_outputs(location: str, outputs: dict[str, str], run_dir: Path) -> None:
    """Download every stored file of ``outputs`` into the new folder ``run_dir``. All or nothing: the files land
    in a staging folder beside it, renamed to ``run_dir`` once all arrived (a failure removes the staging folder
    and raises)."""
    from ddpm.sweeps.artifacts import open_artifact_store

    store = open_artifact_store(location, create=False)
    staging = run_dir.with_name(f".{run_dir.name}.fetching-{uuid.uuid4().hex[:8]}")
    try:
        for rel, artifact_id in outputs.items():
            download(store, artifact_id, staging / rel)
        staging.rename(run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(store: Any, artifact_id: str, dest: Path) -> None:
    """One artifact to ``dest``, written atomically (a reader never sees half a file); raises when it is missing."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    from ddpm.sweeps.artifacts import get_file

    if not get_file(store, artifact_id, dest):
        raise ArtifactNotFound(f"the artifact store has no artifact {artifact_id}")


class StoreCache:
    """Downloads from one store into ``cache/<artifact id>/<file name>``; an artifact's bytes never change, so a
    cached copy is reused. The store opens on the first download."""

    def __init__(self, location: Optional[str], cache: Path) -> None:
        self.location, self.cache = location, cache
        self._store: Any = None

    def get(self, artifact_id: str, name: str) -> Optional[Path]:
        """The artifact's local copy, or None when the store does not have it (or cannot be reached)."""
        if not self.location or not artifact_id or "/" in artifact_id or artifact_id.startswith("."):
            return None
        dest = self.cache / artifact_id / Path(name).name
        if dest.is_file():
            return dest
        try:
            if self._store is None:
                from ddpm.sweeps.artifacts import open_artifact_store

                self._store = open_artifact_store(self.location, create=False)
            download(self._store, artifact_id, dest)
        except Exception:
            return None
        return dest


class TrialFiles:
    """A trial's file by run-folder path: from the run folder when this machine holds it, else from the store."""

    def __init__(self, run_dir: Optional[Path], outputs: dict[str, str], cache: Optional[StoreCache]) -> None:
        self.run_dir, self.outputs, self.cache = run_dir, outputs, cache

    def path(self, rel: str) -> Optional[Path]:
        if self.run_dir is not None and (self.run_dir / rel).is_file():
            return self.run_dir / rel
        artifact_id = self.outputs.get(Path(rel).as_posix())
        return self.cache.get(artifact_id, rel) if self.cache is not None and artifact_id else None


def trial_file(record: TrialRecord, rel: str, location: Optional[str], cache: Path) -> Optional[Path]:
    """A trial's file at run-folder path ``rel``: its run folder's, else the store's copy (cached in ``cache``)."""
    run_dir = Path(record.run_dir) if record.run_dir else None
    return TrialFiles(run_dir, record.outputs, StoreCache(location, cache)).path(rel)
