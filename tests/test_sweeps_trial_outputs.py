"""A trial's outputs through the study's artifact store (ddpm.sweeps.trial_outputs), on a real SQLite storage and a
real folder store: one stored copy per file (the superseded one removed), the record switched only after an upload
finished, a predecessor's copies kept, all-or-nothing downloads, and a reader that prefers the run folder."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from ddpm.sweeps.record import TrialRecord
from ddpm.sweeps.trial_outputs import StoreCache, TrialFiles, TrialOutputs, fetch_outputs


def _study(tmp_path: Path) -> optuna.Study:
    from ddpm.sweeps import open_storage

    return optuna.create_study(study_name="outputs", storage=open_storage(f"sqlite:///{tmp_path / 'study.db'}"))


def _epoch(run: Path, epoch: int, best: bool = True) -> None:
    """What train() leaves after an epoch (the bytes differ per epoch)."""
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "checkpoints" / "last.pt").write_bytes(f"last {epoch}".encode())
    if best:
        (run / "checkpoints" / "best.pt").write_bytes(f"best {epoch}".encode())
    if not (run / "config.yaml").exists():     # written once, when the run starts
        (run / "config.yaml").write_text("name: t\n")
    with open(run / "metrics.jsonl", "a") as f:
        f.write(f'{{"epoch": {epoch}}}\n')


def _read(store: FileSystemArtifactStore, artifact_id: str) -> bytes:
    with store.open_reader(artifact_id) as f:
        return f.read()


def _stored(study: optuna.Study) -> dict[str, str]:
    return TrialRecord.from_trial(study.get_trials(deepcopy=False)[0]).outputs


def test_each_epoch_replaces_the_previous_copy(tmp_path):
    study, run, location = _study(tmp_path), tmp_path / "run", str(tmp_path / "store")
    trial = study.ask()
    outputs = TrialOutputs(trial, location)
    _epoch(run, 1)
    assert sorted(outputs.sync(run)) == ["checkpoints/best.pt", "checkpoints/last.pt", "config.yaml", "metrics.jsonl"]
    first = _stored(study)
    _epoch(run, 2, best=False)
    assert sorted(outputs.sync(run)) == ["checkpoints/last.pt", "metrics.jsonl"]   # unchanged files stay as stored
    second = _stored(study)
    store = FileSystemArtifactStore(location)
    assert second["checkpoints/best.pt"] == first["checkpoints/best.pt"]
    assert _read(store, second["checkpoints/last.pt"]) == b"last 2"
    assert _read(store, second["metrics.jsonl"]) == (run / "metrics.jsonl").read_bytes()
    with pytest.raises(ArtifactNotFound):                                   # the superseded copy is gone
        store.open_reader(first["checkpoints/last.pt"])
    assert sorted(p.name for p in Path(location).iterdir()) == sorted(second.values())   # one copy per file


def test_same_bytes_share_one_artifact(tmp_path):
    """An epoch that improved leaves best.pt = last.pt: one upload; the shared copy stays while either names it."""
    study, run, location = _study(tmp_path), tmp_path / "run", str(tmp_path / "store")
    outputs = TrialOutputs(study.ask(), location)
    _epoch(run, 1)
    (run / "checkpoints" / "best.pt").write_bytes(b"last 1")
    outputs.sync(run)
    first = _stored(study)
    assert first["checkpoints/best.pt"] == first["checkpoints/last.pt"]
    _epoch(run, 2, best=False)                                 # last.pt moves on, best.pt still names epoch 1
    outputs.sync(run)
    second = _stored(study)
    store = FileSystemArtifactStore(location)
    assert second["checkpoints/best.pt"] == first["checkpoints/best.pt"] != second["checkpoints/last.pt"]
    assert _read(store, second["checkpoints/best.pt"]) == b"last 1" and _read(store, second["checkpoints/last.pt"]) == b"last 2"
    assert sorted(p.name for p in Path(location).iterdir()) == sorted(set(second.values()))


class _DiesMidUpload(FileSystemArtifactStore):
    """A real folder store whose writes stop halfway (a process killed during an upload)."""

    def write(self, artifact_id, content_body):
        with open(self._base_path / artifact_id, "wb") as f:
            f.write(content_body.read(3))
        raise KeyboardInterrupt


def test_an_interrupted_upload_leaves_the_previous_record_valid(tmp_path):
    study, run, location = _study(tmp_path), tmp_path / "run", str(tmp_path / "store")
    trial = study.ask()
    outputs = TrialOutputs(trial, location)
    _epoch(run, 1)
    outputs.sync(run)
    before = _stored(study)
    _epoch(run, 2)
    outputs._store = _DiesMidUpload(location)
    with pytest.raises(KeyboardInterrupt):
        outputs.sync(run)
    assert _stored(study) == before                         # the record still names epoch 1's complete copies
    store = FileSystemArtifactStore(location)
    assert _read(store, before["checkpoints/last.pt"]) == b"last 1"
    fetch_outputs(location, _stored(study), tmp_path / "retry")
    assert (tmp_path / "retry" / "metrics.jsonl").read_text() == '{"epoch": 1}\n'


def test_a_retry_keeps_its_predecessors_copies(tmp_path):
    """The retry inherits the record; its own uploads replace the record's entries but remove only its own copies."""
    study, run, location = _study(tmp_path), tmp_path / "run", str(tmp_path / "store")
    first = study.ask()
    _epoch(run, 1)
    TrialOutputs(first, location).sync(run)
    inherited = TrialRecord.from_trial(study.get_trials(deepcopy=False)[0]).outputs
    retry_dir = tmp_path / "retry"
    fetch_outputs(location, inherited, retry_dir)
    retry = study.ask()
    outputs = TrialOutputs(retry, location, inherited)
    outputs.already_stored(retry_dir, inherited)
    assert outputs.sync(retry_dir) == []                    # the downloaded files are the stored ones
    _epoch(retry_dir, 2)
    outputs.sync(retry_dir)
    _epoch(retry_dir, 3)
    outputs.sync(retry_dir)
    store = FileSystemArtifactStore(location)
    for artifact_id in inherited.values():                 # the failed trial's record still points at real files
        store.open_reader(artifact_id).close()
    now = TrialRecord.from_trial(study.get_trials(deepcopy=False)[1]).outputs
    assert _read(store, now["checkpoints/last.pt"]) == b"last 3"
    assert len(list(Path(location).iterdir())) == len(set(inherited.values()) | set(now.values()))


def test_a_download_is_all_or_nothing(tmp_path):
    study, run, location = _study(tmp_path), tmp_path / "run", str(tmp_path / "store")
    outputs = TrialOutputs(study.ask(), location)
    _epoch(run, 1)
    outputs.sync(run)
    broken = {**outputs.pointer, "checkpoints/best.pt": "00000000-0000-0000-0000-000000000000"}
    with pytest.raises(ArtifactNotFound):
        fetch_outputs(location, broken, tmp_path / "retry")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "store", "study.db"]   # no half folder left


def test_a_reader_prefers_the_run_folder_and_caches_the_store(tmp_path):
    study, run, location = _study(tmp_path), tmp_path / "run", str(tmp_path / "store")
    outputs = TrialOutputs(study.ask(), location)
    _epoch(run, 1)
    outputs.sync(run)
    cache = StoreCache(location, tmp_path / "cache")
    here = TrialFiles(run, outputs.pointer, cache)
    assert here.path("metrics.jsonl") == run / "metrics.jsonl" and not (tmp_path / "cache").exists()
    elsewhere = TrialFiles(tmp_path / "not-here", outputs.pointer, cache)
    got = elsewhere.path("checkpoints/last.pt")
    assert got is not None and got.read_bytes() == b"last 1" and got.is_relative_to(tmp_path / "cache")
    assert elsewhere.path("eval.json") is None                              # never stored
    assert TrialFiles(None, {"x.png": "missing-id"}, cache).path("x.png") is None
    assert TrialFiles(None, {"x.png": "../study.db"}, cache).path("x.png") is None   # ids stay inside the cache
