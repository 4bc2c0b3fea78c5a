"""The confirmation stage: parsing, which trials it re-scores, how seeds combine, the verdict in words."""
from __future__ import annotations

import json
import math

import optuna
import pytest

from ddpm.errors import ConfigError
from ddpm.sweeps.confirm import (ConfirmSpec, candidates, combine_seeds, confirmation_verdict, parse_confirm)


def test_parse_confirm_defaults_and_errors():
    assert parse_confirm(None, "s.yaml") is None
    assert parse_confirm(True, "s.yaml") == ConfirmSpec()
    assert parse_confirm({"top_k": 2, "n": 500, "seeds": 2}, "s.yaml") == ConfirmSpec(2, 500, 2)
    with pytest.raises(ConfigError, match="confirm: unknown key 'topk'"):
        parse_confirm({"topk": 2}, "s.yaml")
    with pytest.raises(ConfigError, match=r"confirm.n = 1: must be an integer >= 2"):
        parse_confirm({"n": 1}, "s.yaml")
    with pytest.raises(ConfigError, match=r"confirm.seeds = 0"):
        parse_confirm({"seeds": 0}, "s.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_confirm([1, 2], "s.yaml")


def _trial(number: int, value: float, state=optuna.trial.TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    t = optuna.trial.create_trial(state=state, value=value if state == optuna.trial.TrialState.COMPLETE else None,
                                  user_attrs={"run_dir": f"runs/s/trial-{number}"})
    t.number = number
    return t


def test_candidates_are_the_top_k_plus_the_baseline():
    trials = [_trial(0, 50.0), _trial(1, 20.0), _trial(2, 30.0), _trial(3, 10.0),
              _trial(4, 0.0, optuna.trial.TrialState.PRUNED)]
    got = [t.number for t in candidates(trials, ["minimize"], top_k=2, baseline=0)]
    assert got == [3, 1, 0]                     # best two by FID, then the baseline
    assert [t.number for t in candidates(trials, ["minimize"], 2, baseline=3)] == [3, 1]
    assert [t.number for t in candidates(trials, ["maximize"], 1, None)] == [0]


def test_combine_seeds_mean_and_interval_of_the_mean():
    rows = [{"omega": 2.0, "n": 100, "fid": 10.0, "fid_lo": 8.0, "fid_hi": 12.0, "accuracy": 0.9},
            {"omega": 2.0, "n": 100, "fid": 14.0, "fid_lo": 12.0, "fid_hi": 16.0, "accuracy": 0.8}]
    c = combine_seeds(rows)
    assert c["fid"] == pytest.approx(12.0) and c["fid_per_seed"] == [10.0, 14.0]
    half = math.sqrt(2 * 2.0 ** 2) / 2            # two independent half-widths of 2, mean of 2
    assert (c["fid_lo"], c["fid_hi"]) == pytest.approx((12.0 - half, 12.0 + half))
    assert c["accuracy"] == pytest.approx(0.85) and "accuracy_lo" not in c   # no interval recorded: none invented
    assert c["seeds"] == 2 and c["n"] == 100


def _record(w: float, w_hw: float, b: float, b_hw: float, direction: str = "minimize") -> dict:
    return {"metric": "fid", "direction": direction, "winner": 3, "baseline": 0,
            "settings": {"n": 1000, "seeds": 3, "top_k": 2, "baseline": True, "split": "test"},
            "trials": {"3": {"fid": w, "fid_lo": w - w_hw, "fid_hi": w + w_hw},
                       "0": {"fid": b, "fid_lo": b - b_hw, "fid_hi": b + b_hw}}}


def test_verdict_beats_and_ties_in_words():
    beats = confirmation_verdict(_record(40.0, 3.0, 60.0, 4.0))
    assert beats.startswith("confirmed on the test split (3 seed(s) x 1000 images per trial): ")
    assert "trial 3 beats the baseline (trial 0) by 20 +- 5 FID" in beats
    tie = confirmation_verdict(_record(55.0, 3.0, 60.0, 4.0))
    assert "no config beat the baseline beyond noise" in tie and "5 +- 5 FID" in tie
    same = _record(40.0, 3.0, 60.0, 4.0)
    same["winner"] = 0
    assert "no config beat the baseline: the baseline (trial 0) is best" in confirmation_verdict(same)


@pytest.mark.slow
def test_sweep_confirms_top_trial_and_baseline_on_the_test_split(tmp_path, tiny_classifier, monkeypatch, capsys):
    """`ddpm sweep` with confirm: re-scores the best trial and the baseline on the test split with fresh seeds,
    records it with the study, names the winner from those numbers, and the report shows both stages."""
    from helpers import sweep_file

    from ddpm.cli import main
    from ddpm.sweeps import open_sweep_study, load_sweep

    monkeypatch.chdir(tmp_path)
    path = sweep_file(
        tmp_path, study="confirmed",
        space={"train.lr": {"type": "categorical", "choices": [1.0e-3, 3.0e-3, 1.0e-4]}},
        guidance={"omegas": [0, 2], "n": 20, "sampler": "ddim", "steps": 5},
        objectives=[{"metric": "fid", "direction": "minimize"}],
        enqueue_baseline=True, enqueue=[{"train.lr": 3.0e-3}, {"train.lr": 1.0e-4}], n_trials=3,
        confirm={"top_k": 1, "n": 20, "seeds": 2}, report=True)
    assert main(["sweep", str(path)]) == 0
    spec = load_sweep(path)
    study = open_sweep_study(spec)
    rec = study.user_attrs["confirmation"]
    assert rec["settings"] == {"top_k": 1, "n": 20, "seeds": 2, "baseline": True, "split": "test"}
    best = min((t for t in study.trials if t.values), key=lambda t: t.values[0]).number
    assert set(rec["trials"]) == {str(best), "0"}                       # the top trial and the baseline
    for row in rec["trials"].values():
        assert len(row["fid_per_seed"]) == 2 and row["fid_lo"] <= row["fid"] <= row["fid_hi"]
        assert row["seeds"] == 2 and row["n"] == 20
    search = {t.number: t.values[0] for t in study.trials if t.values}
    assert all(row["fid"] != search[int(n)] for n, row in rec["trials"].items())   # new seeds, test split
    assert str(rec["winner"]) == min(rec["trials"], key=lambda n: rec["trials"][n]["fid"])
    assert rec["verdict"].startswith("confirmed on the test split (2 seed(s) x 20 images per trial)")
    captured = capsys.readouterr()
    assert "confirmed on the test split" in captured.out + captured.err
    assert (tmp_path / "runs" / "confirmed" / "confirmation.json").is_file()

    md = (tmp_path / "reports" / "confirmed" / "report.md").read_text()
    assert "## Confirmation on the test split" in md and "confirmed verdict" in md
    best_yaml = (tmp_path / "reports" / "confirmed" / "best_config.yaml").read_text()
    assert best_yaml.startswith(f"# Best config of study 'confirmed': trial {rec['winner']} ")   # the confirmed winner

    # rerunning confirms nothing again (same settings): the record is unchanged
    before = json.dumps(rec, sort_keys=True)
    assert main(["sweep", str(path), "--no-report"]) == 0
    assert json.dumps(open_sweep_study(spec).user_attrs["confirmation"], sort_keys=True) == before
