"""ddpm bench --time-to-quality (issue 15): the benchmark file, the training clock (points at fixed intervals of
training time plus the final one, scoring excluded, training stopped at the budget), points.csv, reruns that
skip finished entries, and the thresholds and ratios on hand-made points."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from ddpm.cli import main
from ddpm.time_to_quality.clock import IntervalScorer
from ddpm.time_to_quality.points import COLUMNS
from ddpm.time_to_quality.thresholds import summarise
from ddpm.train import Callback, train
from helpers import REPO, TINY, overrides_argv

TINY_ENTRY = overrides_argv({k: v for k, v in TINY.items() if k != "train.epochs"}) + [
    "data.val_size=64", "data.val_limit=64", "data.test_limit=64", "train.batch_size=32"]


def bench_file(tmp_path: Path, name: str = "ttq.yaml", **changes) -> Path:
    """A tiny two-entry benchmark: 2 s budgets scored every second, n = 32, omegas 1 and 3."""
    data = {"budget_s": 2.0, "every_s": 1.0, "n": 32, "sampler": "ddim", "steps": 5, "eta": 1.0,
            "omegas": [1.0, 3.0], "seed": 0, "split": "val",
            "entries": [{"label": "ref", "config": str(REPO / "experiments" / "cpu-quick.yaml"),
                         "overrides": TINY_ENTRY + ["train.epochs=100"]},
                        {"label": "short", "config": str(REPO / "experiments" / "cpu-quick.yaml"),
                         "overrides": TINY_ENTRY + ["train.epochs=1"], "every_s": 5.0}]}
    data.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ----------------------------------------------------------------------------------------------
# thresholds and ratios on hand-made points

def _point(label: str, t: float, acc: float, fid: float, step: int, omega: float = 2.0, floor: float = 10.0,
           half: float = 0.01, final: int = 0) -> dict:
    return {"label": label, "train_seconds": t, "step": step, "final": final, "omega": omega, "floor": floor,
            "accuracy": acc, "accuracy_lo": acc - half, "accuracy_hi": acc + half,
            "fid": fid, "fid_lo": fid * 0.9, "fid_hi": fid * 1.1}


def test_times_take_the_best_omega_and_the_first_point():
    rows = [_point("a", 100, 0.90, 30, 10), _point("a", 100, 0.975, 50, 10, omega=4.0),   # accuracy by omega 4
            _point("a", 200, 0.99, 19, 20), _point("a", 300, 0.99, 12, 30, final=1)]
    t = summarise(rows, ["a"])["a"]
    assert t["accuracy"]["seconds"] == 100 and t["fid"]["seconds"] == 200 and t["both"]["seconds"] == 200
    # the noise range: accuracy 0.975 +- 0.01 is not confirmed at 100 s (lo 0.965); at 200 s it is
    assert t["accuracy"]["optimistic"] == 100 and t["accuracy"]["confirmed"] == 200
    assert t["fid"]["optimistic"] == 200 and t["fid"]["confirmed"] == 300   # 19 * 1.1 > 20; 12 * 1.1 <= 20
    assert t["last_seconds"] == 300
    # both needs one omega meeting both targets at the same point: omega 4 at 100 s has accuracy, not FID
    assert summarise([_point("b", 100, 0.90, 15, 1), _point("b", 100, 0.99, 50, 1, omega=4.0)], ["b"])["b"][
        "both"]["seconds"] is None


def test_ratios_exact_bounds_and_not_reached():
    ref = [_point("ref", 150, 0.5, 100, 1), _point("ref", 600, 0.98, 15, 4, final=1)]
    fast = [_point("fast", 150, 0.99, 15, 1), _point("fast", 600, 0.99, 12, 4, final=1)]
    never = [_point("never", 300, 0.5, 100, 1), _point("never", 600, 0.6, 90, 2, final=1)]
    s = summarise(ref + fast + never, ["ref", "fast", "never"])
    assert s["fast"]["ratio_to_reference"]["accuracy"]["value"] == 0.25
    assert s["fast"]["ratio_to_reference"]["accuracy"]["kind"] == "="
    # never reached: at least its budget over the reference's time
    r = s["never"]["ratio_to_reference"]["accuracy"]
    assert (r["kind"], r["value"], r["text"]) == (">", 1.0, "> 1.00")
    assert s["never"]["accuracy"]["seconds"] is None
    # the reference did not reach it: the entry's time over the reference's last point is an upper bound
    s2 = summarise(never + fast, ["never", "fast"])
    r = s2["fast"]["ratio_to_reference"]["fid"]
    assert (r["kind"], r["value"]) == ("<", 0.25)
    s3 = summarise(never + never, ["never"])
    assert s3["never"]["ratio_to_reference"]["both"] == {"value": None, "kind": None, "tie": False,
                                                         "text": "neither reached it"}


def test_overlapping_noise_ranges_are_a_tie():
    a = [_point("a", 100, 0.975, 15, 1, half=0.02), _point("a", 200, 0.99, 15, 2, half=0.005)]
    b = [_point("b", 100, 0.96, 15, 1, half=0.02), _point("b", 200, 0.975, 15, 2, half=0.004)]
    s = summarise(a + b, ["a", "b"])
    r = s["b"]["ratio_to_reference"]["accuracy"]
    assert r["value"] == 2.0 and r["tie"] and "tie" in r["text"]
    clear = [_point("c", 100, 0.5, 15, 1), _point("c", 400, 0.99, 15, 2, half=0.001)]
    assert not summarise(a + clear, ["a", "c"])["c"]["ratio_to_reference"]["accuracy"]["tie"]


# ----------------------------------------------------------------------------------------------
# bad files: one line, exit != 0, no traceback

@pytest.mark.parametrize("change, needle", [
    ({"budget_s": -1.0}, "budget_s = -1.0"),
    ({"omegas": "two"}, "omegas"),
    ({"bogus": 1}, "unknown key 'bogus'"),
    ({"steps": 500}, "steps"),
    ({"split": "train"}, "split 'train'"),
    ({"entries": []}, "entries"),
    ({"entries": [{"label": "x", "config": "nope.yaml"}]}, "entries[0].config = 'nope.yaml'"),
    ({"entries": [{"label": "x", "config": str(REPO / "experiments" / "seed.yaml"), "overrides": ["model.num_feat=7"]}]},
     "num_feat"),
    ({"entries": [{"label": "x"}]}, "entries[0] needs 'config'"),
])
def test_bad_file_is_one_line_error(tmp_path, capsys, change, needle):
    path = bench_file(tmp_path, **change)
    code = main(["bench", "--time-to-quality", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("ddpm bench: error: ") and str(path) in lines[0] and needle in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------
# the clock, on the real training loop with a clock the test moves: 1 s per step, 100 s per score

class _Tick(Callback):
    def __init__(self, clock: list[float]) -> None:
        self.clock = clock

    def on_step_end(self, run) -> None:
        self.clock[0] += 1.0


@pytest.mark.slow
@pytest.mark.parametrize("epochs, budget, expected", [
    (100, 5.0, [(2, 0), (4, 0), (5, 1)]),          # the budget stops it after 5 steps
    (1, 100.0, [(2, 0), (4, 0), (6, 0), (8, 1)]),  # 1 epoch = 8 steps ends first: its last step is the final point
])
def test_points_at_fixed_training_seconds_scoring_excluded(tiny_cfg, tmp_path, epochs, budget, expected):
    clock = [0.0]
    marks = []

    def score(run, mark):
        marks.append(mark)
        clock[0] += 100.0   # scoring time: never counted as training

    cfg = tiny_cfg(**{"train.epochs": epochs, "train.batch_size": 32, "train.grid_every": 0})   # 256 images: 8 steps
    scorer = IntervalScorer(2.0, budget, score, clock=lambda: clock[0])
    run = train(cfg, run_dir=tmp_path / "run", callbacks=[_Tick(clock), scorer], quiet=True)
    scorer.finish(run)
    assert [(m.train_seconds, int(m.final)) for m in marks] == expected
    assert [m.step for m in marks] == [int(t) for t, _ in expected]
    assert marks[-1].images_seen == 32 * marks[-1].step and marks[-1].epoch == round(marks[-1].step / 8, 3)
    assert run.status == ("stopped" if epochs == 100 else "complete")
    assert run.step == expected[-1][0]          # training ended at the budget's step
    assert run.epoch == (0 if epochs == 100 else 1)   # a partial epoch is not recorded


# ----------------------------------------------------------------------------------------------
# end to end: the folder, and a rerun that skips what finished

def _rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_benchmark_folder_and_rerun(tmp_path, capsys, tiny_classifier):
    path, out = bench_file(tmp_path), tmp_path / "out"
    assert main(["bench", "--time-to-quality", str(path), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"points.csv", "summary.json", "summary.md", "time-to-quality.png"}
    with (out / "points.csv").open() as f:
        assert tuple(next(csv.reader(f))) == COLUMNS
    rows = _rows(out / "points.csv")
    for label in ("ref", "short"):
        mine = [r for r in rows if r["label"] == label]
        assert len(mine) % 2 == 0 and {r["omega"] for r in mine} == {"1.0", "3.0"}     # every omega per point
        assert [r["final"] for r in mine].count("1") == 2 and mine[-1]["final"] == "1"  # one final point, last
        assert all(r["n"] == "32" and r["sampler"] == "ddim" and r["steps"] == "5" for r in mine)
        assert all(float(r["accuracy_lo"]) <= float(r["accuracy"]) <= float(r["accuracy_hi"]) for r in mine)
        assert all(float(r["fid_lo"]) <= float(r["fid_hi"]) and float(r["floor"]) > 0 for r in mine)
    ref = [r for r in rows if r["label"] == "ref"]
    assert float(ref[-1]["train_seconds"]) >= 2.0 and float(ref[-1]["epoch"]) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"] == "ref" and set(summary["entries"]) == {"ref", "short"}
    assert summary["entries"]["ref"]["ratio_to_reference"]["accuracy"]["text"] == "neither reached it"
    assert summary["machine"]["torch"] and summary["load_avg_start"] is not None
    assert "--time-to-quality" in summary["command"] and "| short |" in (out / "summary.md").read_text()
    capsys.readouterr()

    # a finished folder: nothing trains again
    before = (out / "points.csv").read_text()
    assert main(["bench", "--time-to-quality", str(path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "ref: already finished" in err and "short: already finished" in err
    assert (out / "points.csv").read_text() == before

    # an interrupted entry (no final row): dropped and trained again; the finished one is skipped
    kept = [r for r in rows if not (r["label"] == "short")] + [dict(rows[0], label="short")]
    with (out / "points.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(kept)
    assert main(["bench", "--time-to-quality", str(path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "ref: already finished" in err and "short did not finish" in err
    again = _rows(out / "points.csv")
    assert [r for r in again if r["label"] == "ref"] == ref
    assert [r["final"] for r in again if r["label"] == "short"].count("1") == 2

    # other scoring settings would not compare: refused, nothing changed
    other = bench_file(tmp_path, name="other.yaml", n=16)
    after = (out / "points.csv").read_text()
    assert main(["bench", "--time-to-quality", str(other), "--out", str(out)]) != 0
    assert "n = 32" in capsys.readouterr().err and (out / "points.csv").read_text() == after
