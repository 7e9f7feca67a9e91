"""benchmarks/method_table.py's grid runner, without training: which runs it starts, in which order, and
how runners share a grid (the recipes themselves are replaced by a stub that writes results.json)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def table(monkeypatch):
    spec = importlib.util.spec_from_file_location("method_table", ROOT / "benchmarks" / "method_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    started = []

    def fake_launch(name, seed, base, setting, log, *a, **k):
        parent = mod.RUNS[name][2]
        assert parent is None or (mod.run_dir(base, seed, parent) / "results.json").is_file(), (name, "before", parent)
        started.append((name, seed))
        (mod.run_dir(base, seed, name) / "results.json").write_text("{}")

    monkeypatch.setattr(mod, "launch", fake_launch)
    mod.started = started
    return mod


def test_grid_runs_a_missing_parent_first(table, tmp_path):
    # heads_on_ce (group wb) starts from ce (group core): asked for alone, ce runs first instead of a wait forever
    table.run_grid(tmp_path, "rho100", [0, 1], ["heads_on_ce"])
    assert table.started == [("ce", 0), ("heads_on_ce", 0), ("ce", 1), ("heads_on_ce", 1)]
    table.started.clear()
    table.run_grid(tmp_path, "rho100", [0, 1], ["heads_on_ce", "ce"])  # all finished: nothing runs again
    assert table.started == []


def test_grid_leaves_claimed_runs_to_their_runner(table, tmp_path):
    out = table.run_dir(tmp_path, 0, "ce")
    out.mkdir(parents=True)
    (out / ".claim").write_text(str(os.getpid()))  # a live runner (this process) holds it
    assert table._running(out) and not table.claim(out)
    (out / ".claim").write_text("")  # an empty or dead claim is taken over
    assert not table._running(out) and table.claim(out)
    assert (out / ".claim").read_text() == str(os.getpid())


def test_which_method_names_ties_and_leaves_out_ceilings(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when the script runs: it imports method_table
    spec = importlib.util.spec_from_file_location("which_method", ROOT / "benchmarks" / "which_method.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = tmp_path / "t.csv"
    head = "method,seeds,hm,hm_std,val_hm\n"
    path.write_text(
        head + "A,3,0.90,0.01,0.5\nB,3,0.885,0.01,0.9\nC,3,0.85,0.01,0.6\nD,1,0.99,0,0.99\n"
        "Ceiling: x,3,0.95,0.01,0.95\nA fp32 training,3,0.91,0.01,0.9\n"
    )
    rows = mod.candidates(path)
    assert [r["method"] for r in rows] == ["A", "B", "C"]  # all seeds; no ceiling, no fp32 check
    assert mod.cell(rows, "hm") == "tie: A 90.00 ± 1.00, B 88.50 ± 1.00"  # C's interval misses A's
    lone = [r for r in rows if r["method"] != "B"]
    assert mod.cell(lone, "hm") == "A 90.00 ± 1.00 (next: C 85.00 ± 1.00)"


def test_which_method_separates_overlapping_rows_the_seeds_tell_apart(tmp_path, monkeypatch):
    """Welch's t-test, not overlapping mean ± std: on 10 seeds, 90.0 ± 1.0 and 88.5 ± 1.0 overlap but differ
    (p ~ 0.004); on 3 seeds the same numbers tie (p ~ 0.14)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("which_method", ROOT / "benchmarks" / "which_method.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ten = [
        {"method": "A", "seeds": "10", "hm": "0.90", "hm_std": "0.01"},
        {"method": "B", "seeds": "10", "hm": "0.885", "hm_std": "0.01"},
    ]
    assert mod.cell(ten, "hm").startswith("A 90.00 ± 1.00 (next: B")
    three = [dict(r, seeds="3") for r in ten]
    assert mod.cell(three, "hm").startswith("tie: A")


def test_relative_accuracy_and_one_seed_hm_interval(table, tmp_path, monkeypatch):
    import json

    import torch

    from ltzoo.runfolder.predictions import FORMAT, save_predictions

    refs = tmp_path / "refs"
    for seed, acc in ((0, 0.90), (1, 0.92)):
        folder = table.run_dir(refs, seed, table.BALANCED_REF)
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"metrics": {"test": {"acc": acc}}}))
    monkeypatch.setattr(table, "REF_COPIES", refs)
    rows = [{"method": "CE", "acc": 0.82}, {"method": "X", "acc": None}]
    note = table.relative_accuracy(rows, "rho100", "no-such-grid", [0, 1, 2])
    assert rows[0]["relative_acc"] == pytest.approx(0.82 / 0.91) and rows[1]["relative_acc"] is None
    assert "A_v = 91.00" in note and "mean of 2 seeds" in note and "upper bound" in note
    assert table.relative_accuracy(rows, "rho10", "no-such-grid", [0]) == ""  # no size-matched reference
    # a run folder with kept predictions: its test HM interval, on the first seed that has one
    y = torch.arange(3).repeat_interleave(50)
    z = torch.nn.functional.one_hot(y, 3).float() + 0.9 * torch.randn(
        150, 3, generator=torch.Generator().manual_seed(0)
    )
    meta = {
        "format": FORMAT,
        "dataset": "d",
        "model": "m",
        "num_classes": 3,
        "class_names": ["a", "b", "c"],
        "train_counts": [100, 30, 5],
        "shot_thresholds": [50, 10],
        "splits": {"test": {"fingerprint": "f"}},
    }
    run = table.run_dir(tmp_path / "grid", 1, "ce")
    save_predictions(run / "predictions.safetensors", {"test": z}, {"test": y}, meta)
    got = table.hm_interval(tmp_path / "grid", [0, 1], "CE")
    assert got.endswith("(seed 1)") and got.startswith("[")
    lo, hi = map(float, got[1 : got.index("]")].split(", "))
    assert lo < hi
    assert table.hm_interval(tmp_path / "grid", [0, 1], "CE + cRT") is None  # a head of a run's table


def test_rows_without_runs_here_are_carried_from_the_committed_csv(table, tmp_path, monkeypatch):
    """runs/ is not in git: a rebuilt table keeps the committed rows it cannot re-measure, marked, in ROWS' order;
    a row measured here replaces its committed one."""
    import csv

    monkeypatch.setattr(table, "RESULTS", tmp_path)
    fields = ["method", "seeds", "acc", "acc_std", "hardware", "commits", "carried"]
    with open(tmp_path / "method_table_rho100.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerow(
            {
                "method": "Balanced Softmax",
                "seeds": "3",
                "acc": "0.89",
                "acc_std": "",
                "hardware": "CPU",
                "commits": "abc1234",
                "carried": "False",
            }
        )
        w.writerow(
            {
                "method": "CE",
                "seeds": "3",
                "acc": "0.5",
                "acc_std": "0.1",
                "hardware": "CPU",
                "commits": "abc1234",
                "carried": "False",
            }
        )
        w.writerow(
            {
                "method": "a row no longer in ROWS",
                "seeds": "1",
                "acc": "0.1",
                "acc_std": "0",
                "hardware": "",
                "commits": "",
                "carried": "False",
            }
        )
    measured = [{"method": "CE", "seeds": 3, "acc": 0.86, "acc_std": 0.01, "hardware": "CPU", "commits": "def5678"}]
    rows = table.carried(measured, "rho100")
    assert [r["method"] for r in rows] == ["CE", "Balanced Softmax"]
    assert rows[0] == {**measured[0], "carried": False}
    assert rows[1] == {
        "method": "Balanced Softmax",
        "seeds": 3,
        "acc": 0.89,
        "acc_std": None,
        "hardware": "CPU",
        "commits": "abc1234",
        "carried": True,
    }
    assert table.carried(measured, "rho10") == [{**measured[0], "carried": False}]  # no committed table
    # a re-run on fewer seeds than the committed row does not replace it
    partial = [{**measured[0], "seeds": 2}]
    assert table.carried(partial, "rho100")[0] == {
        "method": "CE",
        "seeds": 3,
        "acc": 0.5,
        "acc_std": 0.1,
        "hardware": "CPU",
        "commits": "abc1234",
        "carried": True,
    }
