"""Evaluation: FID maths, the classifier's stored accuracy, diversity, floors, guidance rows and ``ddpm eval`` errors.

A tiny classifier (2000 training images, 1 epoch) trained once per module into a temporary DDPM_CACHE
stands in for the real one: every property tested holds for any trained classifier.
"""
from __future__ import annotations

import json
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
from ddpm.evaluation.classifier import split01
from ddpm.evaluation.metrics import frechet_from_stats


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


# ---- classifier metrics ------------------------------------------------------------------------------


def test_accuracy_of_real_test_images_equals_the_stored_accuracy(clf, test_split):
    images, labels = test_split
    assert 0.5 < clf.test_accuracy < 1.0
    assert conditional_accuracy(clf, images, labels) == clf.test_accuracy
    assert clf.features(images[:7]).shape == (7, 128)
    assert clf.predict(images[:7]).shape == (7,)


def test_cached_classifier_round_trips_with_weights_only(clf):
    ckpt = torch.load(classifier_path("mnist"), map_location="cpu", weights_only=True)
    assert ckpt["test_accuracy"] == clf.test_accuracy
    assert ckpt["meta"]["train_limit"] == 2000


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
    assert best_row(rows) in rows
    assert best_row(rows, "accuracy")["accuracy"] == max(r["accuracy"] for r in rows)


def test_quick_metric_keys(clf, tiny_model):
    model, cfg = tiny_model
    m = quick_metric(model, cfg, n=20, steps=3)
    assert set(m) == {"sample_fid", "sample_accuracy"}
    assert m["sample_fid"] > 0 and 0 <= m["sample_accuracy"] <= 1
    assert quick_metric(model, cfg, n=20, steps=3) == m       # deterministic


# ---- the CLI ------------------------------------------------------------------------------------------


def test_ddpm_eval_end_to_end(clf, tiny_model, tmp_path, capsys):
    model, cfg = tiny_model
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "ema": None, "config": cfg.to_dict()})
    rc = main(["eval", str(ckpt), "--omega", "-1,1", "--n", "10", "--sampler", "ddim", "--steps", "2",
               "--device", "cpu", "--out", str(tmp_path / "ev")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "FID" in out and "floor" in out and "diversity" in out
    assert (tmp_path / "ev" / "eval.json").is_file() and (tmp_path / "ev" / "grids" / "omega1.png").is_file()


@pytest.mark.parametrize("case", ["missing", "corrupt", "omega", "n"])
def test_ddpm_eval_bad_inputs_give_one_line_errors(case, tmp_path, capsys, tiny_model):
    good = tmp_path / "good.pt"
    model, cfg = tiny_model
    save_checkpoint(good, {"model": model.state_dict(), "ema": None, "config": cfg.to_dict()})
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    argv = {"missing": [str(tmp_path / "nope.pt")],
            "corrupt": [str(corrupt)],
            "omega": [str(good), "--omega", "0,two"],
            "n": [str(good), "--n", "1"]}[case]
    rc = main(["eval", *argv, "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("ddpm eval: error:")
    assert {"missing": "no such checkpoint", "corrupt": "not a readable checkpoint",
            "omega": "--omega", "n": "--n 1"}[case] in err


def test_train_classifier_rejects_unknown_dataset(capsys):
    assert main(["eval", "train-classifier", "--dataset", "cifar"]) == 2
    assert "--dataset 'cifar'" in capsys.readouterr().err
