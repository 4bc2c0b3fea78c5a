"""The ``s3://bucket/prefix`` artifact store (ddpm/sweeps/artifact_s3.py) against a real S3-compatible server:
SeaweedFS started on the loopback address by the ``s3_server`` fixture (tests/helpers.py). Also the generic
``put_file`` / ``get_file`` operations on every store, and the one-line errors of a bad location, endpoint or key."""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import optuna
import pytest

from helpers import REPO, S3_SECRET_KEY, assert_one_line_error, closed_port, run_cli, sweep_file
from ddpm.errors import ConfigError
from ddpm.sweeps.artifact_s3 import parse_s3_location
from ddpm.sweeps.artifacts import ARTIFACT_ATTR, get_file, open_artifact_store, put_file
from ddpm.sweeps.record import TrialRecord


def _bucket() -> str:
    return f"ddpm-{uuid.uuid4().hex[:12]}"


def _client(server):
    import boto3

    return boto3.session.Session(aws_access_key_id=server.env["AWS_ACCESS_KEY_ID"], region_name="us-east-1",
                                 aws_secret_access_key=server.env["AWS_SECRET_ACCESS_KEY"]).client(
        "s3", endpoint_url=server.endpoint)


def _keys(server, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in _client(server).list_objects_v2(Bucket=bucket).get("Contents", []))


# ----------------------------------------------------------------------------------------------
# no server needed


def test_locations_parse_and_malformed_ones_are_refused():
    """Bucket and prefix (slashes trimmed); a bad bucket name, credentials in the location (never echoed) and
    empty / '.' / '..' prefix parts are one-line ConfigErrors naming the location and the form to write."""
    assert parse_s3_location("s3://my-bucket/a/b/") == parse_s3_location("S3://my-bucket/a/b")
    where = parse_s3_location("s3://my-bucket/a/b/")
    assert (where.bucket, where.prefix, where.key("x"), str(where)) == ("my-bucket", "a/b", "a/b/x", "s3://my-bucket/a/b")
    assert parse_s3_location("s3://my.bucket").key("x") == "x"
    for bad, needle in (("s3://", "not a valid S3 bucket name"), ("s3://Big_Bucket/x", "'Big_Bucket' is not a valid"),
                        ("s3://ab/x", "not a valid"), ("s3://bucket/a//b", "empty, '.' or '..' part"),
                        ("s3://bucket/a/../b", "empty, '.' or '..' part")):
        with pytest.raises(ConfigError, match="s3://BUCKET") as e:
            open_artifact_store(bad)
        assert needle in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="no credentials or port in the location") as e:
        open_artifact_store("s3://AKIAX:hunter2secret@bucket/p")
    assert "hunter2secret" not in str(e.value) and "AWS_SECRET_ACCESS_KEY" in str(e.value)


def test_boto3_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)   # as on a machine without the s3 extra
    with pytest.raises(ConfigError, match=r"'s3://bucket/p': boto3 is not installed; pip install 'ddpm-sweeps\[s3\]'"):
        open_artifact_store("s3://bucket/p")


def test_an_unreachable_endpoint_is_one_line(monkeypatch):
    """Nothing listens on the endpoint: the opener says so (and which variable sets it) instead of retrying for minutes."""
    for k, v in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}", "AWS_ACCESS_KEY_ID": "k",
                 "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with pytest.raises(ConfigError, match=r"artifact store 's3://bucket/p': cannot reach the S3 endpoint "
                                          r"http://127\.0\.0\.1:\d+ .*AWS_ENDPOINT_URL") as e:
        open_artifact_store("s3://bucket/p")
    assert S3_SECRET_KEY not in str(e.value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "not a url")
    with pytest.raises(ConfigError, match="Invalid endpoint.*set AWS_ENDPOINT_URL"):
        open_artifact_store("s3://bucket/p")


def test_missing_credentials_name_the_variables(monkeypatch, tmp_path):
    """No key in the environment, no AWS config files, no instance metadata: the variables to set are named."""
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    for k, v in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}", "AWS_EC2_METADATA_DISABLED": "true",
                 "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                 "AWS_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=r"'s3://bucket/p': no AWS credentials for http://127\.0\.0\.1:\d+; "
                                          r"set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"):
        open_artifact_store("s3://bucket/p")
    from ddpm.sweeps.artifact_s3 import s3_client

    assert s3_client("s3://bucket/p").meta.region_name == "eu-west-1"   # AWS_REGION when AWS_DEFAULT_REGION is unset


def test_put_and_get_file_on_a_folder_store(tmp_path):
    """Keys the caller names, with sub-folders; a missing key is False (and writes nothing); a key leaving the
    store is refused by Optuna's folder store."""
    store = open_artifact_store(str(tmp_path / "store"))
    src = tmp_path / "last.pt"
    src.write_bytes(bytes(range(256)) * 40)
    put_file(store, "trial-3/checkpoints/last.pt", src)
    assert (tmp_path / "store" / "trial-3" / "checkpoints" / "last.pt").read_bytes() == src.read_bytes()
    assert get_file(store, "trial-3/checkpoints/last.pt", tmp_path / "back" / "last.pt")
    assert (tmp_path / "back" / "last.pt").read_bytes() == src.read_bytes()
    assert not get_file(store, "trial-4/checkpoints/last.pt", tmp_path / "none" / "last.pt")
    assert not (tmp_path / "none").exists()
    assert sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file()) == ["last.pt"]   # no .part left
    with pytest.raises(ValueError):
        put_file(store, "../outside", src)


# ----------------------------------------------------------------------------------------------
# a real S3-compatible server


@pytest.mark.slow
def test_the_store_round_trips_files_under_its_prefix(s3_env, tmp_path, monkeypatch):
    """create=True makes the bucket; Optuna's upload and our put_file land under prefix/; both come back
    byte-identical; create=False on a missing bucket and a wrong secret are one-line errors without the secret."""
    bucket = _bucket()
    location = f"s3://{bucket}/studies/s1"
    with pytest.raises(ConfigError, match=f"no bucket '{bucket}' at {s3_env.endpoint}; create it"):
        open_artifact_store(location, create=False)
    store = open_artifact_store(location, create=True)
    study = optuna.create_study()
    trial = study.ask()
    png = tmp_path / "omega2.png"
    png.write_bytes(b"\x89PNG" + bytes(range(256)) * 50)
    artifact_id = optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(png), study_or_trial=trial)
    put_file(store, "trial-0/checkpoints/last.pt", png)
    assert _keys(s3_env, bucket) == sorted([f"studies/s1/{artifact_id}", "studies/s1/trial-0/checkpoints/last.pt"])
    again = open_artifact_store(location, create=False)   # another process, the same store
    optuna.artifacts.download_artifact(artifact_store=again, file_path=str(tmp_path / "down.png"), artifact_id=artifact_id)
    assert (tmp_path / "down.png").read_bytes() == png.read_bytes()
    assert get_file(again, "trial-0/checkpoints/last.pt", tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == png.read_bytes()
    assert not get_file(again, "trial-1/checkpoints/last.pt", tmp_path / "missing.pt")
    with pytest.raises(optuna.artifacts.exceptions.ArtifactNotFound):
        open_artifact_store(f"s3://{bucket}/other", create=False).open_reader(artifact_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(ConfigError, match=rf"access denied \(\w+\) to bucket '{bucket}' at {s3_env.endpoint}; "
                                          r"check AWS_ACCESS_KEY_ID") as e:
        open_artifact_store(location)
    assert S3_SECRET_KEY not in str(e.value) and "wrong-secret" not in str(e.value)


def _dashboard_get(storage: str, tmp_path: Path, path: str) -> bytes:
    """GET ``path`` from `ddpm dashboard`'s WSGI application on the study (in this process, no port)."""
    from wsgiref.util import setup_testing_defaults

    from ddpm.sweeps.dashboard import dashboard_app, dashboard_target

    app = dashboard_app(dashboard_target("tiny", storage, tmp_path / "runs"))
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status and status[0].startswith("200"), (status, body[:300])
    return body


def _secret_free(texts: dict[str, str]) -> None:
    for where, text in texts.items():
        assert S3_SECRET_KEY not in text, where


@pytest.mark.slow
def test_a_sweep_stores_its_grids_and_best_checkpoint_in_s3(s3_env, tmp_path):
    """`ddpm sweep --artifacts s3://bucket/prefix`: the study records the location, the trial's grids and best.pt
    are objects under the prefix and download byte-identical to the run folder's (through the store and through
    `ddpm dashboard`'s optuna-dashboard application); the secret key is in no output,
    no study or trial attribute and no file the sweep or `ddpm report` wrote."""
    bucket = _bucket()
    location = f"s3://{bucket}/team/tiny"
    path = sweep_file(tmp_path, n_trials=1, overrides={"train.grid_every": 1})
    env = {"PYTHONPATH": str(REPO)}
    r = run_cli("sweep", str(path), "--artifacts", location, "--no-report", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    storage = f"sqlite:///{tmp_path / 'runs' / 'tiny' / 'study.db'}"
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert study.user_attrs[ARTIFACT_ATTR] == location
    (trial,) = study.trials
    metas = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
    run_dir = Path(trial.user_attrs["run_dir"])
    local = {p.name: p for p in [*run_dir.glob("grids/*.png"), run_dir / "checkpoints" / "best.pt"]}
    assert {m.filename for m in metas} == set(local) and len(local) >= 2, (metas, local)
    # every object under the prefix is one the trial points at: its dashboard artifacts and its outputs record
    # (last.pt, metrics, config: ddpm/sweeps/trial_outputs.py); superseded per-epoch copies were removed
    outputs = TrialRecord.from_trial(trial).outputs
    assert {"checkpoints/last.pt", "metrics.jsonl"} <= set(outputs), outputs
    assert _keys(s3_env, bucket) == sorted({f"team/tiny/{i}" for i in [m.artifact_id for m in metas] + list(outputs.values())})
    store = open_artifact_store(location, create=False)
    for m in metas:
        out = tmp_path / "down" / m.filename
        assert get_file(store, m.artifact_id, out) and out.read_bytes() == local[m.filename].read_bytes(), m.filename
        assert _dashboard_get(storage, tmp_path, f"/artifacts/{study._study_id}/{trial._trial_id}/{m.artifact_id}") \
            == local[m.filename].read_bytes(), m.filename   # optuna-dashboard serves it from the bucket
    rep = run_cli("report", "tiny", "--storage", storage, "--out", str(tmp_path / "report"), cwd=tmp_path, env=env)
    assert rep.returncode == 0, rep.stderr[-3000:]
    files = {str(p): p.read_text(errors="replace") for p in tmp_path.rglob("*")
             if p.is_file() and p.suffix in (".html", ".md", ".csv", ".yaml", ".json", ".jsonl", ".txt", ".log")}
    attrs = {"study": repr(study.user_attrs) + repr(study._storage.get_study_system_attrs(study._study_id)),
             "trial": repr(trial.user_attrs) + repr(trial.system_attrs)}
    _secret_free({"sweep": r.stdout + r.stderr, "report": rep.stdout + rep.stderr, **attrs, **files})
    assert (tmp_path / "report" / "report.html").is_file()


@pytest.mark.slow
def test_a_bad_store_is_one_line_and_leaves_the_study_alone(s3_env, tmp_path):
    """An unreachable endpoint creates no study; on a study that exists (its store recorded), a wrong secret
    stops the resumed sweep before any trial: one line, exit 2, no traceback, no secret, the study unchanged."""
    from ddpm.sweeps.runner import open_sweep_study
    from ddpm.sweeps.spec import load_sweep

    path = sweep_file(tmp_path, n_trials=1)
    storage = tmp_path / "runs" / "tiny" / "study.db"
    env = {"PYTHONPATH": str(REPO), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}"}
    location = f"s3://{_bucket()}/p"
    r = run_cli("sweep", str(path), "--artifacts", location, cwd=tmp_path, env=env)
    line = assert_one_line_error(r, f"artifact store '{location}': cannot reach the S3 endpoint", "AWS_ENDPOINT_URL")
    assert S3_SECRET_KEY not in line
    assert not storage.exists() or optuna.get_all_study_summaries(f"sqlite:///{storage}") == []
    spec = load_sweep(path)
    spec.artifacts = location
    open_sweep_study(spec)   # the study, its store recorded (the bucket made), no trial run yet
    before = optuna.load_study(study_name="tiny", storage=f"sqlite:///{storage}")
    assert before.user_attrs[ARTIFACT_ATTR] == location
    attrs, n = dict(before.user_attrs), len(before.trials)
    wrong = "wrong-" + S3_SECRET_KEY[::-1]
    r = run_cli("sweep", str(path), "--n-trials", "2", cwd=tmp_path,
                env={"PYTHONPATH": str(REPO), "AWS_SECRET_ACCESS_KEY": wrong})
    line = assert_one_line_error(r, f"artifact store '{location}': access denied", "AWS_SECRET_ACCESS_KEY")
    assert S3_SECRET_KEY not in r.stdout + r.stderr and wrong not in r.stdout + r.stderr
    after = optuna.load_study(study_name="tiny", storage=f"sqlite:///{storage}")
    assert len(after.trials) == n and after.user_attrs == attrs

