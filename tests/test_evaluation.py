"""ltzoo eval with kept predictions, intervals and shifted priors; ltzoo compare; their bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures import make_imagefolder

from ltzoo.cli import main
from ltzoo.runfolder.predictions import FORMAT, load_predictions, save_predictions
from ltzoo.training.evaluation import evaluate_logits


def _json(capsys, *argv) -> dict:
    rc = main([*map(str, argv), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def _fails(capsys, *argv) -> str:
    rc = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    assert rc == 2 and out == "", (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def fake_predictions(path, n_per_class=30, classes=6, seed=0, fingerprint="abc", labels=None):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class) if labels is None else labels
    z = torch.randn(len(y), classes, generator=g) + 2.0 * torch.nn.functional.one_hot(y, classes)
    meta = {
        "format": FORMAT,
        "dataset": "synthetic",
        "model": f"m{seed}",
        "num_classes": classes,
        "class_names": [f"c{i}" for i in range(classes)],
        "train_counts": [500, 200, 80, 30, 12, 5],
        "shot_thresholds": [100, 20],
        "splits": {"test": {"source": "synthetic", "images": len(y), "fingerprint": fingerprint}},
    }
    return save_predictions(path, {"test": z}, {"test": y}, meta), z, y


def test_eval_predictions_recomputes_every_metric(tmp_path, capsys):
    path, z, y = fake_predictions(tmp_path / "p.safetensors")
    out = _json(
        capsys, "eval", "--predictions", path, "--bootstrap", "200", "--shifted-priors", "--output", tmp_path / "out"
    )
    want = evaluate_logits(z, y, [500, 200, 80, 30, 12, 5], (100, 20), "test", bootstrap=200)
    got = out["metrics"]
    for k in ("acc", "hm", "gm", "min_recall", "many", "medium", "few", "ece", "nll", "brier", "top5"):
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
    assert got["bootstrap"]["intervals"] == want["bootstrap"]["intervals"]
    assert len(out["shifted_priors"]["rows"]) == 11
    for f in ("eval.json", "reliability.png", "per_class_recall.png", "shifted_priors.png"):
        assert (tmp_path / "out" / f).is_file(), f


def test_eval_model_save_predictions_then_predictions_gives_the_same_numbers(tmp_path, capsys):
    import timm

    import ltzoo  # noqa: F401  (registers resnet20_cifar)
    from ltzoo.data import load_dataset
    from ltzoo.runfolder.model_io import save_model

    data = make_imagefolder(tmp_path / "data", {"train": [6, 3, 2], "val": [2, 2, 2], "test": [4, 4, 4]})
    ds = load_dataset("imagefolder", data_dir=str(data))
    run = tmp_path / "run"
    torch.manual_seed(0)
    save_model(timm.create_model("resnet20_cifar", num_classes=3, in_chans=3), run, ds)
    flags = ["--dataset", "imagefolder", "--data-dir", data, "--workers", "0", "--bootstrap", "50"]
    first = _json(capsys, "eval", run, *flags, "--save-predictions", tmp_path / "p.safetensors")
    pred = load_predictions(tmp_path / "p.safetensors")
    assert pred.meta["dataset"] == "imagefolder" and pred.logits["test"].shape == (12, 3)
    again = _json(capsys, "eval", "--predictions", tmp_path / "p.safetensors", *flags[:4], "--bootstrap", "50")
    assert again["metrics"] == first["metrics"]
    same = _json(capsys, "compare", run, tmp_path / "p.safetensors", *flags[:6])
    assert all(
        same["metrics"][k]["difference"] == 0 and same["metrics"][k]["p_value"] == 1.0 for k in ("acc", "hm", "nll")
    )


def test_compare_identical_models_zero_difference_p_one(tmp_path, capsys):
    a, _, _ = fake_predictions(tmp_path / "a.safetensors")
    b, _, _ = fake_predictions(tmp_path / "b.safetensors")
    out = _json(capsys, "compare", a, b, "--bootstrap", "100")
    for k in ("acc", "hm", "gm", "min_recall", "few", "nll", "brier", "top5"):
        m = out["metrics"][k]
        assert m["difference"] == 0.0 and m["interval"] == [0.0, 0.0] and m["p_value"] == 1.0, k


def test_compare_two_models_finds_the_better_one(tmp_path, capsys):
    y = torch.arange(6).repeat_interleave(100)
    a, za, _ = fake_predictions(tmp_path / "a.safetensors", labels=y)
    zb = za + 3.0 * torch.nn.functional.one_hot(y, 6)  # B is A made more confident in the true class
    meta = load_predictions(a).meta
    save_predictions(tmp_path / "b.safetensors", {"test": zb}, {"test": y}, meta)
    out = _json(capsys, "compare", a, tmp_path / "b.safetensors", "--bootstrap", "300")
    assert out["metrics"]["acc"]["difference"] > 0 and out["metrics"]["acc"]["interval"][0] > 0
    assert out["metrics"]["acc"]["p_value"] < 0.01


def test_compare_refuses_different_test_sets(tmp_path, capsys):
    a, _, _ = fake_predictions(tmp_path / "a.safetensors", fingerprint="one")
    b, _, _ = fake_predictions(tmp_path / "b.safetensors", fingerprint="two")
    assert "different test sets" in _fails(capsys, "compare", a, b)


def test_predictions_classes_not_matching_the_dataset(tmp_path, capsys):
    data = make_imagefolder(tmp_path / "data", {"train": [3, 2], "val": [1, 1], "test": [2, 2]})
    path, _, _ = fake_predictions(tmp_path / "p.safetensors")
    line = _fails(
        capsys,
        "eval",
        "--predictions",
        path,
        "--dataset",
        "imagefolder",
        "--data-dir",
        data,
        "--output",
        tmp_path / "out",
    )
    assert "has 6 classes and imagefolder 2" in line and "pass the dataset" in line
    assert not (tmp_path / "out").exists()


def test_empty_class_in_the_test_split(tmp_path, capsys):
    y = torch.tensor([0, 0, 1, 1, 2, 2, 4, 4, 5, 5])  # class 3 has no test image
    path, _, _ = fake_predictions(tmp_path / "p.safetensors", labels=y)
    line = _fails(capsys, "eval", "--predictions", path, "--output", tmp_path / "out")
    assert "no image of 1 class (e.g. class 3)" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "prior,match",
    [("0.5,0.5", "has 2 values but the model has 6 classes"), ("0.3,0.3,0.3,0.3,0.3,0.3", "sums to 1.8, not 1")],
)
def test_bad_test_prior(tmp_path, capsys, prior, match):
    path, _, _ = fake_predictions(tmp_path / "p.safetensors")
    line = _fails(capsys, "eval", "--predictions", path, "--test-prior", prior, "--output", tmp_path / "out")
    assert match in line and not (tmp_path / "out").exists()


def test_test_prior_reweights_and_corrects(tmp_path, capsys):
    path, _, _ = fake_predictions(tmp_path / "p.safetensors")
    out = _json(capsys, "eval", "--predictions", path, "--bootstrap", "0", "--test-prior", "0.5,0.2,0.1,0.1,0.05,0.05")
    row = out["test_prior"]
    assert row["shares"] == pytest.approx([0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
    assert set(row) >= {"plain", "given", "em", "em_prior", "em_error"}
    assert "bootstrap" not in out["metrics"]


@pytest.mark.slow
def test_a_recipe_keeps_its_predictions_and_intervals(tmp_path, capsys, fresh_accelerate):
    """A recipe's final evaluation (RunContext.final_evaluation -> ltzoo.training.evaluation.evaluate_splits, kept by
    RunFolder.keep_predictions) writes predictions.safetensors and reliability.png beside results.json, whose test
    metrics carry the probability metrics and intervals;
    `ltzoo eval --predictions` recomputes the same numbers without the model."""
    from ltzoo.recipes import pretrain

    data = make_imagefolder(tmp_path / "data", {"train": [40, 12, 5], "val": [3, 3, 3], "test": [6, 6, 6]}, channels=1)
    run = tmp_path / "run"
    pretrain.main(
        [
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(data),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--workers",
            "0",
            "--no-progress",
            "--model",
            "resnet20_cifar",
            "--output",
            str(run),
        ]
    )
    capsys.readouterr()
    res = json.loads((run / "results.json").read_text())
    test = res["metrics"]["test"]
    assert {"ece", "nll", "brier", "classwise_ece", "bootstrap"} <= set(test) and test["top5"] is None  # 3 classes
    assert (run / "reliability.png").is_file()
    pred = load_predictions(run / "predictions.safetensors")
    assert set(pred.logits) == {"val", "test"} and pred.train_counts == res["train_counts"]
    again = _json(capsys, "eval", "--predictions", run / "predictions.safetensors", "--bootstrap", "1000")["metrics"]
    for k in ("acc", "hm", "gm", "min_recall", "ece", "nll", "brier"):
        assert again[k] == test[k], k
    assert again["bootstrap"]["intervals"] == test["bootstrap"]["intervals"]
