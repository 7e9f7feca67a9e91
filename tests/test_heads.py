"""Classifier retraining on cached features (ltzoo.methods.heads): the Head, tau-norm, logit adjustment, every
retraining method on synthetic long-tailed features, and the GML ensemble folded into one timm head."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import ltzoo  # noqa: F401  (registers resnet20_cifar with timm)
from ltzoo.data import LTDataset, Split
from ltzoo.methods.heads import (
    METHODS,
    RATIOS,
    TAUS,
    WB_THRESH,
    WB_WEIGHT_DECAYS,
    Features,
    Head,
    ensemble,
    logit_adjusted,
    max_norm_radius,
    project_max_norm,
    retrain,
    score,
    tau_norm,
)
from ltzoo.metrics import longtail_metrics


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, and the CPU is shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------------ Head
def test_head_round_trip_through_linear():
    torch.manual_seed(0)
    fc = nn.Linear(6, 4)
    head = Head.from_module(fc)
    x = torch.randn(5, 6)
    torch.testing.assert_close(head(x), fc(x))
    assert head.weight.data_ptr() != fc.weight.data_ptr(), "the head must be a copy"
    other = nn.Linear(6, 4)
    head.write_to(other)
    assert torch.equal(other.weight, fc.weight) and torch.equal(other.bias, fc.bias)
    torch.testing.assert_close(other(x), fc(x), rtol=0, atol=0)
    # a float64 classifier takes the values in its own dtype
    wide = nn.Linear(6, 4).to(torch.float64)
    head.write_to(wide)
    assert wide.weight.dtype == torch.float64 and torch.equal(wide.weight.float(), fc.weight)


def test_head_without_bias_and_wrong_module():
    fc = nn.Linear(3, 2, bias=False)
    head = Head.from_module(fc)
    assert torch.equal(head.bias, torch.zeros(2))
    head.write_to(fc)  # a zero bias fits a bias-free classifier
    with pytest.raises(ValueError, match="no bias"):
        Head(head.weight, torch.ones(2)).write_to(fc)
    with pytest.raises(TypeError, match="plain nn.Linear"):
        Head.from_module(nn.Conv2d(3, 2, 1))


def test_tau_norm():
    torch.manual_seed(0)
    head = Head(torch.randn(5, 7) * torch.tensor([[5.0], [2.0], [1.0], [0.5], [0.1]]), torch.randn(5))
    same = tau_norm(head, 0.0)
    assert torch.equal(same.weight, head.weight) and torch.equal(same.bias, head.bias)
    unit = tau_norm(head, 1.0)
    torch.testing.assert_close(unit.weight.norm(dim=1), torch.ones(5))
    norms = head.weight.norm(dim=1)
    torch.testing.assert_close(unit.bias, head.bias / norms)  # the class's logit is scaled as a whole
    half = tau_norm(head, 0.5)
    torch.testing.assert_close(half.weight.norm(dim=1), norms.sqrt())
    # directions are unchanged
    torch.testing.assert_close(F.normalize(half.weight, dim=1), F.normalize(head.weight, dim=1))


def test_logit_adjusted():
    torch.manual_seed(0)
    head = Head(torch.randn(4, 3), torch.randn(4))
    counts = torch.tensor([100.0, 30.0, 10.0, 2.0], dtype=torch.float64)
    x = torch.randn(6, 3)
    for tau in (0.0, 0.5, 1.0, 2.0):
        adjusted = logit_adjusted(head, counts, tau)
        expected = head(x) - tau * torch.log(counts / counts.sum()).float()
        torch.testing.assert_close(adjusted(x), expected)
        assert torch.equal(adjusted.weight, head.weight)
    assert torch.equal(logit_adjusted(head, counts, 0.0).bias, head.bias)


# ---------------------------------------------------------------------------- retraining on features
COUNTS = [200, 80, 30, 12, 5]
C, D = len(COUNTS), 8


def _features(counts, seed) -> Features:
    """ReLU features of Gaussian classes (fixed means, overlapping enough that the prior matters)."""
    means = torch.randn(C, D, generator=torch.Generator().manual_seed(123)) * 1.5
    ys = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    x = means[ys] + torch.randn(len(ys), D, generator=torch.Generator().manual_seed(seed))
    return Features(x.relu(), ys)


@pytest.fixture(scope="module")
def lt():
    """Long-tailed training features, balanced val/test features, and a CE head biased toward the head classes."""
    train, val, test = _features(COUNTS, 0), _features([30] * C, 1), _features([200] * C, 2)
    w, b = torch.zeros(C, D, requires_grad=True), torch.zeros(C, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=0.5)
    for _ in range(300):
        loss = F.cross_entropy(train.x @ w.T + b, train.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return train, val, test, Head(w.detach(), b.detach())


def _metrics(head: Head, f: Features) -> dict:
    return longtail_metrics(f.y, head(f.x).argmax(-1), COUNTS)


def test_original_head_is_biased(lt):
    train, val, test, orig = lt
    recall = _metrics(orig, test)["per_class_recall"]
    assert recall[0] > 0.85 and recall[-1] < 0.2, recall


@pytest.mark.parametrize("method", METHODS)
def test_retrain_improves_the_biased_head(lt, method):
    train, val, test, orig = lt
    head, info = retrain(method, orig, train, val, COUNTS, epochs=30, batch_size=64, seed=0)
    assert info["method"] == method
    assert head.weight.shape == (C, D) and head.bias.shape == (C,)
    assert torch.isfinite(head.weight).all() and torch.isfinite(head.bias).all()
    assert not head.weight.requires_grad and not head.bias.requires_grad
    before, after = _metrics(orig, test), _metrics(head, test)
    # the synthetic tail class is nearly never predicted by the CE head: every method must fix some of that
    assert after["hm"] > before["hm"] + 0.05, (method, before["hm"], after["hm"])
    assert after["per_class_recall"][-1] > before["per_class_recall"][-1]
    # the validation selection key (HM, then mean class accuracy) cannot get worse for the post-hoc methods:
    # tau = 0 (the original head) is in their grid
    if method in ("taunorm", "la"):
        assert score(head(val.x), val.y, COUNTS) >= score(orig(val.x), val.y, COUNTS)


@pytest.mark.parametrize("method", ("gml", "crt", "lws", "wb"))
def test_trained_methods_are_deterministic(lt, method):
    train, val, _, orig = lt
    a, _ = retrain(method, orig, train, val, COUNTS, epochs=3, batch_size=64, seed=4)
    b, _ = retrain(method, orig, train, val, COUNTS, epochs=3, batch_size=64, seed=4)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, orig.weight), "training changed nothing"


def test_lws_only_rescales_each_class(lt):
    train, val, _, orig = lt
    head, _ = retrain("lws", orig, train, val, COUNTS, epochs=10, batch_size=64)
    scale = head.weight.norm(dim=1) / orig.weight.norm(dim=1)
    torch.testing.assert_close(head.weight, orig.weight * scale[:, None], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.bias, orig.bias * scale, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(scale, torch.ones(C))


@pytest.mark.parametrize(
    "method, make",
    [
        ("taunorm", lambda h, t: tau_norm(h, t)),
        ("la", lambda h, t: logit_adjusted(h, torch.tensor(COUNTS, dtype=torch.float64), t)),
    ],
)
def test_tau_is_chosen_on_validation(lt, method, make):
    train, val, test, orig = lt
    head, info = retrain(method, orig, train, val, COUNTS)
    assert info["chosen_on"] == "validation hm" and info["grid"] == list(TAUS)
    best = max(TAUS, key=lambda t: score(make(orig, t)(val.x), val.y, COUNTS))
    assert info["tau"] == best
    chosen = make(orig, best)
    assert torch.equal(head.weight, chosen.weight) and torch.equal(head.bias, chosen.bias)
    # another selection metric is honoured and reported
    _, info_gm = retrain(method, orig, train, val, COUNTS, select="gm")
    assert info_gm["chosen_on"] == "validation gm"
    # without a validation split: the literature's default, said so
    head, info = retrain(method, orig, train, None, COUNTS)
    assert info["tau"] == 1.0 and info["chosen_on"].startswith("default")
    default = make(orig, 1.0)
    assert torch.equal(head.weight, default.weight) and torch.equal(head.bias, default.bias)


def test_max_norm_projection():
    w = torch.tensor([[1.2, 1.6], [0.6, 0.8], [3.0, 4.0], [6.0, 8.0]])  # norms 2, 1, 5, 10
    assert max_norm_radius(w, 0.1) == pytest.approx(1.0 + 0.1 * (10.0 - 1.0))
    assert max_norm_radius(w, 1.0) == pytest.approx(10.0)
    project_max_norm(w, 2.5)
    # rows beyond the radius land on it, direction kept; rows inside are untouched
    torch.testing.assert_close(w, torch.tensor([[1.2, 1.6], [0.6, 0.8], [1.5, 2.0], [1.5, 2.0]]))
    zero = torch.zeros(2, 3)
    project_max_norm(zero, 1.0)  # a zero row stays zero (no division by zero)
    assert torch.equal(zero, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="MaxNorm needs a trained classifier"):
        max_norm_radius(torch.zeros(4, 3))


def test_weight_balancing_head(lt, monkeypatch):
    train, val, test, orig = lt
    head, info = retrain("wb", orig, train, val, COUNTS, epochs=20, batch_size=64)
    radius = max_norm_radius(orig.weight, WB_THRESH)
    assert info["max_norm_radius"] == pytest.approx(radius) and info["chosen_on"] == "validation hm"
    assert info["weight_decay"] in WB_WEIGHT_DECAYS and info["grid"] == list(WB_WEIGHT_DECAYS)
    assert info["lr"] == 0.01  # the authors' rate by default
    # MaxNorm held after the last step: no class's weight vector is longer than the radius, the biggest
    # stage-1 norms (the head classes') were pulled in, so the norms are more even than the CE head's
    norms, before = head.weight.norm(dim=1), orig.weight.norm(dim=1)
    assert bool((norms <= radius * (1 + 1e-5)).all()), (norms, radius)
    assert norms.max() / norms.min() < before.max() / before.min()
    # without a validation split: the authors' weight decay, said so
    fixed, default = retrain("wb", orig, train, None, COUNTS, epochs=20, batch_size=64)
    assert default["weight_decay"] == 0.1 and default["chosen_on"].startswith("default")
    # every weight decay of the grid is trained with it, and the one kept is the best on validation (not train)
    from ltzoo.methods import heads as heads_mod

    trained = {}
    real = heads_mod._train_head

    def spy(*args, **kwargs):
        trained[kwargs["weight_decay"]] = out = real(*args, **kwargs)
        assert kwargs["max_norm"] == pytest.approx(radius)
        return out

    monkeypatch.setattr(heads_mod, "_train_head", spy)
    again, info2 = retrain("wb", orig, train, val, COUNTS, epochs=20, batch_size=64)
    assert sorted(trained) == sorted(WB_WEIGHT_DECAYS)
    assert len({float(h.weight.norm()) for h in trained.values()}) > 1, "the weight decay changed nothing"
    best = max(WB_WEIGHT_DECAYS, key=lambda wd: score(trained[wd](val.x), val.y, COUNTS))
    assert info2["weight_decay"] == best and torch.equal(again.weight, trained[best].weight)
    assert torch.equal(trained[0.1].weight, fixed.weight)


def test_max_norm_projects_after_every_step(lt, monkeypatch):
    """The projection follows each optimiser step (projected gradient descent): wrap SGD.step and
    project_max_norm and check their order, and that a large step cannot leave a class outside the ball."""
    from ltzoo.methods import heads as heads_mod

    train, _, _, orig = lt
    events = []
    real_step, real_project = torch.optim.SGD.step, heads_mod.project_max_norm

    def step(self, *a, **k):
        events.append("step")
        return real_step(self, *a, **k)

    def project(w, r):
        events.append("project")
        real_project(w, r)
        assert bool((w.norm(dim=1) <= r * (1 + 1e-6)).all())

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    monkeypatch.setattr(heads_mod, "project_max_norm", project)
    radius = max_norm_radius(orig.weight)
    loss = torch.nn.CrossEntropyLoss()
    heads_mod._train_head(
        orig,
        train,
        loss,
        heads_mod.HeadFit(COUNTS, epochs=2, lr=5.0, batch_size=64, seed=0),
        sampler="instance",
        weight_decay=0.0,
        max_norm=radius,
    )
    steps = 2 * math.ceil(len(train.y) / 64)
    assert events == ["step", "project"] * steps


def test_unknown_method(lt):
    train, val, _, orig = lt
    with pytest.raises(ValueError, match="unknown classifier method 'svm'"):
        retrain("svm", orig, train, val, COUNTS)


# ------------------------------------------------------------------------------------------- ensemble
def test_ensemble_ratio_is_chosen_on_validation(lt):
    train, val, test, orig = lt
    gml, _ = retrain("gml", orig, train, val, COUNTS, epochs=30, batch_size=64)
    ens, info = ensemble(orig, gml, val, COUNTS)
    assert info["chosen_on"] == "validation hm" and info["grid"] == list(RATIOS)
    r = info["ratio_T2_over_T1"]
    mix = lambda q: Head(gml.weight + q * orig.weight, gml.bias + q * orig.bias)  # noqa: E731
    assert r == max(RATIOS, key=lambda q: score(mix(q)(val.x), val.y, COUNTS))
    torch.testing.assert_close(ens.weight, gml.weight + r * orig.weight, rtol=0, atol=0)
    torch.testing.assert_close(ens.bias, gml.bias + r * orig.bias, rtol=0, atol=0)
    # on validation the ensemble is at least as good as GML alone (r = 0 is in the grid)
    assert score(ens(val.x), val.y, COUNTS) >= score(gml(val.x), val.y, COUNTS)
    ens1, info1 = ensemble(orig, gml, None, COUNTS)
    assert info1["ratio_T2_over_T1"] == 1.0 and info1["chosen_on"].startswith("default")


def _tiny_dataset() -> LTDataset:
    def split(name, n):
        return Split(name, torch.arange(n) % 4, images=torch.zeros(n, 1, 8, 8, dtype=torch.uint8))

    return LTDataset(
        "tiny",
        [f"class_{c:02d}" for c in range(4)],
        split("train", 8),
        split("val", 4),
        split("test", 4),
        (1, 8, 8),
        (0.5,),
        (0.25,),
    )


@pytest.mark.parametrize("use_val", (True, False))
def test_ensemble_export_reproduces_the_two_head_ensemble(tmp_path, use_val):
    from ltzoo.runfolder.model_io import save_model

    torch.manual_seed(0)
    model = timm.create_model("resnet20_cifar", num_classes=4, in_chans=1).eval()
    x = torch.randn(32, 1, 8, 8)
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
        z_orig_model = model(x)
    orig = Head.from_module(model.get_classifier())
    torch.testing.assert_close(orig(feats), z_orig_model, rtol=1e-5, atol=1e-5)
    retrained = Head(torch.randn_like(orig.weight) * orig.weight.std(), torch.randn(4) * 0.1)
    counts = [20, 10, 5, 2]
    val = Features(feats[:16], torch.arange(16) % 4) if use_val else None
    folded, info = ensemble(orig, retrained, val, counts)
    r = info["ratio_T2_over_T1"]
    folded.write_to(model.get_classifier())
    with torch.no_grad():
        z = model(x)
    z_re, z_or = retrained(feats), orig(feats)
    # exact logits of the exported model: z_retrained + r * z_orig
    torch.testing.assert_close(z, z_re + r * z_or, rtol=1e-5, atol=1e-5)
    # the same ranking as the two-head ensemble log softmax(z_re / T2) + log softmax(z_orig / T1), r = T2 / T1
    for t2 in (1.0, 0.5, 3.0):
        combined = F.log_softmax(z_re / t2, -1) + (F.log_softmax(z_or / (t2 / r), -1) if r > 0 else 0.0)
        assert torch.equal(z.argmax(-1), combined.argmax(-1))
        torch.testing.assert_close(F.log_softmax(z / t2, -1), F.log_softmax(combined, -1), rtol=1e-4, atol=1e-5)

    # a plain timm model: saved as a run folder, it loads with timm alone and gives the same logits
    out = tmp_path / "export"
    save_model(model, out, _tiny_dataset())
    loaded = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    with torch.no_grad():
        z_loaded = loaded(x)
    torch.testing.assert_close(z_loaded, z, rtol=0, atol=0)
    assert list(loaded.pretrained_cfg["label_names"]) == [f"class_{c:02d}" for c in range(4)]
    assert type(loaded.get_classifier()) is nn.Linear and math.isfinite(float(z_loaded.sum()))


# ------------------------------------------------------------------------------------- MiSLAS's LAS, NCM
def test_las_form_and_smoothing_are_chosen_on_validation(lt):
    from ltzoo.methods.heads import LAS, LAS_GRID

    train, val, test, orig = lt
    head, info = retrain("las", orig, train, val, COUNTS, epochs=5, batch_size=64, seed=1)
    assert info["chosen_on"] == "validation hm" and info["sampler"] == "balanced"
    assert len(info["grid"]) == len(LAS_GRID["form"]) * len(LAS_GRID["eps_head"])
    best = max(info["grid"].values())
    assert info["grid"][f"{info['form']}/{info['eps_head']}"] == best
    assert round(score(head(val.x), val.y, COUNTS)[0], 4) == best
    # without a validation split: MiSLAS's CIFAR-10-LT values, said so
    default, info = retrain("las", orig, train, None, COUNTS, epochs=5, batch_size=64, seed=1)
    assert (info["form"], info["eps_head"], info["eps_tail"]) == (LAS["form"], LAS["eps_head"], LAS["eps_tail"])
    assert info["chosen_on"].startswith("the paper's values")
    again, _ = retrain("las", orig, train, None, COUNTS, epochs=5, batch_size=64, seed=1)
    assert torch.equal(default.weight, again.weight) and torch.equal(default.bias, again.bias)


def test_las_trains_the_head_and_the_scales_jointly(lt, monkeypatch):
    """The head at head_lr_factor x lr, one scale per class at lr, both decayed (MiSLAS's optimiser groups)."""
    from ltzoo.methods import heads

    train, _, _, orig = lt
    seen = {}
    real = torch.optim.SGD

    def spy(groups, **kw):
        seen["groups"] = [(len(g["params"]), g["lr"], g["weight_decay"]) for g in groups]
        return real(groups, **kw)

    monkeypatch.setattr(heads.torch.optim, "SGD", spy)
    retrain("las", orig, train, None, COUNTS, epochs=1, lr=0.2, batch_size=64)
    lr, factor, wd = 0.2, heads.LAS["head_lr_factor"], heads.LAS["weight_decay"]
    assert seen["groups"] == [(2, lr * factor, wd), (1, lr, wd)]


def _explicit_ncm(train: Features, x: torch.Tensor, distance: str) -> torch.Tensor:
    """Nearest class mean, the slow way: a loop over classes, cosine or Euclidean distance."""
    feats = F.normalize(train.x, dim=1) if distance == "cosine" else train.x
    means = torch.stack([feats[train.y == c].mean(0) for c in range(int(train.y.max()) + 1)])
    if distance == "cosine":
        return F.cosine_similarity(x[:, None, :], means[None], dim=-1).argmax(1)
    return torch.cdist(x, means).argmin(1)


@pytest.mark.parametrize("method, distance", [("ncm", "cosine"), ("ncm_l2", "euclidean")])
def test_ncm_is_the_nearest_class_mean(lt, method, distance):
    train, val, test, orig = lt
    head, info = retrain(method, orig, train, val, COUNTS)
    assert info["method"] == method and info["fold"]
    torch.testing.assert_close(head(test.x).argmax(1), _explicit_ncm(train, test.x, distance), rtol=0, atol=0)
    if distance == "euclidean":  # the linear head is -||x - mu||^2 / 2 up to a per-image constant: same softmax
        means = torch.stack([train.x[train.y == c].mean(0) for c in range(C)])
        torch.testing.assert_close(
            F.log_softmax(head(test.x), 1),
            F.log_softmax(-(torch.cdist(test.x, means) ** 2) / 2, 1),
            rtol=1e-4,
            atol=1e-4,
        )
    with pytest.raises(ValueError, match=r"classes \[4\] have none"):
        retrain(method, orig, Features(train.x[train.y < 4], train.y[train.y < 4]), val, COUNTS)


@pytest.mark.parametrize("method, distance", [("ncm", "cosine"), ("ncm_l2", "euclidean")])
def test_ncm_folded_into_a_timm_model(tmp_path, method, distance):
    """Written into a timm model's classifier and exported, NCM still picks the nearest class mean of the model's
    own pooled features."""
    from ltzoo.runfolder.model_io import save_model

    torch.manual_seed(0)
    model = timm.create_model("resnet20_cifar", num_classes=4, in_chans=1).eval()
    x, y = torch.randn(48, 1, 8, 8), torch.arange(48) % 4
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
    train = Features(feats[:32], y[:32])
    head, _ = retrain(method, Head.from_module(model.get_classifier()), train, None, [8, 8, 8, 8])
    head.write_to(model.get_classifier())
    out = tmp_path / method
    save_model(model, out, _tiny_dataset())
    loaded = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    with torch.no_grad():
        z = loaded(x[32:])
    assert torch.equal(z.argmax(1), _explicit_ncm(train, feats[32:], distance))


def test_every_head_is_selectable_from_the_recipes():
    """One registry: gml reports every head, btm --classifier takes any; trained heads take --head-epochs."""
    from ltzoo.methods.heads import HEAD_METHODS
    from ltzoo.recipes import btm

    assert {"las", "ncm", "ncm_l2"} <= set(METHODS) and METHODS == tuple(HEAD_METHODS)
    assert set(btm.TRAINED_HEADS) == {"gml", "crt", "la_train", "lws", "wb", "las"}
    flags = ["--dataset", "fmnist_lt", "--init", "RUN_DIR"]
    for name in ("las", "ncm", "ncm_l2"):
        assert btm.build_parser().parse_args([*flags, "--classifier", name]).classifier == name
    assert btm.build_parser().parse_args([*flags, "--classifier", "las", "--head-epochs", "5"]).head_epochs == 5
    with pytest.raises(SystemExit):
        btm.build_parser().parse_args([*flags, "--classifier", "ncm", "--head-epochs", "5"])
