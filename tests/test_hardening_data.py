"""Nothing lost under faults: kills at each write point of an epoch, resume without last.pt, study names
reused with another storage, read-only commands on missing paths, report names with path characters,
file modes under a umask, and a failed sweep's exit code. Each case checks the files that were there
before (checksums) and that errors are one line with no traceback."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ddpm.checkpoint import load_checkpoint
from ddpm.io import read_jsonl

from helpers import REPO, assert_one_line_error, cli_env, run_cli, sweep_file, train_argv as _train_args

TIMING = ("seconds", "images_per_s")


def tree(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` (folders listed with 'dir')."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------------------------
# kills at each write point of the end-of-epoch sequence


# The child patches the writers train() calls (test-only; nothing in the product reads a fault hook) and
# dies with os._exit(9) at one write point of epoch KILL_EPOCH (or the first later epoch that saves best.pt).
_CHILD = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    point, epoch = sys.argv[1], int(sys.argv[2])
    import ddpm.train as T

    real_save, real_append, real_replace = T.save_checkpoint, T.append_jsonl, os.replace
    state = {"epoch": 0}

    def die():
        sys.stdout.flush()
        os._exit(9)

    def save(path, payload):
        state["epoch"] = payload["epoch"]
        real_save(path, payload)
        if point == "after:" + Path(path).name and payload["epoch"] >= epoch:
            die()

    def replace(src, dst, *a, **k):
        name = Path(dst).name
        if point == "before-rename:" + name and state["epoch"] >= epoch:
            die()
        return real_replace(src, dst, *a, **k)

    def append(path, rec):
        if rec["epoch"] == epoch and point == "torn:metrics.jsonl":
            line = json.dumps(rec, default=str) + "\\n"
            with open(path, "a") as f:
                f.write(line[: len(line) // 2])
                f.flush()
                os.fsync(f.fileno())
            die()
        real_append(path, rec)
        if rec["epoch"] == epoch and point == "after:metrics.jsonl":
            die()

    T.save_checkpoint, T.append_jsonl, os.replace = save, append, replace
    from ddpm.cli import main
    sys.exit(main(sys.argv[3:]))
""")

KILL_POINTS = ["before-rename:last.pt", "after:last.pt", "before-rename:best.pt", "after:best.pt",
               "torn:metrics.jsonl", "after:metrics.jsonl"]
EPOCHS, KILL_EPOCH = 3, 2


def _env() -> dict:
    return cli_env(PYTHONPATH=str(REPO))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref")
    r = run_cli(*_train_args(out, "ref", EPOCHS))
    assert r.returncode == 0, r.stderr
    return out / "ref"


def _plain_history(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _assert_same_checkpoint(a: dict, b: dict) -> None:
    assert a["epoch"] == b["epoch"] and a["best_test_loss"] == b["best_test_loss"]
    assert _plain_history(a["history"]) == _plain_history(b["history"])
    for key in ("model", "ema"):
        if a.get(key) is None:
            assert b.get(key) is None
            continue
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name, v in sa[k].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb[k][name])), f"optimizer {k}.{name} differs"


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_at_each_write_point_resumes_to_the_uninterrupted_run(tmp_path, uninterrupted, point):
    name = "k"
    child = subprocess.run([sys.executable, "-c", _CHILD, point, str(KILL_EPOCH), *_train_args(tmp_path, name, EPOCHS)],
                           cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert child.returncode == 9, f"the fault was not injected ({point}): {child.stderr[-2000:]}"
    run = tmp_path / name
    ckpts = run / "checkpoints"
    if point.startswith("before-rename:"):
        target = point.split(":")[1]
        assert list(ckpts.glob(f".{target}.*.tmp")), "the interrupted write left no temporary"
    if point == "torn:metrics.jsonl":
        assert not (run / "metrics.jsonl").read_text().endswith("\n")

    r = run_cli(*_train_args(tmp_path, name, EPOCHS), "--resume")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr

    lines = (run / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # every line readable, none torn
    assert [x["epoch"] for x in rows] == list(range(1, EPOCHS + 1))
    assert _plain_history(rows) == _plain_history(read_jsonl(uninterrupted / "metrics.jsonl"))
    assert not list(ckpts.glob("*.tmp")) and not list(run.glob("*.tmp"))

    last = load_checkpoint(ckpts / "last.pt")
    _assert_same_checkpoint(last, load_checkpoint(uninterrupted / "checkpoints" / "last.pt"))
    assert _plain_history(last["history"]) == _plain_history(rows)
    best = load_checkpoint(ckpts / "best.pt")
    losses = [x["test_loss"] for x in rows]
    assert best["epoch"] == losses.index(min(losses)) + 1
    _assert_same_checkpoint(best, load_checkpoint(uninterrupted / "checkpoints" / "best.pt"))


# ----------------------------------------------------------------------------------------------
# --resume without last.pt


@pytest.mark.slow
def test_resume_without_last_pt_is_refused_and_touches_nothing(tmp_path):
    r = run_cli(*_train_args(tmp_path, "m", 2))
    assert r.returncode == 0, r.stderr
    run = tmp_path / "m"
    (run / "checkpoints" / "last.pt").unlink()
    before = tree(tmp_path)
    r = run_cli(*_train_args(tmp_path, "m", 3), "--resume")
    assert_one_line_error(r, "last.pt is missing", "metrics.jsonl records 2 epoch(s)", "nothing was changed")
    assert tree(tmp_path) == before

    # best.pt alone (metrics.jsonl gone too) is still a run that must not be overwritten
    (run / "metrics.jsonl").unlink()
    before = tree(tmp_path)
    r = run_cli(*_train_args(tmp_path, "m", 3), "--resume")
    assert_one_line_error(r, "best.pt exists", "last.pt is missing")
    assert tree(tmp_path) == before
    # and without --resume the same folder is refused as an existing run
    r = run_cli(*_train_args(tmp_path, "m", 3))
    assert_one_line_error(r, "already holds a run")
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_clean(tiny_cfg):
    from ddpm.train import train

    cfg = tiny_cfg(name="early", **{"train.grid_every": 0})
    run_dir = cfg.run_dir
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"epoch": 1, "train_lo')  # torn first line, no checkpoint
    (run_dir / "checkpoints" / ".last.pt.abc123.tmp").write_bytes(b"partial")
    run = train(cfg, resume=True, quiet=True)
    assert [json.loads(x)["epoch"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1]
    assert run.epoch == 1 and not list((run_dir / "checkpoints").glob("*.tmp"))


# ----------------------------------------------------------------------------------------------
# a sweep whose trials all fail; a study name reused with another storage


def _failing_sweep(tmp_path: Path, study: str) -> Path:
    return sweep_file(tmp_path, f"{study}.yaml", study=study, overrides={"data.root": str(tmp_path / "no-mnist-here")},
                      out_dir="runs", report=True)


@pytest.mark.slow
def test_sweep_with_no_completed_trial_exits_1_and_never_deletes_another_studys_run(tmp_path):
    """Every trial fails (no MNIST under data.root): exit 1 with one line saying why, no report. The
    study name is reused with another storage while runs/<study>/trial-0 holds the first study's run:
    that folder is left byte for byte, this study's trial 0 runs beside it."""
    import optuna

    study = "reused"
    other = tmp_path / "runs" / study / "trial-0"
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints" / "best.pt").write_bytes(b"the other study's best checkpoint")
    (other / "metrics.jsonl").write_text('{"epoch": 1, "test_loss": 0.1}\n')
    before = tree(other)
    storage = f"sqlite:///{tmp_path / 'elsewhere' / 'study.db'}"
    r = subprocess.run([sys.executable, "-m", "ddpm", "sweep", str(_failing_sweep(tmp_path, study)),
                        "--storage", storage], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    why = [ln for ln in r.stderr.splitlines() if "no trial completed" in ln]
    assert len(why) == 1, r.stderr
    assert "2 failed (trial 0: DataError" in why[0] and "0 pruned" in why[0]
    assert f"ddpm trials {study} --storage" in why[0]
    assert not (tmp_path / "reports").exists()  # no report of a study with nothing completed
    assert tree(other) == before
    trials = optuna.load_study(study_name=study, storage=storage).trials
    dirs = [Path(t.user_attrs["run_dir"]) for t in trials]
    assert [d.name for d in dirs] == ["trial-0-v2", "trial-1"]
    mark = json.loads((tmp_path / dirs[0] / ".ddpm-trial.json").read_text())
    assert (mark["study"], mark["trial"]) == (study, 0) and "elsewhere" in mark["storage"]


def test_no_trial_completed_counts_pruned_and_failed(tmp_path):
    import optuna

    from ddpm.sweeps.listing import no_trial_completed

    s = optuna.create_study(study_name="p", storage=f"sqlite:///{tmp_path / 's.db'}")
    s.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params={}, distributions={}))
    s.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={}, distributions={},
                                          user_attrs={"failure_reason": "OSError: disk\nfull [red]"}))
    assert no_trial_completed(s) == ("no trial completed: 1 failed (trial 1: OSError: disk full [red]), 1 pruned; "
                                     "see `ddpm trials p`")
    s.add_trial(optuna.trial.create_trial(value=1.0, params={}, distributions={}))
    assert no_trial_completed(s) is None


# ----------------------------------------------------------------------------------------------
# read-only commands never create anything; report names with path characters


def _cli(capsys, *args: str) -> tuple[int, str]:
    from ddpm.cli import main

    code = main(list(args))
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("argv", [
    ["trials", "q", "--storage", "sqlite:///{tmp}/missing/sub/q.db"],
    ["trials", "q", "--storage", "journal:{tmp}/missing/q.log"],
    ["trials", "q", "--out-dir", "{tmp}/missing"],
    ["studies", "--storage", "sqlite:///{tmp}/missing/q.db"],
    ["studies", "--storage", "journal:///{tmp}/missing/q.log"],
    ["studies", "--out-dir", "{tmp}/missing"],
    ["report", "q", "--storage", "sqlite:///{tmp}/missing/q.db"],
    ["report", "q", "--storage", "journal:{tmp}/missing/q.log", "--out", "{tmp}/out"],
    ["report", "q"],
    ["trials", "q", "--storage", "sqlite:///{tmp}/empty.db"],
    ["studies", "--storage", "sqlite:///{tmp}/empty.db"],
    ["report", "q", "--storage", "sqlite:///{tmp}/empty.db"],
    ["trials", "q", "--storage", "sqlite:///{tmp}"],
])
def test_read_only_commands_on_missing_paths_create_nothing(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.db").write_bytes(b"")
    before = tree(tmp_path)
    code, err = _cli(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert tree(tmp_path) == before
    if argv[0] == "studies" and "--out-dir" in argv:
        assert code == 0  # nothing to list is not an error
        return
    assert code != 0 and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs/x", "..", "sub/../../up"])
def test_report_of_a_study_named_with_path_characters_stays_under_reports(tmp_path, monkeypatch, capsys, name,
                                                                          tiny_cfg):
    import optuna

    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    s = optuna.create_study(study_name=name, storage=url)
    dist = {"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    for value, lr in ((1.0, 1e-3), (2.0, 3e-3)):
        s.add_trial(optuna.trial.create_trial(value=value, params={"train.lr": lr}, distributions=dist,
                                              user_attrs={"config": tiny_cfg(**{"train.lr": lr}).to_dict()}))
    outside = tree(tmp_path)
    code, err = _cli(capsys, "report", name, "--storage", url)
    assert code == 0, err
    written = {k for k, v in tree(tmp_path).items() if outside.get(k) != v}
    assert written and all(k.startswith("work/reports") for k in written), written
    assert not Path("/abs/x").exists()
    out = [p for p in (tmp_path / "work" / "reports").iterdir()]
    assert len(out) == 1 and (out[0] / "report.html").is_file() and "/" not in out[0].name


# ----------------------------------------------------------------------------------------------
# file modes follow the umask


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def test_atomic_writes_respect_the_umask_and_keep_an_existing_mode(tmp_path, umask, tiny_cfg):
    from ddpm.checkpoint import save_checkpoint
    from ddpm.config import save_config
    from ddpm.io import atomic_write_text, current_umask

    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert current_umask() == 0o022
    atomic_write_text(tmp_path / "a.txt", "x")
    save_checkpoint(tmp_path / "c.pt", {"epoch": 1})
    save_config(tiny_cfg(), tmp_path / "config.yaml")
    assert [mode(tmp_path / n) for n in ("a.txt", "c.pt", "config.yaml")] == [0o644] * 3
    umask(0o077)
    assert current_umask() == 0o077
    atomic_write_text(tmp_path / "b.txt", "x")
    assert mode(tmp_path / "b.txt") == 0o600
    atomic_write_text(tmp_path / "a.txt", "y")  # an existing file keeps its mode, as open("w") would
    assert mode(tmp_path / "a.txt") == 0o644
    umask(0o002)
    (tmp_path / "a.txt").chmod(0o640)
    atomic_write_text(tmp_path / "a.txt", "z")
    assert mode(tmp_path / "a.txt") == 0o640 and (tmp_path / "a.txt").read_text() == "z"
    atomic_write_text(tmp_path / "g.txt", "x")
    assert mode(tmp_path / "g.txt") == 0o664


# ----------------------------------------------------------------------------------------------
# the README's main job leaves a clean tree; no machine paths in committed reports


def test_generated_reports_are_ignored_and_examples_tracked():
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0

    if subprocess.run(["git", "rev-parse"], cwd=REPO, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    assert ignored("reports/quickstart/report.html") and ignored("reports/some-study/img/losses.png")
    assert not ignored("reports/examples/quickstart/report.md")
    assert not ignored("reports/benchmarks/cpu-new.json")
    assert (REPO / "reports" / "examples" / "quickstart" / "report.md").is_file()
    readme = (REPO / "README.md").read_text()
    assert "(reports/examples/quickstart/report.md)" in readme


def test_committed_reports_hold_no_machine_paths():
    home = str(Path.home())
    for p in (REPO / "reports").rglob("*"):
        if p.suffix in (".md", ".html", ".yaml", ".csv", ".json"):
            text = p.read_text(errors="replace")
            for needle in ("/work/", "/root/", "/home/", str(REPO) + "/", home + "/"):
                assert needle not in text, f"{p}: {needle}"


def test_study_paths_are_stored_relative_to_the_working_directory(tmp_path, monkeypatch):
    from ddpm.io import portable_path
    from ddpm.sweeps.runner import open_sweep_study
    from ddpm.sweeps.spec import load_sweep

    monkeypatch.chdir(REPO)
    assert portable_path(REPO / "experiments" / "seed.yaml") == "experiments/seed.yaml"
    assert portable_path(Path.home() / "x" / "y.yaml") in ("~/x/y.yaml", str(Path("x/y.yaml")))
    assert portable_path("rel/p.yaml") == "rel/p.yaml"
    spec = load_sweep(REPO / "sweeps" / "quickstart.yaml", storage=f"sqlite:///{tmp_path / 's.db'}")
    study = open_sweep_study(spec)
    assert study.user_attrs["base_experiment"] == "experiments/cpu-quick.yaml"
    assert study.user_attrs["sweep_file"] == "sweeps/quickstart.yaml"
