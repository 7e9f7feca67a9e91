"""benchmarks/regimes.py's tables without training (run folders written by hand), and which_method's answer per
regime; ltzoo.data.profiles.data_regime, which places a user's data in the regime map."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ltzoo.data.profiles import data_regime, longtail_counts
from ltzoo.runfolder.predictions import FORMAT

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when the script runs: it imports its neighbours
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    "profile, rho, eta",
    [("step:0.2", 100, 0.2), ("step:0.8", 10, 0.8), ("step", 10, 0.5), ("exp", 100, 0.5)],
)
def test_data_regime_reads_rho_and_the_head_share_off_the_counts(profile, rho, eta):
    assert data_regime(longtail_counts(300, 10, rho, profile)) == pytest.approx((rho, eta))
    assert data_regime([7, 7, 7]) == (1.0, 1.0)  # balanced: every class is a head class
    with pytest.raises(ValueError, match="one image in each"):
        data_regime([5, 0])


def _metrics(hm: float) -> dict:
    return {"hm": hm, "min_recall": hm - 0.1, "acc": hm + 0.02, "many": hm + 0.05, "few": hm - 0.05}


def _predictions(path: Path, correct_share: float, labels: torch.Tensor) -> None:
    """A predictions file whose test logits get ``correct_share`` of each class right (the rest: the next class)."""
    n = len(labels)
    logits = torch.zeros(n, 2)
    right = torch.zeros(n, dtype=torch.bool)
    for c in (0, 1):
        idx = (labels == c).nonzero().flatten()
        right[idx[: round(correct_share * len(idx))]] = True
    pred = torch.where(right, labels, 1 - labels)
    logits[torch.arange(n), pred] = 5.0
    meta = {"format": FORMAT, "num_classes": 2, "train_counts": [300, 30], "shot_thresholds": [100, 20]}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"test.logits": logits, "test.labels": labels}, str(path), metadata={"ltzoo": json.dumps(meta)})


def test_regime_tables_winners_and_btm_against_lt_soups(tmp_path, monkeypatch):
    mod = _load("regimes", monkeypatch)
    monkeypatch.setattr(mod, "BASE", tmp_path / "runs")
    monkeypatch.setattr(mod, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(mod, "RHOS", (10,))
    monkeypatch.setattr(mod, "ETAS", (0.2, 0.8))
    # scratch only; BTM + GML well ahead of LT-Soups at eta 0.2 on every seed, tied with it at eta 0.8
    hms = {
        0.2: {"CE": [0.50, 0.52, 0.51], "BTM + GML": [0.80, 0.82, 0.81], "LT-Soups": [0.70, 0.71, 0.72]},
        0.8: {"CE": [0.60, 0.62, 0.61], "BTM + GML": [0.80, 0.70, 0.90], "LT-Soups": [0.85, 0.75, 0.80]},
    }
    labels = torch.arange(200) % 2
    for eta, rows in hms.items():
        for seed in mod.SEEDS:
            for row, _, flags, key in mod.runs_of("scratch", 10, eta, seed):
                out = mod._out(flags)
                out.mkdir(parents=True)
                hm = rows.get(row, [0.3] * 3)[seed]
                res = {
                    "metrics": {"test": {**_metrics(hm), "bootstrap": {"intervals": {"hm": [hm - 0.01, hm + 0.01]}}}}
                }
                if key:  # the cRT row is a head of the gml run's table
                    res = {"table": {key: {"test": _metrics(hm)}}, "metrics": {"test": _metrics(0.0)}}
                (out / "results.json").write_text(json.dumps(res))
                if seed == 0 and row in ("BTM + GML", "LT-Soups"):
                    _predictions(out / "predictions.safetensors", 0.9 if row == "BTM + GML" else 0.6, labels)
    rows = mod.collect()
    mod.write(rows)
    results = tmp_path / "results"
    table = (results / "regimes.md").read_text()
    assert "| scratch | 10 | 0.2 | BTM + GML | 3 | 81.00 ± 1.00 | 79.0 to 81.0 |" in table
    assert "| scratch | 10 | 0.2 | 3 | BTM + GML |\n" in table  # the only winner: the seeds separate it from LT-Soups
    assert "| scratch | 10 | 0.8 | 3 | BTM + GML, LT-Soups, CE |" in table  # ties the seeds cannot separate
    vs = {
        v["eta"]: v
        for v in json.loads((results / "regimes.json").read_text())["btm_vs_lt_soups"]
        if v["soup"] == "LT-Soups"
    }
    assert vs[0.2]["difference"] == pytest.approx(10.0) and vs[0.2]["seeds"] == 3
    low, high = vs[0.2]["interval"]
    assert 0 < low < 10 < high  # paired by seed: the differences 10, 11, 9
    low, high = vs[0.8]["interval"]
    assert low < 0 < high
    boot = vs[0.2]["bootstrap_seed0"]  # seed 0's test images: 90% right against 60%, HM of the two classes
    assert boot[0] < 30 < boot[1]
    assert "| scratch | 10 | 0.2 | uniform | 3 | +10.00 |" in table
    assert "| scratch | 10 | 0.2 | sequential | 3 | +51.00 |" in table  # the sequential-merge row: 30 on every seed
    with open(results / "regimes.csv") as f:
        first = next(csv.DictReader(f))
    assert first["hm_per_seed"] == "50.00 52.00 51.00" and "hm_by_seed" not in first
    assert (results / "regimes.png").stat().st_size > 10_000


def _regimes_json(path: Path, rows: list[tuple]) -> None:
    """regimes.json as benchmarks/regimes.py writes it: each row's test values (points) per seed."""
    out = []
    for setting, rho, eta, method, by_seed in rows:
        per_seed = {
            str(s): {k: hm + d for k, d in (("hm", 0.0), ("min_recall", -10.0), ("acc", 2.0))}
            for s, hm in by_seed.items()
        }
        out.append(
            {"setting": setting, "rho": rho, "eta": eta, "method": method, "seeds": len(by_seed), "by_seed": per_seed}
        )
    path.write_text(json.dumps({"rows": out, "btm_vs_lt_soups": []}))


def test_which_method_answers_for_the_nearest_regime(tmp_path, monkeypatch, capsys):
    mod = _load("which_method", monkeypatch)
    path = tmp_path / "regimes.json"
    three = lambda hm: {0: hm - 1, 1: hm, 2: hm + 1}  # noqa: E731
    _regimes_json(
        path,
        [
            ("scratch", 10, 0.2, "A", three(90.0)),
            ("scratch", 10, 0.2, "B", three(80.0)),
            ("scratch", 100, 0.8, "A", three(60.0)),
            ("scratch", 100, 0.8, "B", three(70.0)),
            ("transfer", 100, 0.8, "C", three(75.0)),
        ],
    )
    monkeypatch.setattr(mod, "REGIMES", path)
    regime_rows = mod.regime_rows(path)
    assert mod.nearest_regime(regime_rows, 50, 0.7, "scratch") == (100, 0.8)  # rho on a log scale
    assert mod.nearest_regime(regime_rows, 12, 0.5, "scratch") == (10, 0.2)
    section = mod.regime_section(regime_rows)
    assert "| scratch | 10 | 0.2 | 3 | A 90.00 ± 1.00 (next: B 80.00 ± 1.00) |" in section
    assert "| transfer | 100 | 0.8 | 3 | C 75.00 ± 1.00 |" in section
    # an image folder: 2 head classes of 40 images, 3 tail classes of 1 -> rho 40, eta 0.4 -> the rho-100 cell
    for c, n in enumerate([40, 40, 1, 1, 1]):
        (tmp_path / "data" / "train" / f"c{c}").mkdir(parents=True)
        for i in range(n):
            (tmp_path / "data" / "train" / f"c{c}" / f"{i}.png").write_bytes(b"x")
    assert mod.main(["--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "5 classes, 83 images: rho 40, eta 0.40" in out and "rho 100, eta 0.8" in out
    assert "the best HM: B 70.00 ± 1.00 (next: A 60.00 ± 1.00)" in out
    assert "test split, mean ± std over the 3 seed(s)" in out  # the answer says what it rests on
    assert mod.main(["--rho", "100", "--eta", "0.8", "--setting", "transfer"]) == 0
    assert "the best HM: C 75.00 ± 1.00" in capsys.readouterr().out


def test_which_method_compares_a_regime_on_the_seeds_every_row_shares(tmp_path, monkeypatch, capsys):
    """A grid still running: A has seed 2 (a better data draw) that B has not; the answer compares seeds 0 and 1."""
    mod = _load("which_method", monkeypatch)
    path = tmp_path / "regimes.json"
    _regimes_json(
        path,
        [("scratch", 10, 0.5, "A", {0: 70.0, 1: 71.0, 2: 99.0}), ("scratch", 10, 0.5, "B", {0: 75.0, 1: 76.0})],
    )
    monkeypatch.setattr(mod, "REGIMES", path)
    assert mod.main(["--rho", "10"]) == 0
    out = capsys.readouterr().out
    assert "the best HM: B 75.50 ± 0.71 (next: A 70.50 ± 0.71)" in out and "over the 2 seed(s)" in out
    assert "(--eta not given: 0.5)" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rho", "inf"], "rho is a number of at least 1"),
        (["--rho", "nan"], "rho is a number of at least 1"),
        (["--rho", "0.5"], "rho is a number of at least 1"),
        (["--rho", "10", "--eta", "1.5"], "eta a share in"),
        (["--data-dir", "/nonexistent/ltzoo"], "is not a folder"),
    ],
)
def test_which_method_refuses_a_shape_it_cannot_place(tmp_path, monkeypatch, argv, message):
    mod = _load("which_method", monkeypatch)
    path = tmp_path / "regimes.json"
    _regimes_json(path, [("scratch", 10, 0.5, "A", {0: 70.0})])
    monkeypatch.setattr(mod, "REGIMES", path)
    with pytest.raises(SystemExit, match=message):
        mod.main(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["--eta", "0.3"],
        ["--setting", "transfer"],
        ["--counts", "9", "3", "--eta", "0.3"],
        ["--rho", "9", "--counts", "9"],
    ],
)
def test_which_method_options_that_describe_no_data_are_refused_and_write_nothing(tmp_path, monkeypatch, argv, capsys):
    mod = _load("which_method", monkeypatch)
    monkeypatch.setattr(mod, "RESULTS", tmp_path)  # the table mode would write which_method.md here
    with pytest.raises(SystemExit) as err:
        mod.main(argv)
    assert err.value.code == 2 and not (tmp_path / "which_method.md").exists()
    assert "--" in capsys.readouterr().err
