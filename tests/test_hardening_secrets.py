"""Secrets and hostile text (issue 12): storage passwords never leave the machine (console, errors, reports,
W&B run files), report.md escapes what users typed, and an unreachable W&B server costs one short probe.

Real components throughout: a real PostgreSQL role whose password holds '/', ':' and '@', real Optuna
storages, real W&B offline runs grepped byte for byte, real `ddpm` processes.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote, unquote

import optuna
import pytest

from helpers import QUICK_YAML, REPO, TINY, closed_port, overrides_argv, sweep_file, wandb_env
from ddpm.cli import main
from ddpm.redact import redact_argv, redact_text, redact_url, secrets_of
from ddpm.sweeps.storage import StorageError, open_storage

# passwords that broke the old rules: '/', '@', ':', percent-escapes, ';', one equal to a common word
HOSTILE = ["p/w", "p@ss", "p:w", "%2Fx", "a%40b", "semi;colon", "optuna", "s/cr@t:p%2Fw"]
XSS = "<script>alert(1)</script>"


def forms(pw: str) -> set[str]:
    return {pw, unquote(pw)}


def leaked(text: str, pw: str) -> list[str]:
    return [f for f in forms(pw) if f in text]


# ----------------------------------------------------------------------------------------------
# the one redaction implementation


@pytest.mark.parametrize("pw", HOSTILE)
def test_url_password_masked_raw_and_decoded(pw):
    url = f"postgresql+psycopg://ddpm:{pw}@127.0.0.1:5432/optuna"
    assert redact_url(url) == "postgresql+psycopg://ddpm:***@127.0.0.1:5432/optuna"
    assert redact_url(f"storage '{url}' is unreachable") == \
        "storage 'postgresql+psycopg://ddpm:***@127.0.0.1:5432/optuna' is unreachable"
    assert set(secrets_of(url)) == forms(pw)
    # a driver message echoing the decoded password, a libpq conninfo string
    msg = f'connection failed for "{unquote(pw)}" (password={pw}) via {url}'
    out = redact_text(msg, secrets_of(url))
    assert not leaked(out, pw) and "ddpm:***@127.0.0.1" in out and "password=***" in out
    argv = redact_argv(["ddpm", "worker", "s.yaml", "--storage", url, f"--note={unquote(pw)}"])
    assert not any(leaked(a, pw) for a in argv) and argv[3] == "--storage" and argv[:3] == ["ddpm", "worker", "s.yaml"]


def test_password_equal_to_a_common_word():
    """The URL rule masks the password by position, so a database of the same name stays readable in the
    URL; free text from elsewhere (a driver message) has the word masked: more, never less."""
    url = "postgresql://ddpm:optuna@127.0.0.1:1/optuna"
    assert redact_url(f"storage {url}") == "storage postgresql://ddpm:***@127.0.0.1:1/optuna"
    assert redact_text("auth failed: optuna", secrets_of(url)) == "auth failed: ***"
    with pytest.raises(StorageError) as e:
        open_storage(url)
    assert "ddpm:***@127.0.0.1:1/optuna" in str(e.value) and "ddpm:optuna" not in str(e.value)


def test_urls_without_password_are_left_alone():
    for s in ("sqlite:///runs/a/study.db", "journal:///abs/x.log", "ssh://git@github.com/o/r", "mysql://u@h/db",
              "https://api.wandb.ai", "trial-3 p/w@x"):
        assert redact_text(s) == s
    assert secrets_of("sqlite:///runs/a@b/study.db") == [] and secrets_of(None) == []


def test_stored_sweep_spec_masks_the_storage_password_wherever_it_recurs():
    from types import SimpleNamespace

    from ddpm.sweeps.runner import redacted_spec

    pw = "p/w@x%40y"
    url = f"postgresql://ddpm:{pw}@db:5432/optuna"
    raw = {"study": "s", "storage": url, "description": f"copied from {unquote(pw)}", "sampler": {"seed": 1}}
    stored = redacted_spec(SimpleNamespace(raw=raw))
    assert stored["storage"] == "postgresql://ddpm:***@db:5432/optuna" and stored["description"] == "copied from ***"
    assert stored["sampler"] == {"seed": 1} and raw["storage"] == url     # the spec itself is untouched


@pytest.mark.parametrize("pw", HOSTILE)
def test_unreachable_storage_error_hides_the_password(pw, capsys):
    url = f"postgresql://ddpm:{pw}@127.0.0.1:1/db1"   # nothing listens on port 1
    with pytest.raises(StorageError) as e:
        open_storage(url)
    msg = str(e.value)
    assert not leaked(msg, pw) and "ddpm:***@127.0.0.1:1/db1" in msg and "\n" not in msg
    if "@" in pw:
        assert "%40" in msg  # a raw '@' is named, not echoed as a host name
    for argv in (["report", "s", "--storage", url], ["trials", "s", "--storage", url], ["studies", "--storage", url]):
        assert main(argv) != 0
        out, err = capsys.readouterr()
        assert not leaked(out + err, pw) and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ----------------------------------------------------------------------------------------------
# a real PostgreSQL role whose password holds '/', ':' and '@' (SQLAlchemy takes '/' and ':' raw, '@' as %40)


def _psql(sql: str) -> None:
    subprocess.run(["su", "postgres", "-c", f"psql -v ON_ERROR_STOP=1 -q -c {shlex_quote(sql)}"], check=True,
                   capture_output=True, text=True, timeout=60)


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


@pytest.fixture
def hostile_role():
    """(url, password): a fresh role and database; the password has '/', ':', '@' and a '%2F' escape."""
    if os.geteuid() != 0 or not shutil.which("psql") or not shutil.which("su"):
        why = "creating a PostgreSQL role needs root (su postgres -c psql)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    name = f"ddpm_sec_{uuid.uuid4().hex[:8]}"
    password = "s/cr@t:pw%2F;x"   # decoded by nobody: a literal '%2F' in the password itself
    sql_pw = password.replace("'", "''")
    _psql(f"CREATE ROLE {name} LOGIN PASSWORD '{sql_pw}'")
    _psql(f"CREATE DATABASE {name} OWNER {name}")
    url = f"postgresql://{name}:{password.replace('%', '%25').replace('@', '%40')}@127.0.0.1:5432/{name}"
    try:
        yield url, password
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _psql(f"DROP ROLE IF EXISTS {name}")


def _grep_tree(root: Path, needles: set[str]) -> list[str]:
    hits = []
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            hits += [f"{f}: {n!r}" for n in needles if n.encode() in data]
    return hits


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(DDPM_PROGRESS="0", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO), HOME=str(tmp_path / "home"),
               WANDB_SILENT="true", WANDB_DISABLE_CODE="true", WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
               WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"), WANDB_DATA_DIR=str(tmp_path / "wandb-data"),
               OMP_NUM_THREADS="1")
    env.update(extra)
    return env


@pytest.mark.slow
def test_real_role_with_hostile_password_leaks_nowhere(hostile_role, tmp_path):
    """A sweep on that role with W&B offline and the URL on argv: console, errors, the trial and study W&B
    runs (argv metadata), report.html, report.md and trials.csv hold no form of the password."""
    url, password = hostile_role
    needles = forms(password) | forms(url.split(":", 2)[2].rsplit("@", 1)[0])
    open_storage(url)   # SQLAlchemy connects with the raw '/' and ':'
    wrong = url.replace("pw%252F", "pX")
    with pytest.raises(StorageError) as e:
        open_storage(wrong)
    assert "***@127.0.0.1" in str(e.value) and not any(n in str(e.value) for n in needles | {"s/cr@t:pX"})

    sweep = sweep_file(tmp_path, study="hostile-pw", n_trials=1, report=True,
                       overrides={**TINY, "data.limit": 128, "data.test_limit": 64, "tracking.wandb": "offline",
                                  "train.grid_every": 1})
    p = subprocess.run([sys.executable, "-m", "ddpm", "sweep", str(sweep), "--storage", url], cwd=tmp_path,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    p2 = subprocess.run([sys.executable, "-m", "ddpm", "report", "hostile-pw", "--storage", url, "--out",
                         str(tmp_path / "report")], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                        timeout=300)
    assert p2.returncode == 0, p2.stdout + p2.stderr
    console = p.stdout + p.stderr + p2.stdout + p2.stderr
    assert not [n for n in needles if n in console], console
    runs = sorted((tmp_path / "runs").glob("**/offline-run-*"))
    assert len(runs) >= 2, runs   # the trial's run and the study run
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "report.html").is_file()
    assert "\\*\\*\\*@127.0.0.1" in (tmp_path / "report" / "report.md").read_text()   # *** escaped
    assert "***@127.0.0.1" in (tmp_path / "report" / "report.html").read_text()
    assert _grep_tree(tmp_path, needles) == []


# ----------------------------------------------------------------------------------------------
# W&B: argv (with a storage URL) is recorded in every run's metadata; it must be the redacted one


@pytest.mark.slow
def test_wandb_run_metadata_holds_redacted_argv(tiny_cfg, tmp_path, monkeypatch):
    from ddpm.tracking import tracker_callback
    from ddpm.train import train
    from wandb_reader import offline_runs, read_offline_run, read_records

    wandb_env(monkeypatch, WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"))
    pw = "Pw/Se@cr3t"
    url = f"postgresql://ddpm:{quote(pw, safe='/')}@127.0.0.1:5432/db"
    argv = ["ddpm", "worker", "sweep.yaml", "--storage", url]
    monkeypatch.setattr(sys, "argv", list(argv))
    cfg = tiny_cfg(**{"data.limit": 128, "data.test_limit": 64, "sample.steps": 2, "tracking.wandb": "offline"})
    run = train(cfg, callbacks=[tracker_callback(cfg, job_type="trial", extra_config={"storage": url})], quiet=True)
    assert sys.argv == argv   # restored after wandb.init
    [run_folder] = offline_runs(run.run_dir / "wandb")
    assert read_offline_run(run_folder).exit_code == 0
    env = [r.environment for r in read_records(next(run_folder.glob("run-*.wandb")))
           if r.WhichOneof("record_type") == "environment"]
    assert env and list(env[0].args) == ["worker", "sweep.yaml", "--storage",
                                         "postgresql://ddpm:***@127.0.0.1:5432/db"]
    assert env[0].host and env[0].python   # the rest of the metadata is kept
    assert _grep_tree(run.run_dir / "wandb", forms(pw) | {quote(pw, safe="/")}) == []


# ----------------------------------------------------------------------------------------------
# report.md: what users typed is escaped; code blocks stay literal inside a fence nothing closes early


def _outside_fences(md: str) -> str:
    """report.md without its fenced code blocks (CommonMark: the closing fence is a backtick run at least
    as long as the opening one); fails if a fence never closes."""
    out, fence = [], None
    for line in md.splitlines():
        m = re.match(r"^ {0,3}(`{3,})", line)
        if fence is None:
            if m:
                fence = m.group(1)
                continue
            out.append(line)
        elif m and len(m.group(1)) >= len(fence) and line.strip() == m.group(1):
            fence = None
    assert fence is None, "a code fence is never closed"
    return "\n".join(out)


def test_report_md_escapes_names_descriptions_choices_and_reasons(tmp_path):
    from ddpm.report import write_report

    name = f"xss {XSS} | `tick` *b* [l](x)"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name=name, storage=storage)
    desc = f"desc {XSS} | pipe ``` fence `code`"
    study.set_user_attr("spec", {"study": name, "description": desc, "pruner": "none",
                                 "sampler": {"name": f"tpe{XSS}"}})
    study.set_user_attr("objectives", [{"metric": "test_loss", "direction": "minimize"}])
    choice = f"{XSS}|`c`"
    for i, sched in enumerate(["linear", choice]):
        study.enqueue_trial({"diffusion.schedule": sched})
        t = study.ask({"diffusion.schedule": optuna.distributions.CategoricalDistribution(["linear", choice])})
        assert t.params["diffusion.schedule"] == sched
        if i == 0:
            from ddpm.config import load_config

            t.set_user_attr("config", load_config(str(REPO / "experiments" / "cpu-quick.yaml")).to_dict())
            study.tell(t, 0.5)
        else:
            t.set_user_attr("failure_reason", f"ConfigError: diffusion.schedule = {choice!r} {XSS} | ```boom```")
            study.tell(t, state=optuna.trial.TrialState.FAIL)
    out = tmp_path / "report"
    write_report(name, storage, out)
    md = (out / "report.md").read_text()
    prose = _outside_fences(md)
    assert "<script" not in prose.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in prose
    assert XSS not in (out / "report.html").read_text()
    assert "\\| `tick`" in prose or "\\|" in prose   # the pipe is escaped, not a column separator
    # every table row has as many cells as its header
    for block in re.split(r"\n\s*\n", prose):
        rows = [r for r in block.splitlines() if r.startswith("|")]
        if rows:
            n = len(re.split(r"(?<!\\)\|", rows[0]))
            assert all(len(re.split(r"(?<!\\)\|", r)) == n for r in rows), block
    assert "alert(1)" in md   # the text is shown, escaped, not dropped


def test_markdown_inline_rules():
    from ddpm.report.blocks import Code, Text
    from ddpm.report.markdown import block_md, escape_md, fence_for, inline_md

    assert escape_md("a|b <i> & *x* _y_ [z] `q` #h ~s~ num_feat") == \
        "a\\|b &lt;i&gt; &amp; \\*x\\* \\_y\\_ \\[z\\] \\`q\\` \\#h \\~s\\~ num_feat"
    assert inline_md("run `ddpm report x` now") == "run `ddpm report x` now"
    assert inline_md(f"run `{XSS}`") == "run <code>&lt;script&gt;alert(1)&lt;/script&gt;</code>"
    assert inline_md("1. not a list") == "1\\. not a list" and inline_md("- no") == "\\- no"
    assert fence_for("a ``` b") == "````" and fence_for("x") == "```"
    code = block_md(Code("x: 1\n```\n" + XSS, "yaml", title=f"t{XSS}"))
    assert code.count("````") == 2 and "<summary>t&lt;script&gt;" in code
    assert block_md(Text(f"{XSS}\n# heading", note=True)) == "*&lt;script&gt;alert(1)&lt;/script&gt; \\# heading*"


# ----------------------------------------------------------------------------------------------
# W&B credentials but no server: one short probe per process, offline, nothing lost


class Blackhole:
    """A TCP server that accepts connections and never answers (a hung W&B server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture(params=["refused", "blackhole"])
def dead_wandb(request):
    if request.param == "refused":
        yield f"http://127.0.0.1:{closed_port()}"
    else:
        hole = Blackhole()
        yield f"http://127.0.0.1:{hole.port}"
        hole.close()


@pytest.mark.slow
def test_train_with_credentials_and_dead_server_goes_offline_quickly(dead_wandb, tmp_path):
    """`ddpm train` with a dummy key: one notice, an offline run that `wandb sync --dry-run` accepts, and the
    whole run far below W&B's 90 s init timeout."""
    from wandb_reader import offline_runs, read_offline_run

    env = _env(tmp_path, WANDB_API_KEY="k" * 40, WANDB_BASE_URL=dead_wandb)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "ddpm", "train", str(QUICK_YAML),
                        *overrides_argv({k: v for k, v in {**TINY, "data.limit": 128, "data.test_limit": 64}.items()
                                         if k != "tracking.wandb"}),
                        "tracking.wandb=auto", f"out_dir={tmp_path / 'runs'}", "name=dead"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    assert elapsed < 80, elapsed   # generous (2 shared cores): W&B alone waited 90 s before, then logged nothing
    out = p.stdout + p.stderr
    assert out.count("tracking offline for this process") == 1 and "Traceback" not in out
    [run] = offline_runs(tmp_path / "runs" / "dead" / "wandb")
    wb = read_offline_run(run)
    assert wb.exit_code == 0 and [r["epoch"] for r in wb.history if "epoch" in r][-1] == 1
    sync = subprocess.run([str(Path(sys.executable).parent / "wandb"), "sync", "--dry-run", str(run)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert sync.returncode == 0 and "Traceback" not in sync.stdout + sync.stderr, sync.stdout + sync.stderr


@pytest.mark.slow
def test_sweep_probes_once_per_process_and_every_run_is_offline(tmp_path, monkeypatch, capsys, fresh_probe):
    """Two trials and the study run in one process: one probe, one notice, three complete offline runs."""
    from ddpm.sweeps.finish import log_study_run
    from ddpm.sweeps import load_sweep
    from ddpm.sweeps.runner import run_study
    from ddpm.tracking import wandb_run
    from wandb_reader import offline_runs, read_offline_run

    wandb_env(monkeypatch, WANDB_API_KEY="k" * 40, WANDB_BASE_URL=f"http://127.0.0.1:{closed_port()}",
              WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"))
    calls = []
    real_probe = wandb_run._probe
    monkeypatch.setattr(wandb_run, "_probe", lambda url, timeout: calls.append(url) or real_probe(url, timeout))
    monkeypatch.chdir(tmp_path)
    path = sweep_file(tmp_path, study="dead-wandb", n_trials=2,
                      overrides={"data.limit": 128, "data.test_limit": 64, "sample.steps": 2, "tracking.wandb": "auto"})
    spec = load_sweep(path)
    study = run_study(spec)
    log_study_run(study, spec)
    assert len(calls) == 1
    out = capsys.readouterr()
    assert (out.out + out.err).count("tracking offline for this process") == 1
    runs = offline_runs(tmp_path / "runs")
    assert len(runs) == 3, runs
    got = [read_offline_run(r) for r in runs]
    assert all(r.exit_code == 0 for r in got) and sorted(r.job_type for r in got) == ["study", "trial", "trial"]


def test_probe_answers(monkeypatch):
    """None for a server that answers (even 401), a reason for refused / silent / 5xx; bounded by the timeout."""
    import http.server

    from ddpm.tracking import wandb_run

    class Handler(http.server.BaseHTTPRequestHandler):
        status = 401

        def do_HEAD(self):
            self.send_response(Handler.status)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hole = Blackhole()
    try:
        for url, ok in ((f"http://127.0.0.1:{server.server_port}", True), (f"http://127.0.0.1:{closed_port()}", False),
                        (f"http://127.0.0.1:{hole.port}", False)):
            monkeypatch.setattr(wandb_run, "_probe_cache", {})
            monkeypatch.setenv("WANDB_BASE_URL", url)
            t0 = time.monotonic()
            why = wandb_run.wandb_unreachable(timeout=1.0)
            assert (why is None) == ok, (url, why)
            assert time.monotonic() - t0 < 10
        Handler.status = 503
        monkeypatch.setattr(wandb_run, "_probe_cache", {})
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_port}")
        assert wandb_run.wandb_unreachable(timeout=1.0) == "HTTP 503"
    finally:
        server.shutdown()
        hole.close()



@pytest.mark.slow
def test_server_that_refuses_the_key_falls_back_offline(tmp_path, monkeypatch, fresh_probe):
    """The server answers (the probe passes) but refuses the dummy key: that run and every later one in the
    process go offline; nothing is lost."""
    import http.server

    from ddpm.tracking import wandb_run
    from ddpm.tracking.base import RunSpec
    from wandb_reader import offline_runs, read_offline_run

    class Refuse(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"errors": ["unauthorized"]}')

        do_HEAD = do_GET = do_POST = _answer

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    wandb_env(monkeypatch, WANDB_API_KEY="k" * 40, WANDB_BASE_URL=f"http://127.0.0.1:{server.server_port}",
              WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"))
    try:
        assert wandb_run.resolve_mode("auto") == "online"   # it answers
        tracker = wandb_run.WandbTracker(RunSpec(project="p", entity=None, job_type="train", name="x", mode="online"))
        tracker.start(tmp_path / "run")
        assert tracker.active and tracker.spec.mode == "offline"
        tracker.log({"epoch": 1, "train/noise_loss": 0.5})
        tracker.finish("complete")
        assert wandb_run.resolve_mode("auto") == "offline"  # the rest of the process does not try again
    finally:
        server.shutdown()
    [run] = offline_runs(tmp_path / "run")
    wb = read_offline_run(run)
    assert wb.exit_code == 0 and wb.history[-1]["train/noise_loss"] == 0.5
