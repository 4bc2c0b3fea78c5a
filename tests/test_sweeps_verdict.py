"""Ties with the best trial and the verdict against the baseline, on constructed trials in a real SQLite study
(``ddpm.sweeps.verdict``; printed by ``ddpm trials``)."""
from __future__ import annotations

from typing import Any, Optional

import optuna
import pytest

from ddpm.cli import main
from ddpm.config import ExperimentConfig
from ddpm.sweeps.verdict import Score, fmt_interval, objective_score, study_verdict, ties, verdict

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _row(omega: float, fid: float, half: Optional[float], n: int = 100) -> dict[str, Any]:
    row: dict[str, Any] = {"omega": omega, "fid": fid, "floor": 20.0, "accuracy": 0.9, "diversity": 1.0,
                           "seconds": 1.0, "grid": None}
    if half is not None:   # rows stored before intervals existed have none of these keys
        row.update(n=n, fid_lo=fid - half, fid_hi=fid + half, accuracy_lo=0.85, accuracy_hi=0.94,
                   kid=0.1, kid_lo=0.05, kid_hi=0.15)
    return row


def _study(tmp_path, fids: list[tuple[float, Optional[float]]], baseline: Optional[int] = 0,
           name: str = "verdict") -> optuna.Study:
    """A real SQLite study whose trial i scored fids[i] = (fid, half-width) at its best omega 2."""
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path / 'v.db'}", direction="minimize")
    study.set_user_attr("objectives", [{"metric": "fid", "direction": "minimize"}])
    if baseline is not None:
        study.set_user_attr("baseline_trial", baseline)
    dist = optuna.distributions.CategoricalDistribution([0, 1, 2, 3, 4])
    for i, (fid, half) in enumerate(fids):
        study.add_trial(optuna.trial.create_trial(
            params={"x": i}, distributions={"x": dist}, value=fid,
            user_attrs={"best_omega": 2.0, "guidance": [_row(0.0, fid + 50, half), _row(2.0, fid, half)],
                        "config": ExperimentConfig().to_dict()}))
    return study


def test_fmt_interval_sets_digits_by_the_width():
    assert fmt_interval(240.3, 221.2, 262.4) == "240 [221, 262]"
    assert fmt_interval(0.9342, 0.8701, 0.9688) == "0.93 [0.87, 0.97]"
    assert fmt_interval(1.2021, 1.1543, 1.2660) == "1.20 [1.15, 1.27]"
    assert fmt_interval(240.345, None, None) == "240.3"
    assert fmt_interval(None) == "-"


def test_ties_are_overlapping_intervals():
    best = Score(240, 220, 260)
    assert ties(best, [Score(255, 245, 265), Score(300, 270, 330), Score(250), None]) == [True, False, None, None]


def test_verdict_beats_and_no_beat_in_words():
    best, base = Score(200, 190, 210, 100), Score(260, 250, 270, 100)
    assert verdict(3, best, 0, base, "fid", "minimize") == \
        "trial 3 beats the baseline (trial 0) by 60 +- 14 FID (n = 100 images each)"    # sqrt(10^2 + 10^2)
    close = Score(250, 230, 270, 100)
    text = verdict(3, close, 0, base, "fid", "minimize")
    assert text.startswith("no config beat the baseline beyond noise") and "10 +- 22" in text
    acc = verdict(2, Score(0.95, 0.93, 0.97), 0, Score(0.80, 0.78, 0.82), "accuracy", "maximize")
    assert acc.startswith("trial 2 beats the baseline (trial 0) by 0.15 +- 0.03 accuracy")
    assert "not known" in verdict(1, Score(0.1), 0, Score(0.2), "test_loss", "minimize")    # no interval invented
    assert verdict(0, base, 0, base, "fid", "minimize").startswith("no config beat the baseline")


def test_study_verdict_and_ties_from_stored_trials(tmp_path, capsys):
    study = _study(tmp_path, [(260.0, 10.0), (200.0, 10.0), (205.0, 12.0), (250.0, None)])
    trials = study.get_trials()
    assert objective_score(trials[1], 0, "fid") == Score(200.0, 190.0, 210.0, 100)
    assert objective_score(trials[3], 0, "fid") == Score(250.0)        # an old row: no interval
    assert study_verdict(trials, [("fid", "minimize")], 0, 1) == \
        "trial 1 beats the baseline (trial 0) by 60 +- 14 FID (n = 100 images each)"
    assert study_verdict(trials, [("fid", "minimize"), ("accuracy", "maximize")], 0, 1).endswith(
        "(on fid, the first of 2 objectives)")
    assert "no baseline" in study_verdict(trials, [("fid", "minimize")], None, 1)
    assert main(["trials", "verdict", "--storage", f"sqlite:///{tmp_path / 'v.db'}"]) == 0
    cap = capsys.readouterr()
    out = " ".join((cap.out + cap.err).split())    # the table goes to stderr (rich); wrapping undone
    assert "200 [190, 210]" in out and "205 [193, 217]" in out and "250" in out
    assert out.count("tie") == 1 and "verdict: trial 1 beats the baseline (trial 0) by 60 +- 14 FID" in out


def test_no_config_beats_the_baseline_beyond_noise(tmp_path, capsys):
    _study(tmp_path, [(240.0, 20.0), (230.0, 25.0)], name="noise")
    assert main(["trials", "noise", "--storage", f"sqlite:///{tmp_path / 'v.db'}"]) == 0
    cap = capsys.readouterr()
    out = " ".join((cap.out + cap.err).split())    # the table goes to stderr (rich); wrapping undone
    assert "verdict: no config beat the baseline beyond noise" in out and "10 +- 32 FID" in out
    assert "tie" in out


def test_report_shows_intervals_ties_and_the_verdict(tmp_path):
    """The report of the constructed study: intervals where rows have them, "–" for an old row, the verdict."""
    from ddpm.report import write_report

    _study(tmp_path, [(260.0, 10.0), (200.0, 10.0), (205.0, 12.0), (250.0, None)])
    path = write_report("verdict", storage=f"sqlite:///{tmp_path / 'v.db'}", out_dir=tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "trial 1 beats the baseline (trial 0) by 60 +- 14 FID (n = 100 images each)" in md
    assert "200 \\[190, 210\\]" in md and "| tie |" in md and "| worse |" in md   # brackets escaped in report.md
    csv_text = (tmp_path / "report" / "trials.csv").read_text().splitlines()
    assert csv_text[0].startswith("number,state,value_fid,fid_lo,fid_hi,n,tie_with_best,")
    assert csv_text[2].startswith("1,complete,200.0,190.0,210.0,100,,") and csv_text[3].split(",")[6] == "true"
    assert csv_text[4].startswith("3,complete,250.0,,,,,")      # an old row: no interval, no tie verdict
    assert path is not None
