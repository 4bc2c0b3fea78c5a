"""``ddpm bench`` runs end to end at a tiny size and writes its JSON and markdown (no timing asserts)."""
from __future__ import annotations

import json

import pytest

from ddpm.bench import cheapest_within_noise, noise_tolerance
from ddpm.cli import main

TINY = ["diffusion.T=20", "diffusion.beta_T=0.5", "data.test_limit=32"]  # beta_T: the terminal alpha_bar_T guard


@pytest.mark.slow
def test_bench_runs_tiny_and_writes_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("DDPM_PROGRESS", "0")
    out = tmp_path / "bench.json"
    rc = main(["bench", *TINY, "--widths", "8", "--quick", "--batch-size", "16", "--train-steps", "1",
               "--sample-steps", "1", "--fast-steps", "5", "--grid-images", "20", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["format"] == "ddpm-bench/1"
    (row,) = result["rows"]
    assert row["width"] == 8
    for path in ("faithful", "fast"):
        tr, sa = row[path]["train"], row[path]["sample"]
        assert tr["images_per_s"] > 0 and tr["steps"] == 2
        assert sa["seconds_per_step"] > 0 and sa["images"] == 20
    assert row["faithful"]["sample"]["steps"] == 20 and row["faithful"]["sample"]["estimated"]
    assert row["fast"]["sample"]["steps"] == 5
    assert row["ratios"]["train_images_per_s"] > 0
    # same init, same images in the same order, same noise: the two paths' losses agree closely
    p = row["parity"]
    assert abs(p["relative"]) < 0.05, p
    assert result["targets"]["width"] == 8
    md = out.with_suffix(".md").read_text()
    assert "| 8 |" in md and "faithful img/s" in md
    assert "grid times are estimates" in capsys.readouterr().err
    # --merge: the rows of both files in order, the markdown beside the merged JSON; a bad input writes nothing
    other = dict(result, rows=[dict(row, width=16)], created="2000-01-01T00:00:00+00:00")
    (tmp_path / "other.json").write_text(json.dumps(other))
    merged_path = tmp_path / "merged.json"
    assert main(["bench", "--merge", str(out), str(tmp_path / "other.json"), "--out", str(merged_path)]) == 0
    merged = json.loads(merged_path.read_text())
    assert [r["width"] for r in merged["rows"]] == [8, 16] and len(merged["merged_from"]) == 2
    assert "| 16 |" in merged_path.with_suffix(".md").read_text()
    capsys.readouterr()
    (tmp_path / "not-bench.json").write_text(json.dumps({"format": "something else"}))
    bad_out = tmp_path / "bad.json"
    assert main(["bench", "--merge", str(out), str(tmp_path / "not-bench.json"), "--out", str(bad_out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not-bench.json: not a ddpm bench result" in err
    assert not bad_out.exists()


def test_bench_rejects_bad_widths(capsys):
    assert main(["bench", "--widths", "12"]) == 2
    assert "--widths" in capsys.readouterr().err


def _row(sampler, steps, acc, fid, eta=0.0, n=200):
    return {"sampler": sampler, "steps": steps, "eta": eta, "accuracy": acc, "fid": fid, "n": n, "omega": 2.0}


def test_cheapest_within_noise_picks_fewest_steps_that_keep_quality():
    rows = [_row("ddpm", 400, 0.90, 20.0), _row("ddpm", 25, 0.70, 40.0), _row("ddpm", 50, 0.89, 21.0),
            _row("ddim", 25, 0.60, 22.0), _row("ddim", 50, 0.88, 20.5, eta=1.0)]
    pick = cheapest_within_noise(rows)
    assert pick["reference"]["steps"] == 400
    assert pick["choice"]["steps"] == 50 and pick["choice"]["sampler"] == "ddpm"
    assert pick["speedup_steps"] == pytest.approx(8.0)
    tol = noise_tolerance(rows[0])
    assert 0.05 < tol["accuracy"] < 0.07 and tol["fid"] == pytest.approx(3.0)


def test_cheapest_within_noise_falls_back_to_the_reference():
    rows = [_row("ddpm", 400, 0.95, 10.0), _row("ddim", 25, 0.50, 60.0)]
    assert cheapest_within_noise(rows)["choice"]["steps"] == 400
