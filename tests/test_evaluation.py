"""Evaluation: FID maths, the classifier's stored accuracy, diversity, floors, guidance rows and ``ddpm eval`` errors.

A tiny classifier (2000 training images, 1 epoch) trained once per module into a temporary DDPM_CACHE
stands in for the real one: every property tested holds for any trained classifier.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm.checkpoint import save_checkpoint
from ddpm.cli import main
from ddpm.diffusion import ConditionalDDPM
from ddpm.evaluation import (ROW_KEYS, best_row, classifier_path, conditional_accuracy, diversity_score,
                             evaluate_guidance, frechet_distance, get_classifier, quick_metric, real_floor,
                             save_classifier, train_classifier)
from ddpm.evaluation.classifier import SHIPPED_DIR, classifier_train_split, load_classifier, split01
from ddpm.evaluation.metrics import (KIDReference, balanced_indices, fid_interval, frechet_from_stats, gaussian_stats,
                                     kid_reference, kid_with_se, reference_stats, wilson_interval)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("ddpm-cache")
        mp.setenv("DDPM_CACHE", str(path))
        mp.setenv("DDPM_PROGRESS", "0")
        yield path


@pytest.fixture(scope="module")
def clf(cache):
    torch.manual_seed(0)
    tiny = train_classifier("mnist", epochs=1, limit=2000, show_progress=False)
    save_classifier(tiny, classifier_path("mnist"))
    return get_classifier("mnist", train_if_missing=False)


@pytest.fixture(scope="module")
def test_split():
    return split01("mnist", "test")


# ---- FID maths --------------------------------------------------------------------------------------


def test_fid_of_identical_features_is_zero():
    f = torch.randn(500, 16, generator=torch.Generator().manual_seed(0)) * 3 + 1
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)


def test_fid_matches_closed_form_for_two_gaussians():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T + np.eye(d), b @ b.T + 0.5 * np.eye(d)
    # closed form through the symmetric route Tr (S1 S2)^(1/2) = sum sqrt(eig(S1 S2)) (real, >= 0)
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    exact = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
    assert frechet_from_stats(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-9)
    # diagonal covariances: ||mu1 - mu2||^2 + sum (sqrt v1 - sqrt v2)^2
    v1, v2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    diag = float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2))
    assert frechet_from_stats(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(diag, rel=1e-9)
    # and from samples of the two Gaussians, up to sampling error
    x = rng.multivariate_normal(mu1, s1, size=40000)
    y = rng.multivariate_normal(mu2, s2, size=40000)
    assert frechet_distance(x, y) == pytest.approx(exact, rel=0.05)


# ---- intervals and KID -------------------------------------------------------------------------------


def _gaussian_feats(n: int, seed: int, d: int = 32, shift: float = 0.0) -> np.ndarray:
    a = np.random.default_rng(123).normal(size=(d, d)) / np.sqrt(d)      # one fixed covariance
    return np.random.default_rng(seed).normal(size=(n, d)) @ a.T + shift


def test_fid_interval_holds_the_estimate_and_shrinks_with_n():
    ref = gaussian_stats(_gaussian_feats(5000, 0))
    labels = {n: np.arange(n) % 10 for n in (100, 1000)}
    width = {}
    for n in (100, 1000):
        x = _gaussian_feats(n, 1, shift=0.2)
        fid, lo, hi = fid_interval(x, *ref, labels[n])
        assert fid == pytest.approx(frechet_from_stats(*gaussian_stats(x), *ref))
        assert lo < fid < hi
        assert fid_interval(x, *ref, labels[n]) == (fid, lo, hi)            # a fixed generator
        width[n] = hi - lo
    assert width[1000] < width[100] / 2                                     # ~1/sqrt(n): 1/3.2


def test_wilson_interval_matches_its_formula_and_shrinks():
    lo, hi = wilson_interval(8, 10)
    # (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.959964
    z, p, n = 1.959964, 0.8, 10
    c, h = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((c - h, c + h), abs=1e-6)
    assert wilson_interval(0, 10)[0] == pytest.approx(0, abs=1e-12) and wilson_interval(10, 10)[1] == pytest.approx(1)
    big = wilson_interval(800, 1000)
    assert big[1] - big[0] < (hi - lo) / 2


def _kid_direct(x: np.ndarray, y: np.ndarray) -> float:
    """Binkowski et al. 2018, eq. 3, as an explicit double loop."""
    k = lambda a, b: (float(a @ b) / len(a) + 1.0) ** 3
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_kid_matches_a_direct_loop_and_its_jackknife():
    x, y = _gaussian_feats(14, 1, d=5), _gaussian_feats(11, 2, d=5, shift=0.4)
    kid, se = kid_with_se(x, y)
    assert kid == pytest.approx(_kid_direct(x, y), rel=1e-10)
    # the two-sample jackknife from explicit leave-one-out recomputations
    lx = np.array([_kid_direct(np.delete(x, i, 0), y) for i in range(len(x))])
    ly = np.array([_kid_direct(x, np.delete(y, j, 0)) for j in range(len(y))])
    var = 13 / 14 * ((lx - lx.mean()) ** 2).sum() + 10 / 11 * ((ly - ly.mean()) ** 2).sum()
    assert se == pytest.approx(np.sqrt(var), rel=1e-9)
    # identical sets: the x-x and y-y terms equal each other, so KID = sum_{i!=j} k / n(n-1) - 2 mean k
    kk = (x @ x.T / 5 + 1) ** 3
    same = 2 * (kk.sum() - np.trace(kk)) / (14 * 13) - 2 * kk.mean()
    assert kid_with_se(x, x)[0] == pytest.approx(same, rel=1e-10)
    assert kid_with_se(x, x)[0] < 0            # = -2 (mean k(x,x) - mean k(x,x')) / n < 0


def test_kid_stratified_by_label_matches_single_label_when_labels_are_equal():
    x, y = _gaussian_feats(30, 1, d=6), _gaussian_feats(40, 2, d=6)
    assert kid_with_se(x, y, np.zeros(30)) == pytest.approx(kid_with_se(x, y))


def test_kid_real_vs_real_is_zero_within_noise_and_its_interval_shrinks():
    ref = KIDReference.from_features(_gaussian_feats(4000, 0))
    half = {}
    for n in (100, 1000):
        kid, se = kid_with_se(_gaussian_feats(n, 7), ref)     # the same distribution: E[KID] = 0
        assert abs(kid) < 2 * se, (n, kid, se)
        half[n] = se
    assert half[1000] < half[100] / 2
    kid, se = kid_with_se(_gaussian_feats(1000, 7, shift=0.3), ref)   # a real difference is beyond noise
    assert kid > 3 * se


@pytest.mark.slow
def test_kid_of_real_images_against_the_test_split(clf, test_split):
    """Real training images (10 per class, as generated sets are) against the real test split: KID is 0
    within noise; the labels make the estimate stratified like the design."""
    images, labels = classifier_train_split("mnist")
    wanted = torch.arange(200) % 10
    idx = balanced_indices(labels, wanted, seed=3)
    kid, se = kid_with_se(clf.features(images[idx]), kid_reference(clf), wanted)
    assert abs(kid) < 2 * se, (kid, se)
    noise = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    kid_noise, se_noise = kid_with_se(clf.features(noise), kid_reference(clf), wanted)
    assert kid_noise > 3 * se_noise


# ---- classifier metrics ------------------------------------------------------------------------------


@pytest.mark.slow
def test_accuracy_of_real_test_images_equals_the_stored_accuracy(clf, test_split):
    images, labels = test_split
    assert 0.5 < clf.test_accuracy < 1.0
    assert conditional_accuracy(clf, images, labels) == clf.test_accuracy
    assert clf.features(images[:7]).shape == (7, 128)
    assert clf.predict(images[:7]).shape == (7,)


@pytest.mark.slow
def test_cached_classifier_round_trips_with_weights_only(clf):
    ckpt = torch.load(classifier_path("mnist"), map_location="cpu", weights_only=True)
    assert ckpt["test_accuracy"] == clf.test_accuracy
    assert ckpt["meta"]["train_limit"] == 2000


@pytest.mark.slow
def test_diversity_is_one_for_real_data_and_drops_for_a_repeated_image(clf, test_split):
    images, labels = test_split
    real = diversity_score(clf, images[:1000], labels[:1000])
    assert 0.85 < real < 1.15
    first = torch.stack([torch.nonzero(labels == c)[0, 0] for c in range(10)])
    repeated = first.repeat(50)                       # one image per class, 50 times each
    collapsed = diversity_score(clf, images[repeated], labels[repeated])
    assert collapsed < 0.01 < real
    # half the set collapsed sits in between
    mixed = torch.cat([torch.arange(500), repeated[:500]])
    assert collapsed < diversity_score(clf, images[mixed], labels[mixed]) < real


@pytest.mark.slow
def test_real_floor_is_small_and_cached(clf, test_split, cache):
    images, labels = test_split
    floor = real_floor(clf, 200, "mnist")
    noise = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    from ddpm.evaluation import fid_to_test
    assert 0 < floor < fid_to_test(clf, clf.features(noise))
    assert real_floor(clf, 200, "mnist") == floor
    assert any(p.name.endswith("-floors.json") for p in (cache / "classifiers").iterdir())


# ---- guidance sweep and quick metric -----------------------------------------------------------------


@pytest.fixture
def tiny_model(tiny_cfg):
    cfg = tiny_cfg(**{"model.num_feat": 8, "diffusion.T": 10})
    torch.manual_seed(0)
    return ConditionalDDPM(cfg).eval(), cfg


@pytest.mark.slow
def test_evaluate_guidance_rows_json_and_grids(clf, tiny_model, tmp_path):
    model, cfg = tiny_model
    rows = evaluate_guidance(model, cfg, [0.0, 2.0], n=20, sampler="ddim", steps=3, device="cpu",
                             out_dir=tmp_path, show_progress=False, checkpoint="x.pt")
    assert [r["omega"] for r in rows] == [0.0, 2.0]
    for r in rows:
        assert tuple(r) == ROW_KEYS
        assert r["fid"] >= 0 and 0 <= r["accuracy"] <= 1 and r["diversity"] >= 0
        assert (tmp_path / r["grid"]).is_file()
    doc = json.loads((tmp_path / "eval.json").read_text())
    assert doc["sampler"] == "ddim" and doc["steps"] == 3 and doc["n"] == 20 and doc["checkpoint"] == "x.pt"
    assert doc["classifier_test_accuracy"] == clf.test_accuracy and len(doc["rows"]) == 2
    assert set(doc["interval"]) == {"level", "fid", "accuracy", "kid"} and doc["interval"]["level"] == 0.95
    for r in rows:                                   # every score carries its n and its interval
        assert r["n"] == 20
        assert r["fid_lo"] <= r["fid"] <= r["fid_hi"]
        assert 0 <= r["accuracy_lo"] <= r["accuracy"] <= r["accuracy_hi"] <= 1
        assert r["kid_lo"] < r["kid"] < r["kid_hi"]
    assert json.loads(json.dumps(rows)) == rows      # JSON-safe, as Optuna stores them
    assert evaluate_guidance(model, cfg, [2.0], n=20, sampler="ddim", steps=3, device="cpu",
                             show_progress=False)[0]["fid_lo"] == rows[1]["fid_lo"]    # deterministic
    assert best_row(rows) in rows
    assert best_row(rows, "accuracy")["accuracy"] == max(r["accuracy"] for r in rows)


@pytest.mark.slow
def test_quick_metric_keys(clf, tiny_model):
    model, cfg = tiny_model
    m = quick_metric(model, cfg, n=20, steps=3)
    assert set(m) == {"sample_fid", "sample_accuracy"}
    assert m["sample_fid"] > 0 and 0 <= m["sample_accuracy"] <= 1
    assert quick_metric(model, cfg, n=20, steps=3) == m       # deterministic


# ---- reference splits: val for selection, test for final numbers ---------------------------------------


def _hashes(images: torch.Tensor) -> set[str]:
    import hashlib

    return {hashlib.sha1((x * 255).round().byte().numpy().tobytes()).hexdigest() for x in images}


@pytest.mark.slow
def test_classifier_never_trains_on_validation_or_test_images(clf):
    x, _ = classifier_train_split("mnist")
    val, _ = split01("mnist", "val", val_size=5000)
    test, _ = split01("mnist", "test")
    assert len(x) == 55000 and not _hashes(val) & _hashes(x) and not _hashes(test) & _hashes(x)
    assert clf.meta["held_out"] == 5000 and clf.meta["train_images"] == 2000      # the fixture's first 2000
    shipped = sorted(SHIPPED_DIR.glob("mnist-*.pt"))
    assert [p.name for p in shipped] == [classifier_path("mnist").name]          # the old file is gone
    meta = load_classifier(shipped[0]).meta
    assert meta["held_out"] == 5000 and meta["train_images"] == 55000 and meta["train_limit"] is None


@pytest.mark.slow
def test_reference_stats_are_per_split_and_cached_per_split(clf, cache):
    test = reference_stats(clf, split="test")
    val = reference_stats(clf, split="val", val_size=5000)
    small = reference_stats(clf, split="val", val_size=1000)
    assert (test.n, val.n, small.n) == (10000, 5000, 1000)
    assert not np.allclose(test.mu, val.mu) and not np.allclose(val.mu, small.mu)
    names = {p.name for p in (cache / "classifiers").iterdir()}
    assert {f"{clf.key}-test-stats.pt", f"{clf.key}-val5000-stats.pt", f"{clf.key}-val1000-stats.pt"} <= names
    images, _ = split01("mnist", "val", val_size=5000)
    assert frechet_from_stats(*gaussian_stats(clf.features(images)), val.mu, val.sigma) == pytest.approx(0, abs=1e-6)


@pytest.mark.slow
def test_quick_metric_and_evaluate_guidance_score_against_the_requested_split(clf, tiny_model, tmp_path):
    from ddpm.evaluation.guidance import generate
    from ddpm.grids import cycle_labels

    model, cfg = tiny_model
    images = generate(model, cfg, cycle_labels(20, 10), cfg.sample.omega, "ddim", 3, 0.0, torch.device("cpu"),
                      0, batch_size=20)
    mu, sigma = gaussian_stats(clf.features(images))
    expect = {s: frechet_from_stats(mu, sigma, r.mu, r.sigma)
              for s, r in (("val", reference_stats(clf, split="val", val_size=cfg.data.val_size)),
                           ("test", reference_stats(clf, split="test")))}
    assert expect["val"] != expect["test"]
    assert quick_metric(model, cfg, n=20, steps=3)["sample_fid"] == pytest.approx(expect["val"], rel=1e-9)  # default
    assert quick_metric(model, cfg, n=20, steps=3, split="test")["sample_fid"] == pytest.approx(expect["test"], rel=1e-9)
    rows = {s: evaluate_guidance(model, cfg, [cfg.sample.omega], n=20, sampler="ddim", steps=3, device="cpu",
                                 out_dir=tmp_path / s, show_progress=False, split=s)[0] for s in ("val", "test")}
    for s in ("val", "test"):
        assert rows[s]["fid"] == pytest.approx(expect[s], rel=1e-9)
        assert json.loads((tmp_path / s / "eval.json").read_text())["split"] == s
    assert rows["val"]["floor"] != rows["test"]["floor"]
    import dataclasses

    from ddpm.errors import ConfigError
    no_val = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val_size=0))
    with pytest.raises(ConfigError, match="no validation split"):
        quick_metric(model, no_val, n=20, steps=3)


# ---- the CLI ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ddpm_eval_end_to_end(clf, tiny_model, tmp_path, capsys):
    model, cfg = tiny_model
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "ema": None, "config": cfg.to_dict()})
    rc = main(["eval", str(ckpt), "--omega", "-1,1", "--n", "10", "--sampler", "ddim", "--steps", "2",
               "--device", "cpu", "--out", str(tmp_path / "ev")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "FID" in out and "floor" in out and "diversity" in out and "KID" in out
    assert re.search(r"\d \[[-\d.]+, [-\d.]+\]", out) and "95% intervals" in out   # values carry their interval
    assert (tmp_path / "ev" / "eval.json").is_file() and (tmp_path / "ev" / "grids" / "omega1.png").is_file()
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["split"] == "test"      # the default
    rc = main(["eval", str(ckpt), "--omega", "1", "--n", "10", "--sampler", "ddim", "--steps", "2",
               "--device", "cpu", "--out", str(tmp_path / "ev-val"), "--split", "val"])
    assert rc == 0 and json.loads((tmp_path / "ev-val" / "eval.json").read_text())["split"] == "val"
    assert "val split" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "corrupt", "omega", "n", "split"])
def test_ddpm_eval_bad_inputs_give_one_line_errors(case, tmp_path, capsys, tiny_model):
    good = tmp_path / "good.pt"
    model, cfg = tiny_model
    save_checkpoint(good, {"model": model.state_dict(), "ema": None, "config": cfg.to_dict()})
    no_val = tmp_path / "no-val.pt"
    d = cfg.to_dict()
    d["data"]["val_size"] = 0
    save_checkpoint(no_val, {"model": model.state_dict(), "ema": None, "config": d})
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    argv = {"missing": [str(tmp_path / "nope.pt")],
            "corrupt": [str(corrupt)],
            "omega": [str(good), "--omega", "0,two"],
            "n": [str(good), "--n", "1"],
            "split": [str(no_val), "--split", "val"]}[case]
    rc = main(["eval", *argv, "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("ddpm eval: error:")
    assert {"missing": "no such checkpoint", "corrupt": "not a readable checkpoint",
            "omega": "--omega", "n": "--n 1", "split": "without a validation split"}[case] in err


def test_train_classifier_rejects_unknown_dataset(capsys):
    assert main(["eval", "train-classifier", "--dataset", "cifar"]) == 2
    assert "--dataset 'cifar'" in capsys.readouterr().err


def test_one_best_row_for_eval_and_the_sweep_objective() -> None:
    from ddpm.sweeps.metrics import OBJECTIVE_METRICS, best_guidance_row

    nan, inf = float("nan"), float("inf")
    rows = [{"omega": 0.0, "fid": nan, "accuracy": 0.5}, {"omega": 1.0, "fid": 30.0, "accuracy": 0.9},
            {"omega": 2.0, "fid": 20.0, "accuracy": inf}, {"omega": 3.0, "fid": 20.0, "accuracy": None}]
    assert best_row(rows)["omega"] == 2.0                         # lowest FID; NaN loses; first of equals
    assert best_row(rows, "accuracy")["omega"] == 1.0             # highest accuracy; inf and None lose
    assert best_row(rows, "fid", lower=False)["omega"] == 1.0     # the sense can be given
    for name in ("fid", "accuracy"):                              # the objective picks the same row
        assert best_guidance_row(rows, OBJECTIVE_METRICS[name]) is best_row(rows, name)
    assert best_row([{"omega": 4.0, "fid": nan}, {"omega": 5.0, "fid": nan}])["omega"] == 4.0   # all lose: first


# ---- the classifier cache: explicit objects, and `ddpm eval train-classifier --force` ----------------------


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_train_classifier_force_retrains_and_evaluation_uses_it(tiny_model, tmp_path, monkeypatch, capsys):
    from ddpm.evaluation.classifier import ClassifierCache, shipped_classifier_path

    monkeypatch.setenv("DDPM_CACHE", str(tmp_path / "cache"))       # an empty cache: the shipped one is in use
    shipped = shipped_classifier_path("mnist")
    assert ClassifierCache.source("mnist") == shipped
    assert main(["eval", "train-classifier", "--device", "cpu"]) == 0           # show: nothing is trained
    assert str(shipped) in capsys.readouterr().err.replace("\n", "") and not classifier_path("mnist").exists()

    argv = ["eval", "train-classifier", "--force", "--epochs", "1", "--device", "cpu"]
    assert main([*argv, "--limit", "300"]) == 0
    path = classifier_path("mnist")
    assert ClassifierCache.source("mnist") == path and _sha(path) != _sha(shipped)
    retrained = load_classifier(path)
    assert retrained.meta["train_limit"] == 300 and retrained.meta["epochs"] == 1    # not the shipped weights
    assert float(capsys.readouterr().out.split()[-1]) == pytest.approx(retrained.test_accuracy, abs=1e-4)
    old = load_classifier(shipped).net.state_dict()
    assert any(not torch.equal(v, old[k]) for k, v in retrained.net.state_dict().items())

    cache = ClassifierCache()
    first = cache.get("mnist", train_if_missing=False)
    assert first.meta["train_limit"] == 300 and cache.get("mnist") is first          # loaded once
    stamp = (path.stat().st_mtime_ns, _sha(path))
    assert main([*argv, "--limit", "200"]) == 0                                       # --force again: retrained
    assert (path.stat().st_mtime_ns, _sha(path)) != stamp
    again = cache.get("mnist")                                                       # the cache sees the new file
    assert again is not first and again.meta["train_limit"] == 200

    model, cfg = tiny_model                                                          # ... and so does ddpm eval
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "ema": None, "config": cfg.to_dict()})
    assert main(["eval", str(ckpt), "--omega", "1", "--n", "10", "--sampler", "ddim", "--steps", "2",
                 "--device", "cpu", "--out", str(tmp_path / "ev")]) == 0
    doc = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert doc["classifier"] == again.key and doc["classifier_test_accuracy"] == again.test_accuracy
    assert doc["classifier"] != load_classifier(shipped).key


@pytest.mark.slow
def test_reference_statistics_live_on_the_classifier_object(clf, cache):
    """No module-level memo: the same classifier object answers from memory, a freshly loaded one from disk."""
    first = reference_stats(clf, split="val", val_size=700)
    assert reference_stats(clf, split="val", val_size=700) is first
    stats_file = cache / "classifiers" / f"{clf.key}-val700-stats.pt"
    stats_file.unlink()
    fresh = get_classifier("mnist", train_if_missing=False)                          # a new object, no memo
    assert fresh is not clf and fresh.key == clf.key
    again = reference_stats(fresh, split="val", val_size=700)
    assert stats_file.is_file() and again is not first                               # recomputed and rewritten
    assert np.allclose(again.mu, first.mu) and again.n == first.n == 700
