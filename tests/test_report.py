"""``ddpm report`` on a tiny REAL study: ``run_study`` (the sweep runner) trains every trial with the
CLI's ``train()`` into run folders, scores it with the evaluation module's guidance grid, and stores it
in an Optuna SQLite file. The only shortcut: the evaluation classifier is trained on 512 images for one
epoch (its FIDs are real numbers, of a weak classifier).

The study holds the seed-default baseline trial, a second completed trial, a failed trial (its
num_feat is rejected by config validation) and a pruned trial (median pruner on the test loss).
Single-trial, failed-only and two-objective studies are copies of these real trials.
"""
from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import Any

import optuna
import pytest

from ddpm.cli import main
from ddpm.config import load_config
from helpers import REPO, classifier_cache, open_in_chromium, postgres_url as conftest_postgres_url, require_chromium
from helpers import sweep_file

os.environ.setdefault("DDPM_PROGRESS", "0")
os.environ.setdefault("WANDB_MODE", "disabled")
optuna.logging.set_verbosity(optuna.logging.ERROR)

# helpers.SWEEP_TINY, smaller still: fewer images, T=10, a per-epoch grid with a 2-step sampler
TINY = {"data.limit": 128, "data.test_limit": 64, "diffusion.T": 10, "train.batch_size": 32, "train.grid_every": 1,
        "sample.steps": 2}
SECTIONS = ["summary", "best", "top", "history", "importances", "parallel", "slice", "losses", "guidance", "gallery",
            "grids", "failures", "spec"]


def _sweep_file(root: Path) -> Path:
    return sweep_file(
        root, "tiny.yaml", overrides=TINY,
        space={"model.num_feat": {"type": "categorical", "choices": [8, 12]},
               "train.lr": {"type": "categorical", "choices": [1e-7, 1e-3, 3e-3]},
               "diffusion.mask_p": {"type": "categorical", "choices": [0.1, 0.3]}},
        guidance={"omegas": [0, 2], "n": 20, "sampler": "ddim", "steps": 3},
        objectives=[{"metric": "fid", "direction": "minimize"}],
        pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
        prune_on="test_loss",
        enqueue_baseline=True,                                                        # trial 0
        enqueue=[{"model.num_feat": 8, "train.lr": 3e-3, "diffusion.mask_p": 0.3},   # trial 1
                 {"model.num_feat": 12, "train.lr": 1e-3, "diffusion.mask_p": 0.1},  # 2: fails validation
                 {"model.num_feat": 8, "train.lr": 1e-7, "diffusion.mask_p": 0.1}],  # 3: barely trains, pruned
        n_trials=4)


@pytest.fixture(scope="module")
def study_root(tmp_path_factory) -> Path:
    from ddpm.sweeps import load_sweep, run_study

    root = tmp_path_factory.mktemp("report-study")
    with classifier_cache(root / "cache"):
        run_study(load_sweep(_sweep_file(root)))
    return root


def _storage(root: Path) -> str:
    return f"sqlite:///{root / 'runs' / 'tiny' / 'study.db'}"


@pytest.fixture(scope="module")
def report(study_root: Path) -> Path:
    from ddpm.report import write_report

    return write_report("tiny", storage=_storage(study_root), out_dir=study_root / "report")


@pytest.mark.slow
def test_fixture_study_has_every_trial_state(study_root: Path) -> None:
    study = optuna.load_study(study_name="tiny", storage=_storage(study_root))
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "PRUNED"]


@pytest.mark.slow
def test_report_has_every_section(report: Path) -> None:
    out = report.parent
    html = report.read_text()
    md = (out / "report.md").read_text()
    for key in SECTIONS:
        assert f'<section id="{key}">' in html, key
        assert f'<a id="{key}"></a>' in md, key
    titles_html = re.findall(r"<h2>(.*?)</h2>", html)
    titles_md = re.findall(r"^## (.*)$", md, flags=re.M)
    assert titles_html == titles_md
    for text in ("Optimisation history", "Parameter importances", "Loss curves", "Guidance trade-off",
                 "Samples of the best trial", "#0 (baseline)", "short study", "model.num_feat = 12", "pruned after epoch 1",
                 "trials/hour", "95% intervals"):
        assert text in html and text in md, text
    # the summary's verdict line: the best trial against the baseline, in words, on intervals of real rows
    assert re.search(r"trial \d+ beats the baseline \(trial 0\) by [\d.]+ \+- [\d.]+ FID \(n = 20 images each\)"
                     r"|no config beat the baseline", md), md[:3000]
    # self-contained: every image is a data URI; nothing is fetched from anywhere
    assert re.findall(r'src="(?!data:image/png;base64,)', html) == []
    assert "http://" not in html and "https://" not in html
    imgs = re.findall(r"!\[[^\]]*\]\((img/[^)]+)\)", md)
    assert len(imgs) == html.count("<img ") >= 6
    assert all((out / p).is_file() for p in imgs)
    assert "Pareto front" not in html  # single objective


@pytest.mark.slow
def test_trials_csv_has_one_row_per_trial(report: Path, study_root: Path) -> None:
    rows = list(csv.DictReader((report.parent / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["complete", "complete", "failed", "pruned"]
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3]
    study = optuna.load_study(study_name="tiny", storage=_storage(study_root))
    for r, t in zip(rows, study.trials):
        assert r["params_model.num_feat"] == str(t.params["model.num_feat"])
        if t.value is not None:
            assert math.isclose(float(r["value_fid"]), t.value)
        if r["state"] == "complete":       # scored by its guidance grid: an interval and n
            assert float(r["fid_lo"]) <= t.value <= float(r["fid_hi"]) and r["n"] == "20"
        else:                               # failed, or pruned (its value is the last prune metric): none
            assert r["fid_lo"] == r["fid_hi"] == r["n"] == ""
        assert float(r["duration_s"]) >= 0


@pytest.mark.slow
def test_best_config_loads_validates_and_equals_the_best_trial(report: Path, study_root: Path) -> None:
    study = optuna.load_study(study_name="tiny", storage=_storage(study_root))
    best = study.best_trial
    cfg = load_config(report.parent / "best_config.yaml")
    got, want = cfg.to_dict(), dict(best.user_attrs["config"])
    assert got["name"] == "tiny-best" and got["out_dir"] == "runs"
    assert got["sample"]["omega"] == best.user_attrs["best_omega"]
    for key in ("data", "model", "diffusion", "train", "sample", "tracking"):
        assert got[key] == want[key], key
    for k, v in best.params.items():
        section, name = k.split(".")
        assert got[section][name] == v


@pytest.mark.slow
def test_best_config_reruns_with_ddpm_train(report: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(report.parent / "best_config.yaml"), "--no-wandb"]) == 0
    assert (tmp_path / "runs" / "tiny-best" / "checkpoints" / "best.pt").is_file()


def _copy_trials(src: optuna.Study, dst: optuna.Study, numbers: list[int], values=None) -> None:
    for i, n in enumerate(numbers):
        t = src.trials[n]
        v = values[i] if values is not None else t.values
        dst.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions, values=v,
                                                user_attrs=t.user_attrs, state=t.state))


@pytest.mark.slow
def test_single_trial_study_gives_a_report(study_root: Path, tmp_path: Path) -> None:
    from ddpm.report import write_report

    url = _storage(study_root)
    src = optuna.load_study(study_name="tiny", storage=url)
    one = optuna.create_study(study_name="one", storage=url)
    _copy_trials(src, one, [1])
    path = write_report("one", storage=url, out_dir=tmp_path / "one")
    html = path.read_text()
    assert "need at least 2 completed trials" in html
    md = (tmp_path / "one" / "report.md").read_text()
    assert "No baseline trial: the sweep's base config (not recorded in this study) was not run as a trial" in md
    assert (tmp_path / "one" / "best_config.yaml").is_file()
    cfg = load_config(tmp_path / "one" / "best_config.yaml")
    assert (cfg.train.lr, cfg.diffusion.mask_p) == (3e-3, 0.3)


@pytest.mark.slow
def test_study_with_only_failed_trials_gives_a_report(study_root: Path, tmp_path: Path) -> None:
    from ddpm.report import write_report

    url = _storage(study_root)
    src = optuna.load_study(study_name="tiny", storage=url)
    bad = optuna.create_study(study_name="bad", storage=url)
    _copy_trials(src, bad, [2, 3])
    html = write_report("bad", storage=url, out_dir=tmp_path / "bad").read_text()
    assert "No trial has completed yet" in html and "Failed and pruned trials" in html
    assert not (tmp_path / "bad" / "best_config.yaml").exists()


@pytest.mark.slow
def test_multi_objective_study_has_a_pareto_front(study_root: Path, tmp_path: Path) -> None:
    from ddpm.report import write_report

    url = _storage(study_root)
    src = optuna.load_study(study_name="tiny", storage=url)
    multi = optuna.create_study(study_name="multi", storage=url, directions=["minimize", "maximize"])
    multi.set_user_attr("objectives", [{"metric": "fid", "direction": "minimize"},
                                       {"metric": "accuracy", "direction": "maximize"}])
    _copy_trials(src, multi, [0, 1], values=[[src.trials[0].value, 0.5], [src.trials[1].value, 0.4]])
    html = write_report("multi", storage=url, out_dir=tmp_path / "multi").read_text()
    assert '<section id="pareto">' in html and "Pareto-optimal trials" in html
    assert html.count('<img src="data:image/png;base64,') >= 5


@pytest.mark.slow
def test_missing_study_is_a_one_line_error(study_root: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    url = _storage(study_root)
    assert main(["report", "nope", "--storage", url, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no study 'nope'" in err and "tiny" in err  # lists the studies present
    monkeypatch.chdir(tmp_path)  # default storage: runs/nope/study.db, which does not exist
    assert main(["report", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err and "does not exist" in err
    assert not (tmp_path / "runs").exists()  # a report never creates a storage


@pytest.mark.slow
def test_cli_prints_the_report_path(study_root: Path, tmp_path: Path, capsys) -> None:
    assert main(["report", "tiny", "--storage", _storage(study_root), "--out", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r" / "report.html")


def test_storage_password_never_appears(tmp_path: Path, capsys) -> None:
    from ddpm.redact import redact
    from ddpm.report.blocks import Code, Figure, Section, Table, Text

    url = "postgresql://ddpm:s3cretPW@127.0.0.1:1/optuna"  # nothing listens on port 1
    assert main(["report", "tiny", "--storage", url, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "s3cretPW" not in err and "ddpm:***@127.0.0.1" in err
    sections = [Section("s", f"t {url}", [Text(f"storage {url}"), Table(["a"], [[url]], caption="s3cretPW"),
                                         Code("x", title="pw s3cretPW"), Figure("f", b"s3cretPW", "c s3cretPW")])]
    clean = redact(sections, ["s3cretPW"])
    assert "s3cretPW" not in repr(clean).replace("b's3cretPW'", "")   # every text field; PNG bytes are not text
    assert isinstance(clean[0].blocks[3], Figure) and clean[0].blocks[3].png == b"s3cretPW"
    assert "s3cretPW" in repr(sections)   # a copy: the caller's sections are untouched


# ----------------------------------------------------------------------------------------------
# a real browser: headless Chromium over the DevTools protocol (helpers.DevTools)


@pytest.mark.slow
def test_report_in_a_real_browser(report: Path, tmp_path: Path) -> None:
    require_chromium()
    shot = tmp_path / "report-screenshot.png"
    result = open_in_chromium(report, shot, tmp_path / "chromium-profile")
    images = result["images"]
    assert len(images) == report.read_text().count("<img ") >= 6
    assert all(i["complete"] and i["w"] > 0 and i["h"] > 0 for i in images), images
    assert result["errors"] == []
    # the page itself is the only request: every image is inline, nothing is fetched
    assert [u for u in result["requests"] if not u.startswith(("file://", "data:"))] == []
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = os.environ.get("DDPM_REPORT_SCREENSHOT")  # keep a copy to look at: DDPM_REPORT_SCREENSHOT=/tmp/shot.png
    if out:
        Path(out).write_bytes(shot.read_bytes())


@pytest.mark.slow
def test_browser_check_catches_a_broken_image(tmp_path: Path) -> None:
    """The browser check is not vacuous: a page with a broken image and a script error fails it."""
    require_chromium()
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA" alt="broken">'
                   '<script>console.error("boom")</script></body></html>')
    result = open_in_chromium(bad, tmp_path / "bad.png", tmp_path / "profile")
    assert result["images"][0]["w"] == 0
    assert any("boom" in e for e in result["errors"])


def _postgres_url() -> str:
    return conftest_postgres_url("the report test")


@pytest.mark.slow
def test_report_from_postgres_never_shows_the_password(study_root: Path, tmp_path: Path, capsys) -> None:
    import uuid
    from urllib.parse import urlsplit

    url = _postgres_url()
    password = urlsplit(url).password
    assert password
    name = f"report-pg-{uuid.uuid4().hex[:8]}"
    src = optuna.load_study(study_name="tiny", storage=_storage(study_root))
    pg = optuna.create_study(study_name=name, storage=url)
    try:
        for key, value in src.user_attrs.items():
            pg.set_user_attr(key, value)
        _copy_trials(src, pg, [0, 1, 2, 3])
        out = tmp_path / "pg"
        assert main(["report", name, "--storage", url, "--out", str(out)]) == 0
        printed = capsys.readouterr()
        files = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".html", ".md", ".csv", ".yaml")]
        assert {p.name for p in files} == {"report.html", "report.md", "trials.csv", "best_config.yaml"}
        for text in [printed.out, printed.err] + [p.read_text() for p in files]:
            assert password not in text
        assert f"{urlsplit(url).username}:***@" in (out / "report.html").read_text()
    finally:
        optuna.delete_study(study_name=name, storage=url)


# ----------------------------------------------------------------------------------------------
# honest labels: the baseline is the sweep's base config; only the seed's exact DMConfig is the seed default


@pytest.mark.slow
def test_report_names_the_baseline_for_what_it_ran(report: Path, study_root: Path) -> None:
    md = (report.parent / "report.md").read_text()
    assert ("Baseline: trial 0 ran the sweep's base config: cpu-quick + overrides (data.limit=128, data.test_limit=64, "
            "model.num_feat=8, diffusion.T=10, diffusion.beta_T=0.5,") in md
    assert "It is not the seed default (it differs in data.limit, data.test_limit, data.val_limit, model.num_feat," in md
    assert "(seed default)" not in md and "seed's default config" not in md
    assert "| base experiment | experiments/cpu-quick.yaml |" in md          # relative, not an absolute path
    # a best omega at the edge of the grid ([0, 2]) is flagged in the best trial's section
    study = optuna.load_study(study_name="tiny", storage=_storage(study_root))
    flagged = "Note: best omega 2 is the largest tried; the optimum may lie beyond it" in md
    assert flagged == (study.best_trial.user_attrs["best_omega"] == 2.0)


def _label_study(configs: list[dict[str, Any]], baseline: int) -> Any:
    from ddpm.report.collect import Objective, StudyData, TrialData

    study = optuna.create_study()
    dist = {"train.lr": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)}
    trials = []
    for i, cfg in enumerate(configs):
        study.add_trial(optuna.trial.create_trial(params={"train.lr": 1e-4}, distributions=dist, value=float(i),
                                                  user_attrs={"config": cfg, "best_omega": 1.0}))
        trials.append(TrialData(study.trials[-1], None, [], [], cfg))
    spec = {"base": "../experiments/seed.yaml", "overrides": {"train.epochs": 1}}
    return StudyData(study, "memory", [], [Objective("fid", "minimize")], trials, spec,
                     str(REPO / "experiments" / "seed.yaml"), baseline)


def test_only_the_seeds_exact_config_is_called_the_seed_default() -> None:
    from ddpm.report.sections import ReportContext, _trial_label, base_label, top_trials

    seed = load_config(REPO / "experiments" / "seed.yaml")
    exact = seed.to_dict()
    # a sweep trial of the seed: its own run folder, device and tracking, scored by the sweep's guidance grid
    ran_seed = load_config(REPO / "experiments" / "seed.yaml", ["name=trial-1", "out_dir=runs/s", "train.device=cpu",
                                                                "tracking.wandb=disabled", "sample.omega=4",
                                                                "sample.sampler=ddim", "sample.steps=50"]).to_dict()
    one_epoch = load_config(REPO / "experiments" / "seed.yaml", ["train.epochs=1"]).to_dict()
    clipped = load_config(REPO / "experiments" / "seed.yaml", ["sample.clip_x0=true"]).to_dict()
    d = _label_study([one_epoch, exact, ran_seed, clipped], baseline=0)
    labels = [_trial_label(d, t) for t in d.trials]
    assert labels == ["#0 (baseline)", "#1 (seed default)", "#2 (seed default)", "#3"]
    assert base_label(d) == "the sweep's base config: seed + overrides (train.epochs=1)"
    text = " ".join(b.text for b in top_trials(ReportContext(d, None, None, Path("."))).blocks if hasattr(b, "text"))
    assert ("Baseline: trial 0 ran the sweep's base config: seed + overrides (train.epochs=1) (ranked 1 of 4). "
            "It is not the seed default (it differs in train.epochs).") in text
    d = _label_study([exact], baseline=0)
    assert _trial_label(d, d.trials[0]) == "#0 (baseline, seed default)"
    text = " ".join(b.text for b in top_trials(ReportContext(d, None, None, Path("."))).blocks if hasattr(b, "text"))
    assert "That is the seed's DMConfig exactly: the seed default." in text



# ----------------------------------------------------------------------------------------------
# reports people compare with: parameter plots, the top trials' grids side by side


@pytest.mark.slow
def test_parallel_coordinate_and_slice_plots_with_two_or_more_params(report: Path, study_root: Path,
                                                                     tmp_path: Path) -> None:
    from ddpm.report import write_report

    out = report.parent
    md = (out / "report.md").read_text()
    for key in ("parallel", "slice"):  # tiny: 3 searched parameters, 2 completed trials
        assert f"](img/{key}-0.png)" in md and (out / "img" / f"{key}-0.png").is_file(), key
    assert "over diffusion.mask\\_p, model.num\\_feat, train.lr" in md or "over diffusion.mask_p, model.num_feat, train.lr" in md
    # the same two trials searched over one parameter: a note, no plot
    url = _storage(study_root)
    src = optuna.load_study(study_name="tiny", storage=url)
    one = optuna.create_study(study_name="one-param", storage=url)
    for t in src.trials[:2]:
        one.add_trial(optuna.trial.create_trial(params={"train.lr": t.params["train.lr"]},
                                                distributions={"train.lr": t.distributions["train.lr"]},
                                                value=t.value, user_attrs=t.user_attrs, state=t.state))
    html = write_report("one-param", storage=url, out_dir=tmp_path / "one").read_text()
    for key, title in (("parallel", "parallel-coordinate plot"), ("slice", "slice plot")):
        assert f'<section id="{key}">' in html
        assert (f"A {title} needs at least 2 searched parameters and 2 completed trials; this study has "
                f"1 searched parameter(s) (train.lr).") in html
        assert not (tmp_path / "one" / "img" / f"{key}-0.png").exists()
    assert (tmp_path / "one" / "img" / "grid-top-trial0.png").is_file()  # the gallery does not need 2 params


@pytest.mark.slow
def test_gallery_holds_the_top_trials_grids_at_their_best_omegas(report: Path, study_root: Path) -> None:
    from ddpm.formatting import fmt
    from ddpm.report import collect

    data = collect("tiny", _storage(study_root))
    ranked = data.ranked()
    assert len(ranked) == 2                    # both completed trials, the winner and the runner-up
    md = (report.parent / "report.md").read_text()
    gallery = md[md.index('<a id="gallery"></a>'):md.index('<a id="grids"></a>')]
    rows = [line for line in gallery.splitlines() if line.startswith("| ![")]
    assert [re.search(r"img/grid-top-trial(\d+)\.png", r)[1] for r in rows] == [str(t.number) for t in ranked]
    for t, row in zip(ranked, rows):
        g = t.guidance_row(t.best_omega)
        assert (report.parent / "img" / f"grid-top-trial{t.number}.png").read_bytes() == (t.run_dir / g["grid"]).read_bytes()
        assert f"best omega = {fmt(t.best_omega)}" in row and "\\[" in row   # the score's interval, escaped
    html = report.read_text()
    (div,) = re.findall(r'<section id="gallery">.*?<div class="gallery">(.*?)</div>', html, flags=re.S)
    assert div.count("<figure") == 2


@pytest.mark.slow
def test_gallery_lays_its_grids_side_by_side_in_a_browser(report: Path, tmp_path: Path) -> None:
    require_chromium()
    layout = """Array.from(document.querySelectorAll('#gallery .gallery figure img')).map(i => {
        const r = i.getBoundingClientRect();
        return {x: r.x, y: r.y, w: r.width, h: r.height, nw: i.naturalWidth, nh: i.naturalHeight}; })"""
    boxes = open_in_chromium(report, tmp_path / "shot.png", tmp_path / "profile", evaluate=layout)["evaluated"]
    assert len(boxes) == 2
    assert boxes[0]["y"] == boxes[1]["y"] and boxes[1]["x"] >= boxes[0]["x"] + boxes[0]["w"]  # one row
    assert all(b["w"] >= 200 and abs((b["w"] - 2) / (b["h"] - 2) - b["nw"] / b["nh"]) < 0.02  # not squashed
               for b in boxes), boxes                                                 # (less the 1 px border)
