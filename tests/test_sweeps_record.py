"""The typed trial record (ddpm.sweeps.record): round trip through real Optuna trials, old trials, retries."""
from __future__ import annotations

import copy
import warnings

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from ddpm.sweeps.listing import no_trial_completed, trial_table
from ddpm.sweeps.record import USER_FIELDS, TrialRecord, retried_as, retried_numbers, state_name

ROWS = [{"omega": 0.0, "fid": 40.0, "fid_lo": 38.0, "fid_hi": 42.0, "n": 64},
        {"omega": 2.0, "fid": 30.0, "fid_lo": 28.5, "fid_hi": 31.5, "n": 64}]


def _full() -> TrialRecord:
    return TrialRecord(run_dir="runs/s/trial-3", config={"sample": {"omega": 2.0}}, guidance=ROWS,
                       guidance_split="val", best_omega=2.0, failure_reason=None, interrupted=False,
                       duration_s=12.5, retry_of=1, resumed_from_epoch=2, host="box", pid=4242,
                       baseline=True, grid_id=0)


def _study(tmp_path, name: str = "rec") -> optuna.Study:
    return optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path / 'rec.db'}")


def test_round_trip_through_a_sqlite_study(tmp_path):
    rec = _full()
    attrs = rec.to_user_attrs()
    # the keys studies on disk already hold: each field under its own name, defaults left out
    assert set(attrs) == {"run_dir", "config", "guidance", "guidance_split", "best_omega", "duration_s",
                          "retry_of", "resumed_from_epoch", "host", "pid", "baseline", "grid_id"}
    assert attrs["grid_id"] == 0 and attrs["baseline"] is True
    study = _study(tmp_path)
    study.add_trial(create_trial(value=30.0, params={}, distributions={}, user_attrs=attrs))
    back = TrialRecord.from_trial(optuna.load_study(study_name="rec", storage=study._storage).trials[0])
    assert back == rec
    assert back.best_row() == ROWS[1] and back.row_at(0.0) == ROWS[0] and back.row_at(1.0) is None


def test_write_stores_each_field_on_a_running_trial(tmp_path):
    study = _study(tmp_path)

    def objective(trial: optuna.Trial) -> float:
        TrialRecord.write(trial, run_dir="runs/s/trial-0", host="box", pid=7)
        TrialRecord.write(trial, guidance=ROWS, best_omega=2.0, duration_s=1.5)
        with pytest.raises(TypeError, match="no field 'omega'"):
            TrialRecord.write(trial, omega=2.0)     # a typo is an error, not a new stored key
        return 30.0

    study.optimize(objective, n_trials=1)
    (t,) = study.trials
    assert t.user_attrs == {"run_dir": "runs/s/trial-0", "host": "box", "pid": 7, "guidance": ROWS,
                            "best_omega": 2.0, "duration_s": 1.5}
    rec = TrialRecord.from_trial(t)
    assert (rec.run_dir, rec.best_omega, rec.best_row()) == ("runs/s/trial-0", 2.0, ROWS[1])
    assert set(USER_FIELDS) >= set(t.user_attrs)


def test_an_old_trial_without_the_newer_keys_reads_defaults(tmp_path):
    """A trial written before guidance_split, host, pid, retry_of... existed (or added by hand)."""
    study = _study(tmp_path)
    study.add_trial(create_trial(value=1.0, params={}, distributions={},
                                 user_attrs={"run_dir": "runs/old/trial-0", "best_omega": 1, "note": "by hand"}))
    study.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={},
                                 system_attrs={"fail_reason": "ValueError: boom"}))
    old, failed = study.trials
    rec = TrialRecord.from_trial(old)
    assert rec == TrialRecord(run_dir="runs/old/trial-0", best_omega=1)
    assert rec.guidance == [] and rec.best_row() is None and rec.host is None and not rec.baseline
    assert rec.to_user_attrs() == {"run_dir": "runs/old/trial-0", "best_omega": 1}
    # a failure Optuna recorded (the trial raised outside the objective) is the reason of a failed trial only
    frec = TrialRecord.from_trial(failed)
    assert frec.failure_reason is None and frec.reason(TrialState.FAIL) == "ValueError: boom"
    assert frec.reason(TrialState.PRUNED) is None
    # values of the wrong kind read as the default instead of breaking a listing
    odd = TrialRecord.from_attrs({"guidance": "x", "config": [1], "duration_s": "12", "pid": True, "grid_id": 2.0})
    assert (odd.guidance, odd.config, odd.duration_s, odd.pid, odd.grid_id) == ([], None, None, None, 2)


def test_retry_history_is_read_in_one_place(tmp_path):
    """Optuna's retry callback copies the failed trial's attributes and appends to its retry history."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    study = _study(tmp_path)
    study.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={},
                                 user_attrs=TrialRecord(run_dir="runs/s/trial-0", interrupted=True, grid_id=5,
                                                        failure_reason="interrupted").to_user_attrs()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=None)
    retry(study, copy.deepcopy(study.trials[0]))               # trial 1 (waiting) retries 0
    running = study.ask()                                      # a worker takes trial 1 ...
    assert running.number == 1
    study.tell(running, state=TrialState.FAIL)                 # ... and it fails again
    retry(study, copy.deepcopy(study.trials[1]))               # trial 2 retries 1
    trials = study.trials
    recs = [TrialRecord.from_trial(t) for t in trials]
    assert [r.retried_trial for r in recs] == [None, 0, 1]
    assert recs[2].retry_history == [0, 1]
    assert recs[1].grid_id == 5 and recs[2].run_dir == "runs/s/trial-0"   # inherited by each retry
    assert retried_numbers(trials) == {0, 1}
    assert retried_as(trials) == {0: 1, 1: 2}


def test_one_spelling_for_a_failed_trial(tmp_path):
    assert [state_name(s) for s in TrialState] == ["running", "complete", "pruned", "failed", "waiting"]
    study = _study(tmp_path, "spell")
    study.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={},
                                 user_attrs={"failure_reason": "OSError: disk full"}))
    table = trial_table(study)
    assert table.rows[0].cells[1] == "failed" and "disk full" in table.rows[0].cells[-1]
    assert no_trial_completed(study).startswith("no trial completed: 1 failed (trial 0: OSError: disk full)")
