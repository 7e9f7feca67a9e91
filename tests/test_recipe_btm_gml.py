"""The BTM and GML recipes (ltzoo.recipes.btm, ltzoo.recipes.gml) on a tiny generated image folder.

Fast (in-process, no launch):
- `_Frozen` keeps BatchNorm statistics fixed for ``--member-bn frozen``;
- a member's fine-tune (``fine_tune_member``) trains even on a subset smaller than a batch, depends on
  (seed, member) only, and with frozen BN changes every weight but the BN statistics.

End-to-end (``slow``), under ``accelerate launch`` on the CPU:
- btm.py with no --init (it trains its own stage 1), then the run folder: timm loads it (and merged/), and
  timm's own preprocessing of the PNG test images gives the metrics results.json reports;
- a second run into the same folder skips the saved members (files untouched);
- gml.py --init <stage 1>: the table has the original head, GML, the baselines and GML+ensemble, and the
  exported model reproduces the ensemble's metrics;
- btm.py on two processes (gloo): one member per process, the same member files as the one-process run,
  and every test image counted once;
- other options (greedy soup, averaged BN, frozen BN, LWS, no ensemble) in-process.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import torch
from launching import launch_cmd, recipe_env  # noqa: E402  (tests/ is on sys.path)
from safetensors.torch import load_file
from torch import nn

import ltzoo  # noqa: F401  (registers resnet20_cifar with timm)
from ltzoo.metrics import longtail_metrics
from ltzoo.recipes import btm, members

ROOT = Path(__file__).resolve().parent.parent
BTM, GML = ROOT / "recipes" / "btm.py", ROOT / "recipes" / "gml.py"
TRAIN, VAL, TEST = [40, 15, 6], [3, 3, 3], [9, 8, 6]
CLASSES = ["class_00", "class_01", "class_02"]
# stage 1: adamw without warm-up learns the toy classes in 2 epochs; the members use the same optimizer
DATA = [
    "--dataset",
    "imagefolder",
    "--workers",
    "0",
    "--no-progress",
    "--threads",
    "1",
    "--min-val-per-class",  # the tiny set's 3 validation images per class choose (ltzoo's default: fixed rules)
    "1",
]  # one thread: bit-identical runs
OPTIMIZER = ["--model", "resnet20_cifar", "--optimizer", "adamw"]  # of stage 1 and the members
STAGE1 = [
    *OPTIMIZER,
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--lr",
    "0.01",
    "--warmup-epochs",
    "0",
]  # only without --init
MEMBERS = ["--subsets", "2", "--shots", "3", "--member-epochs", "2", "--member-batch-size", "4", "--head-epochs", "2"]
LAUNCH_TIMEOUT = 240
METRIC_KEYS = ("acc", "mean_class_acc", "hm", "gm", "min_recall")


# ------------------------------------------------------------------------------------- fast, in-process
def _bn_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_frozen_wrapper_keeps_bn_statistics():
    torch.manual_seed(0)
    net = _bn_net()
    frozen = members._Frozen(net, "frozen")
    assert frozen.train() is frozen
    assert net.training and net[0].training and net[4].training and not net[1].training
    stats = (net[1].running_mean.clone(), net[1].running_var.clone(), int(net[1].num_batches_tracked))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        loss = nn.functional.cross_entropy(frozen(torch.randn(8, 1, 8, 8) * 3 + 2), torch.randint(0, 3, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(net[1].running_mean, stats[0]) and torch.equal(net[1].running_var, stats[1])
    assert int(net[1].num_batches_tracked) == stats[2]
    assert net[1].weight.grad is not None, "the BN's affine weights still train"
    frozen.eval()
    assert not any(m.training for m in net.modules())

    trained = members._Frozen(net, "train").train()
    assert all(m.training for m in net.modules())
    trained(torch.randn(8, 1, 8, 8) * 3 + 2)
    assert not torch.equal(net[1].running_mean, stats[0]), "--member-bn train follows the batches"


def _tiny_dataset():
    """An in-memory LTDataset of the fixtures' class patterns (3 classes, 8x8 grayscale)."""
    import numpy as np
    from fixtures import class_images

    from ltzoo.data import LTDataset, Split

    def split(name, counts, seed):
        rng = np.random.default_rng(seed)
        x = torch.cat([torch.from_numpy(class_images(c, n, (8, 8), 1, rng)) for c, n in enumerate(counts)])
        y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
        return Split(name, y, images=x.permute(0, 3, 1, 2).contiguous())

    return LTDataset(
        "tiny",
        CLASSES,
        split("train", TRAIN, 0),
        split("val", VAL, 1),
        split("test", TEST, 2),
        (1, 8, 8),
        (0.5,),
        (0.25,),
    )


@pytest.fixture
def member_setup():
    """One test's Accelerator (per test: every test starts with no accelerate state, conftest.fresh_accelerate)."""
    import timm
    from accelerate import Accelerator

    from ltzoo.data import balanced_subsets
    from ltzoo.data.loader import BatchPreprocess

    ds = _tiny_dataset()
    torch.manual_seed(0)
    base = timm.create_model("resnet20_cifar", num_classes=3, in_chans=1)
    prep = BatchPreprocess(ds.mean, ds.std, crop_padding=1)
    subsets = balanced_subsets(ds.train.labels, 3, shots=3, num_subsets=2, seed=0)
    return Accelerator(cpu=True), ds, base, prep, subsets


def _member(setup, tmp_path, m, *flags):
    accelerator, ds, base, prep, subsets = setup
    # the member settings BTM.setup decides when unset (ltzoo.recipes.defaults), given: the members train alone here
    given = ["--optimizer", "adamw", "--weight-decay", "5e-4", "--member-lr", "0.01", "--member-epochs", "2"]
    args = btm.build_parser().parse_args([*DATA, *given, *flags])
    path = tmp_path / f"m{m}_{'_'.join(flags)}.safetensors"
    settings = members.member_settings(args, subsets[m], members.state_digest(base))
    members.fine_tune_member(accelerator, base, ds, subsets[m], prep, args, m, path, settings)
    assert members.trained_member(path, settings)
    assert not members.trained_member(path, {**settings, "member_epochs": "3"})
    return load_file(str(path))


def test_member_fine_tune(member_setup, tmp_path):
    base = member_setup[2]
    before = copy.deepcopy(base.state_dict())
    # 9 images, default batch of 64: the member still trains (a batch of the whole subset)
    a = _member(member_setup, tmp_path, 0)
    assert {k: v for k, v in base.state_dict().items()}.keys() == a.keys()
    assert all(torch.equal(base.state_dict()[k], before[k]) for k in before), "the stage-1 model was modified"
    changed = [k for k in a if not torch.equal(a[k], before[k])]
    assert "fc.weight" in changed and "conv1.weight" in changed and "bn1.running_mean" in changed
    # a member depends on (seed, member) only: trained again, bit-identical; another member differs
    again = _member(member_setup, tmp_path / "again", 0)
    assert all(torch.equal(a[k], again[k]) for k in a)
    other = _member(member_setup, tmp_path, 1)
    assert not torch.equal(a["fc.weight"], other["fc.weight"])


def test_member_that_diverges_stops_the_run_unsaved(member_setup, tmp_path):
    """A member's loop (one process, no gather) is watched too: an absurd --member-lr ends on one line naming
    the member and its flag, and no member file is written."""
    from ltzoo.training.numerics import NonFiniteTraining

    accelerator, ds, base, prep, subsets = member_setup
    args = btm.build_parser().parse_args(
        [*DATA, "--optimizer", "sgd", "--weight-decay", "5e-4", "--member-epochs", "3", "--member-lr", "1e30"]
    )
    path = tmp_path / "m1.safetensors"
    # the precision named is the accelerator's (accelerate's per-process state: fp32 unless an earlier test chose)
    with pytest.raises(
        NonFiniteTraining,
        match=r"^the (training loss|weights) of member 1 became non-finite .*\); "
        r"lower --member-lr\b",
    ):
        members.fine_tune_member(accelerator, base, ds, subsets[1], prep, args, 1, path)
    assert not path.exists()


def test_member_fine_tune_with_frozen_bn(member_setup, tmp_path):
    before = copy.deepcopy(member_setup[2].state_dict())
    sd = _member(member_setup, tmp_path, 0, "--member-bn", "frozen", "--member-batch-size", "4")
    stats = [k for k in sd if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert stats and all(torch.equal(sd[k], before[k]) for k in stats), "frozen BN statistics changed"
    assert not torch.equal(sd["bn1.weight"], before["bn1.weight"]) and not torch.equal(
        sd["fc.weight"], before["fc.weight"]
    )
    head_only = _member(member_setup, tmp_path, 0, "--train-params", "classifier", "--member-bn", "frozen")
    assert all(torch.equal(head_only[k], before[k]) for k in head_only if not k.startswith("fc."))
    assert not torch.equal(head_only["fc.weight"], before["fc.weight"])


# ---------------------------------------------------------------------------------- end to end, launched
def _make_imagefolder(root: Path, counts_per_split: dict[str, list[int]]) -> Path:
    from fixtures import make_imagefolder

    return make_imagefolder(root, counts_per_split, size=(8, 8), channels=1, seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _make_imagefolder(tmp_path_factory.mktemp("lt3"), {"train": TRAIN, "val": VAL, "test": TEST})


def launch(recipe: Path, args: list[str], hf_home: Path, processes: int = 1) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        launch_cmd(recipe, args, processes),
        cwd=ROOT,
        env=recipe_env(hf_home),
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT,
    )
    assert proc.returncode == 0, (
        f"{recipe.name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return proc


def output(proc: subprocess.CompletedProcess) -> str:
    """What a run printed and logged (the members' progress is logged, on every process)."""
    return proc.stdout + proc.stderr


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def timm_test_metrics(run_dir: Path, data_root: Path, train_counts: list[int]) -> dict:
    """The run folder's model through timm alone (local-dir load, timm's transform of the PNGs): test metrics."""
    import timm
    from PIL import Image

    model = timm.create_model(f"local-dir:{run_dir}", pretrained=True).eval()
    assert model.num_classes == len(CLASSES) and list(model.pretrained_cfg["label_names"]) == CLASSES
    cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**cfg)
    labels, images = [], []
    for c, name in enumerate(CLASSES):
        for f in sorted((data_root / "test" / name).iterdir()):
            with Image.open(f) as img:
                images.append(transform(img.convert("L")))
            labels.append(c)
    with torch.no_grad():
        preds = model(torch.stack(images)).argmax(-1)
    return longtail_metrics(torch.tensor(labels), preds, train_counts, num_classes=len(CLASSES))


def check_reproduces(run_dir: Path, data_root: Path, metrics: dict) -> None:
    mine = timm_test_metrics(run_dir, data_root, TRAIN)
    assert mine["num_samples"] == metrics["num_samples"] == sum(TEST)
    assert mine["per_class_recall"] == pytest.approx(metrics["per_class_recall"], abs=1e-12)
    for key in METRIC_KEYS:
        assert mine[key] == pytest.approx(metrics[key], abs=1e-12), key


def check_btm_table(res: dict, name: str = "BTM+gml+ens") -> None:
    assert list(res["table"]) == ["stage 1", "BTM", name]
    for row in res["table"].values():
        assert set(row) == {"val", "test"}
        assert all(0.0 <= row[s][k] <= 1.0 for s in row for k in METRIC_KEYS)
    for key in METRIC_KEYS:  # the last row is the exported model's own evaluation
        assert res["table"][name]["test"][key] == res["metrics"]["test"][key]
    assert res["metrics"]["test"]["num_samples"] == sum(TEST) and res["metrics"]["val"]["num_samples"] == sum(VAL)


def _metadata(path: Path) -> dict:
    """A member file's settings (its recorded training time aside, which varies run to run)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    assert float(meta.pop("train_seconds")) > 0
    return meta


def member_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "members").glob("member_*.safetensors"))


@pytest.fixture(scope="module")
def btm_run(data, hf_home, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """btm.py with no --init: stage 1 (2 epochs), 2 members, merge, GML head + ensemble."""
    out = tmp_path_factory.mktemp("runs") / "btm"
    proc = launch(BTM, [*DATA, "--data-dir", str(data), *STAGE1, *MEMBERS, "--output", str(out)], hf_home)
    return out, proc


@pytest.mark.slow
def test_btm_end_to_end(btm_run, data):
    out, proc = btm_run
    assert "member 1/2 fine-tuned on 9 images" in output(proc) and "member 2/2 fine-tuned on 9 images" in output(proc)
    for name in ("config.json", "model.safetensors", "results.json", "run_config.yaml", "per_class_recall.png"):
        assert (out / name).is_file(), name
    for name in ("config.json", "model.safetensors", "results.json"):
        assert (out / "stage1" / name).is_file() and (out / "merged" / name).is_file(), name
    assert [p.name for p in member_files(out)] == ["member_00.safetensors", "member_01.safetensors"]

    res = results(out)
    assert res["recipe"] == "btm" and res["method"] == "btm+gml+ens" and res["model"] == "resnet20_cifar"
    assert res["parents"] == [str(out / "stage1")] and res["members"] == 2 and res["merged_members"] == [0, 1]
    assert res["classifier"]["method"] == "gml" and res["classifier"]["ensemble"]["chosen_on"] == "validation hm"
    assert res["train_counts"] == TRAIN and res["class_names"] == CLASSES and res["num_processes"] == 1
    check_btm_table(res)
    stage1 = results(out / "stage1")
    for key in METRIC_KEYS:  # the table's stage-1 row is the stage-1 model's evaluation
        assert res["table"]["stage 1"]["test"][key] == stage1["metrics"]["test"][key], key

    # the members trained, and the merged model is their average (BN statistics too: the default)
    s1, members = load_file(str(out / "stage1" / "model.safetensors")), [load_file(str(p)) for p in member_files(out)]
    merged = load_file(str(out / "merged" / "model.safetensors"))
    assert not torch.equal(members[0]["conv1.weight"], s1["conv1.weight"])
    assert not torch.equal(members[0]["conv1.weight"], members[1]["conv1.weight"])
    for k in ("conv1.weight", "layer2.0.conv1.weight", "fc.weight", "bn1.weight"):
        torch.testing.assert_close(merged[k], (members[0][k] + members[1][k]) / 2, rtol=0, atol=1e-7)
    torch.testing.assert_close(
        merged["bn1.running_mean"],
        (members[0]["bn1.running_mean"] + members[1]["bn1.running_mean"]) / 2,
        rtol=0,
        atol=1e-7,
    )
    # the exported model is the merged one with a new classifier
    final = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(final[k], merged[k]) for k in merged if not k.startswith("fc."))
    assert not torch.equal(final["fc.weight"], merged["fc.weight"])

    # timm alone reproduces the reported test metrics of the exported and the merged model
    check_reproduces(out, data, res["metrics"]["test"])
    merged_res = results(out / "merged")
    assert all(merged_res["metrics"][s][k] == res["table"]["BTM"][s][k] for s in ("val", "test") for k in METRIC_KEYS)
    check_reproduces(out / "merged", data, merged_res["metrics"]["test"])


@pytest.mark.slow
def test_btm_resume_skips_saved_members(btm_run, data, hf_home):
    """A run interrupted after member 1 (member 2's file missing): the re-run skips member 1, trains member 2 only."""
    out, _ = btm_run
    first, second = member_files(out)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (first, second)}
    trained = load_file(str(second)), _metadata(second)
    second.unlink()
    proc = launch(BTM, [*DATA, "--data-dir", str(data), *STAGE1, *MEMBERS, "--output", str(out)], hf_home)
    assert "member 1/2: already trained, skipped" in output(proc)
    assert "member 1/2 fine-tuned" not in output(proc) and "member 2/2 fine-tuned on 9 images" in output(proc)
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before[first.name], "a saved member was re-trained"
    again = load_file(str(second))  # (not the bytes: the safetensors header's metadata order varies)
    assert all(torch.equal(again[k], trained[0][k]) for k in trained[0]), "the re-trained member differs"
    assert _metadata(second) == trained[1] and trained[1]["member_epochs"] == "2" and len(trained[1]["init_sha1"]) == 40
    check_btm_table(results(out))


@pytest.mark.slow
def test_gml_recipe(btm_run, data, hf_home, tmp_path):
    stage1 = btm_run[0] / "stage1"
    out = tmp_path / "gml"
    proc = launch(
        GML,
        [*DATA, "--data-dir", str(data), "--init", str(stage1), "--head-epochs", "3", "--output", str(out)],
        hf_home,
    )
    assert "exported: gml+ens" in proc.stdout
    for name in ("config.json", "model.safetensors", "results.json", "run_config.yaml", "per_class_recall.png"):
        assert (out / name).is_file(), name
    res = results(out)
    assert res["recipe"] == "gml" and res["method"] == "gml+ens" and res["parents"] == [str(stage1)]
    assert list(res["table"]) == [
        "original",
        "gml",
        "crt",
        "la_train",
        "lws",
        "taunorm",
        "la",
        "wb",
        "las",
        "ncm",
        "ncm_l2",
        "gml+ens",
    ]
    assert res["ensemble"]["chosen_on"] == "validation hm" and res["classifier"]["p"] == 1.0
    # every head says what it chose: the weight-balancing head its weight decay, on validation
    heads = {"gml", "crt", "la_train", "lws", "taunorm", "la", "wb", "las", "ncm", "ncm_l2", "gml+ens"}
    assert set(res["heads"]) == heads
    assert res["heads"]["las"]["chosen_on"] == "validation hm" and res["heads"]["ncm"]["fold"]
    assert res["heads"]["wb"]["chosen_on"] == "validation hm"
    assert res["heads"]["wb"]["weight_decay"] in res["heads"]["wb"]["grid"]
    # the original head's row is the stage-1 model
    s1 = results(stage1)
    for key in METRIC_KEYS:
        assert res["table"]["original"]["test"][key] == s1["metrics"]["test"][key], key
        assert res["table"]["gml+ens"]["test"][key] == res["metrics"]["test"][key], key  # the exported model
    assert res["metrics"]["test"]["num_samples"] == sum(TEST)
    # the backbone is stage 1's, only the classifier changed
    a, b = load_file(str(stage1 / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("fc.")) and not torch.equal(
        a["fc.weight"], b["fc.weight"]
    )
    check_reproduces(out, data, res["metrics"]["test"])


BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.mark.slow
def test_gml_recipe_with_shifted_bn(btm_run, data, hf_home, tmp_path):
    """--shift-bn: the exported backbone differs from stage 1's in its BN statistics only, and reproduces."""
    stage1 = btm_run[0] / "stage1"
    out = tmp_path / "gml_sbn"
    launch(
        GML,
        [
            *DATA,
            "--data-dir",
            str(data),
            "--init",
            str(stage1),
            "--head-epochs",
            "2",
            "--shift-bn",
            "--output",
            str(out),
        ],
        hf_home,
    )
    res = results(out)
    assert res["config"]["shift_bn"] is True
    a, b = load_file(str(stage1 / "model.safetensors")), load_file(str(out / "model.safetensors"))
    moved = {k for k in a if not k.startswith("fc.") and not torch.equal(a[k], b[k])}
    assert moved and all(k.endswith(BN_STATS) for k in moved), sorted(moved)
    check_reproduces(out, data, res["metrics"]["test"])


@pytest.mark.slow
def test_btm_with_the_las_classifier(btm_run, data, hf_home, tmp_path):
    """btm --classifier las: MiSLAS's classifier stage on the merged model, BN shifted by default; the export
    (plain timm) reproduces the reported metrics."""
    out = tmp_path / "btm_las"
    launch(
        BTM,
        [
            *DATA,
            "--data-dir",
            str(data),
            "--init",
            str(btm_run[0] / "stage1"),
            *OPTIMIZER,
            *MEMBERS,
            "--classifier",
            "las",
            "--output",
            str(out),
        ],
        hf_home,
    )
    res = results(out)
    assert res["method"] == "btm+las" and res["classifier"]["method"] == "las" and res["config"]["shift_bn"] is True
    check_btm_table(res, "BTM+las")
    merged, final = load_file(str(out / "merged" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    moved = {k for k in merged if not k.startswith("fc.") and not torch.equal(merged[k], final[k])}
    assert moved and all(k.endswith(BN_STATS) for k in moved), sorted(moved)
    check_reproduces(out, data, res["metrics"]["test"])


@pytest.mark.slow
def test_btm_two_processes(btm_run, data, hf_home, tmp_path):
    one = btm_run[0]
    out = tmp_path / "btm2"
    proc = launch(
        BTM,
        [*DATA, "--data-dir", str(data), "--init", str(one / "stage1"), *OPTIMIZER, *MEMBERS, "--output", str(out)],
        hf_home,
        processes=2,
    )
    # the two members trained in parallel, one on each process
    assert "member 1/2 fine-tuned on 9 images (process 0)" in output(proc)
    assert "member 2/2 fine-tuned on 9 images (process 1)" in output(proc)
    res = results(out)
    assert res["num_processes"] == 2
    check_btm_table(res)
    # a member depends on its subset and seed, not on the process that trained it: the same files as one process
    for a, b in zip(member_files(one), member_files(out), strict=True):
        sa, sb = load_file(str(a)), load_file(str(b))
        assert all(torch.equal(sa[k], sb[k]) for k in sa), a.name
    # hence the same merged model and the same metrics before the classifier stage
    assert res["table"]["stage 1"] == results(one)["table"]["stage 1"]
    assert res["table"]["BTM"] == results(one)["table"]["BTM"]
    check_reproduces(out, data, res["metrics"]["test"])


@pytest.mark.slow
def test_btm_other_options_and_uneven_members(btm_run, data, hf_home, tmp_path):
    """Three members on two processes (one process trains two), greedy soup, averaged BN, frozen BN, LWS."""
    out = tmp_path / "btm3"
    flags = [
        *DATA,
        "--data-dir",
        str(data),
        "--init",
        str(btm_run[0] / "stage1"),
        *OPTIMIZER,
        *MEMBERS,
        "--subsets",
        "3",
        "--merge",
        "greedy",
        "--bn-merge",
        "average",
        "--member-bn",
        "frozen",
        "--classifier",
        "lws",
        "--output",
        str(out),
    ]
    proc = launch(BTM, flags, hf_home, processes=2)
    assert "member 3/3 fine-tuned on 9 images (process 0)" in output(proc)
    res = results(out)
    assert res["method"] == "btm+lws" and "ensemble" not in res["classifier"]  # lws is not ensembled
    check_btm_table(res, "BTM+lws")
    assert res["merged_members"] and set(res["merged_members"]) <= {0, 1, 2}
    members = [load_file(str(p)) for p in member_files(out)]
    s1 = load_file(str(btm_run[0] / "stage1" / "model.safetensors"))
    assert len(members) == 3 and all(torch.equal(m["bn1.running_var"], s1["bn1.running_var"]) for m in members)
    merged = load_file(str(out / "merged" / "model.safetensors"))
    assert torch.equal(merged["bn1.running_mean"], s1["bn1.running_mean"])  # frozen and averaged: stage 1's
    check_reproduces(out, data, res["metrics"]["test"])


@pytest.mark.slow
def test_btm_new_head_on_other_classes(btm_run, tmp_path, monkeypatch, hf_home, fresh_accelerate):
    """--new-head: BTM starts from --init's backbone with a new classifier for this dataset's 4 classes."""
    for k, v in recipe_env(hf_home).items():
        if k != "PYTHONPATH":
            monkeypatch.setenv(k, v)
    data4 = _make_imagefolder(tmp_path / "data4", {"train": [20, 12, 8, 6], "val": [2] * 4, "test": [3] * 4})
    argv = [
        *DATA,
        "--mixed-precision",
        "no",
        "--data-dir",
        str(data4),
        "--init",
        str(btm_run[0] / "stage1"),
        *OPTIMIZER,
        *MEMBERS,
        "--member-epochs",
        "1",
        "--output",
        str(tmp_path / "btm4"),
    ]
    threads = torch.get_num_threads()
    try:
        with pytest.raises(ValueError, match="--new-head"):  # 3 classes in --init, 4 here
            btm.main(argv)
        res = btm.main([*argv, "--new-head"])
    finally:
        torch.set_num_threads(threads)  # --threads 1 set it for this process
    assert res["dataset"]["num_classes"] == 4 and res["metrics"]["test"]["num_samples"] == 12
    final, s1 = (
        load_file(str(tmp_path / "btm4" / "model.safetensors")),
        load_file(str(btm_run[0] / "stage1" / "model.safetensors")),
    )
    assert final["fc.weight"].shape == (4, 64) and s1["fc.weight"].shape == (3, 64)


# ------------------------------------------------------------------ bring your own long-tailed folder
#: Training images per class after the default hold-out of 20 per class for validation (the folder has no val/).
BYO_TRAIN = [120, 80, 50, 35, 25, 18, 12, 9, 7, 6]


@pytest.mark.slow
def test_default_btm_adapts_its_shots_to_a_long_tailed_folder(tmp_path, hf_home):
    """Issue 14: the smallest class has 6 training images; the default run takes K = 6 and says so."""
    from ltzoo.hub.card import build_card

    data = _make_imagefolder(tmp_path / "byo", {"train": [n + 20 for n in BYO_TRAIN], "test": [4] * 10})
    out = tmp_path / "run"
    tiny = [
        "--model",
        "resnet20_cifar",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--member-epochs",
        "1",
        "--head-epochs",
        "2",
    ]
    proc = launch(BTM, [*DATA, "--data-dir", str(data), *tiny, "--output", str(out)], hf_home)
    res = json.loads((out / "results.json").read_text())
    assert res["train_counts"] == BYO_TRAIN and res["dataset"]["val_images"] == 200
    assert res["shots"] == min(BYO_TRAIN) == 6 and res["config"]["shots"] == 6
    assert res["shots_rule"] == "the smallest class's 6 training images, at most 50"
    assert "K = 6 images per class (the smallest class's 6 training images, at most 50)" in output(proc)
    many, few = res["dataset"]["shot_thresholds"]["many"], res["dataset"]["shot_thresholds"]["few"]
    assert res["dataset"]["shot_rule"] and all(res["dataset"]["many_medium_few"].values())  # no empty group
    card = build_card(out).text
    assert (
        "class-balanced subsets of 6 images per class (K: the smallest class's 6 training images, at most 50)" in card
    )
    assert f"(training images {many} / " in card and f"; cuts: {res['dataset']['shot_rule']})" in card and few in card
