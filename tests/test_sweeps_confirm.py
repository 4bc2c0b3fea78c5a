"""The confirmation stage: parsing, which trials it re-scores, how seeds combine, the verdict in words."""
from __future__ import annotations

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
    assert "trial 3 beats the baseline (trial 0) by 20 +- 5 fid" in beats and "test split" in beats
    tie = confirmation_verdict(_record(55.0, 3.0, 60.0, 4.0))
    assert "no config beat the baseline (trial 0) beyond noise" in tie and "5 +- 5" in tie
    same = _record(40.0, 3.0, 60.0, 4.0)
    same["winner"] = 0
    assert "the baseline (trial 0) stays best" in confirmation_verdict(same)
