"""Where a study's files live for optuna-dashboard: Optuna's artifact store (a registry by location scheme).

Each completed trial uploads its sample grids (``grids/*.png``: the guidance grid's ``omega<w>.png`` and
any per-epoch grids) and its best checkpoint (``checkpoints/best.pt``) with ``optuna.artifacts.upload_artifact``;
Optuna records each artifact's id, file name and MIME type in the trial's system attributes, which
optuna-dashboard lists (and ``TrialRecord.artifacts`` reads). The run folder keeps its own files: the store
holds an additional copy. ``ddpm.sweeps.trial_outputs`` sends the rest of a trial's outputs here too (checkpoints
and metrics after each epoch, the guidance files at the end), so any machine can resume or report the trial.

A study has one store, recorded with the study (user attribute ``artifact_store``) when it is created:

- a plain path or ``file://path``: ``optuna.artifacts.FileSystemArtifactStore`` (the default,
  ``<out_dir>/<study>/artifacts/`` beside the study's run folders);
- ``s3://bucket/prefix``: an S3-compatible object store (ddpm/sweeps/artifact_s3.py; AWS environment variables).

Besides Optuna's own uploads (random artifact ids), ``put_file`` / ``get_file`` store and fetch a file under a key
the caller names (``trial-3/checkpoints/last.pt``: keys may hold '/') in any store.

The location comes from ``--artifacts PATH``, else the sweep file's ``artifacts:`` key, else the one the study
recorded, else the default. Adding a store (``s3://``) is one opener plus one registry line.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional

from ddpm.errors import ConfigError
from ddpm.io import atomic_write
from ddpm.registry import Registry

ARTIFACT_ATTR = "artifact_store"   # study user attribute: the location every trial of the study uploads to
TRIAL_FILES = ("grids/*.png", "checkpoints/best.pt")   # what a completed trial uploads, relative to its run folder

ArtifactOpener = Callable[[str, bool], Any]   # (location, create) -> an Optuna ArtifactStore
ARTIFACT_STORES: Registry[ArtifactOpener] = Registry("artifact store scheme")
register_artifact_store: Callable[[str], Callable[[ArtifactOpener], ArtifactOpener]] = ARTIFACT_STORES.register


def artifact_scheme(location: str) -> str:
    """``file`` for a plain path, else the text before ``://``."""
    return location.split("://", 1)[0].lower() if "://" in location else "file"


def _file_path(location: str) -> Path:
    return Path(location[len("file://"):] if location.lower().startswith("file://") else location)


@register_artifact_store("file")
def _filesystem(location: str, create: bool) -> Any:
    from optuna.artifacts import FileSystemArtifactStore

    class FolderArtifactStore(FileSystemArtifactStore):
        """Optuna's folder store whose keys may name sub-folders (made on write); a file appears whole (written
        beside, then renamed), as an object does in S3."""

        def write(self, artifact_id: str, content_body: BinaryIO) -> None:
            atomic_write(self._get_filepath(artifact_id), lambda f: shutil.copyfileobj(content_body, f))

    path = _file_path(location)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"artifact store {location!r}: {path} is a file, not a folder")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return FolderArtifactStore(path)


def open_artifact_store(location: str, create: bool = True) -> Any:
    """The Optuna artifact store at ``location`` (``create``: make a folder store's folder when missing)."""
    scheme = artifact_scheme(location)
    if not location or scheme not in ARTIFACT_STORES:
        raise ConfigError(f"artifact store {location!r}: unknown kind {scheme!r}; valid: a folder path "
                          f"({', '.join(f'{s}://' for s in sorted(ARTIFACT_STORES))} or a plain path)")
    return ARTIFACT_STORES[scheme](location, create)


def put_file(store: Any, key: str, path: str | Path) -> None:
    """Store the local file ``path`` under ``key`` (e.g. ``trial-3/checkpoints/last.pt``) in any artifact store."""
    with open(path, "rb") as f:
        store.write(key, f)


def get_file(store: Any, key: str, path: str | Path) -> bool:
    """Fetch ``key`` from any artifact store into ``path`` (written beside it, then renamed: never half a file);
    False when the store has no such key."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    try:
        reader = store.open_reader(key)
    except ArtifactNotFound:
        return False
    with contextlib.closing(reader):
        atomic_write(path, lambda out: shutil.copyfileobj(reader, out))
    return True


def default_artifact_location(out_dir: str | Path, study: str) -> str:
    """``<out_dir>/<study>/artifacts``: beside the study's run folders (and its default SQLite file)."""
    return str(Path(out_dir) / study / "artifacts")


def same_location(a: str, b: str) -> bool:
    """Two spellings of one store (``runs/x/artifacts``, ``./runs/x/artifacts``, its absolute path, file://)."""
    if artifact_scheme(a) == artifact_scheme(b) == "file":
        return _file_path(a).resolve() == _file_path(b).resolve()
    return a.rstrip("/") == b.rstrip("/")


def record_artifact_location(study: Any, wanted: Optional[str], out_dir: str | Path) -> str:
    """The study's store: recorded with the study when it has none yet (``wanted``, else the default beside the
    study). A ``wanted`` store other than the recorded one is a ConfigError: one study, one store, so
    optuna-dashboard finds every trial's files."""
    recorded = study.user_attrs.get(ARTIFACT_ATTR)
    if isinstance(recorded, str) and recorded:
        if wanted and not same_location(wanted, recorded):
            raise ConfigError(f"artifacts = {wanted!r}: study {study.study_name!r} keeps its artifacts in "
                              f"{recorded!r}; use that store (or leave artifacts unset), or start a new study")
        open_artifact_store(recorded, create=True)  # a store gone bad (unreachable, denied) fails before a trial
        return recorded
    location = wanted or default_artifact_location(out_dir, study.study_name)
    open_artifact_store(location, create=True)  # a bad location fails before any trial runs
    study.set_user_attr(ARTIFACT_ATTR, location)
    return location


def study_artifact_location(study: Any, out_dir: str | Path) -> str:
    """Where the study's artifacts are: the recorded store, else (a study made elsewhere) the default."""
    recorded = study.user_attrs.get(ARTIFACT_ATTR)
    return recorded if isinstance(recorded, str) and recorded else default_artifact_location(out_dir, study.study_name)


def trial_files(run_dir: Path) -> list[Path]:
    """The files a completed trial uploads (``TRIAL_FILES``), in a stable order."""
    return [p for pattern in TRIAL_FILES for p in sorted(run_dir.glob(pattern)) if p.is_file()]


def upload_files(trial: Any, run_dir: Path, store: Any) -> dict[str, str]:
    """``trial_files`` uploaded with ``optuna.artifacts.upload_artifact``; returns run-folder path -> artifact id."""
    from optuna.artifacts import upload_artifact

    return {p.relative_to(run_dir).as_posix(): upload_artifact(
                artifact_store=store, file_path=str(p), study_or_trial=trial,
                mimetype=MIMETYPES.get(p.suffix, "application/octet-stream"))
            for p in trial_files(run_dir)}


# named, not guessed: the system's MIME table may map .pt to an unrelated type (one maps it to a SNES format)
MIMETYPES = {".png": "image/png", ".pt": "application/octet-stream"}


from ddpm.sweeps import artifact_s3  # noqa: E402,F401  registers s3:// (it imports the registry above)
