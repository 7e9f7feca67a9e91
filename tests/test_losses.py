"""Tests of ltzoo.methods.losses: the factory, each loss against its formula, and GML against a naive loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ltzoo.methods.losses import (
    BalancedSoftmaxLoss,
    ClassBalancedLoss,
    CrossEntropyLoss,
    FocalLoss,
    GeometricMeanLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    LongTailLoss,
    accepts_soft_targets,
    create_loss,
    list_losses,
    loss_spec,
    soft_target_losses,
)

COUNTS = [50, 20, 8, 3]
NUM_CLASSES = len(COUNTS)


def _batch(n: int = 12, seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, NUM_CLASSES, generator=gen, dtype=dtype)
    target = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
    return logits, target


# --------------------------------------------------------------------------------------------
# every loss through the factory


@pytest.mark.parametrize("name", list_losses())
def test_finite_scalar_with_gradient(name: str) -> None:
    loss_fn = create_loss(name, class_counts=COUNTS)
    assert isinstance(loss_fn, LongTailLoss)
    loss_fn.set_epoch(0)
    logits, target = _batch(dtype=torch.float32)
    logits.requires_grad_(True)
    loss = loss_fn(logits, target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list_losses())
def test_decreases_under_sgd(name: str) -> None:
    torch.manual_seed(0)
    features = torch.randn(64, 5)
    target = torch.tensor([0] * 30 + [1] * 18 + [2] * 10 + [3] * 6)
    features = features + 2.0 * F.one_hot(target, 5).float()  # linearly separable-ish
    model = torch.nn.Linear(5, NUM_CLASSES)
    loss_fn = create_loss(name, class_counts=COUNTS)
    loss_fn.set_epoch(1000)  # past any DRW switch
    lr = 0.01 if name.startswith("ldam") else 0.5  # LDAM scales logits by s = 30
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with torch.no_grad():
        first = loss_fn(model(features), target).item()
    for _ in range(10):
        opt.zero_grad()
        loss_fn(model(features), target).backward()
        opt.step()
    with torch.no_grad():
        last = loss_fn(model(features), target).item()
    assert last < first


@pytest.mark.parametrize("name", list_losses())
def test_mixed_precision_computes_in_float32(name: str) -> None:
    loss_fn = create_loss(name, class_counts=COUNTS)
    logits, target = _batch(dtype=torch.float32)
    low = loss_fn(logits.to(torch.bfloat16), target)
    assert low.dtype == torch.float32
    ref = loss_fn(logits.to(torch.bfloat16).float(), target)
    torch.testing.assert_close(low, ref)


@pytest.mark.parametrize("name", [n for n in list_losses() if n not in ("ce", "focal")])
def test_count_tensors_are_buffers(name: str) -> None:
    loss_fn = create_loss(name, class_counts=torch.tensor(COUNTS))
    buffers = dict(loss_fn.named_buffers())
    assert buffers, f"{name} registers no buffers"
    assert all(b.shape == (NUM_CLASSES,) for b in buffers.values())
    assert set(buffers) <= set(loss_fn.state_dict())


@pytest.mark.parametrize("name", list_losses())
def test_soft_targets_accepted_exactly_where_the_registry_says(name: str) -> None:
    loss_fn = create_loss(name, class_counts=COUNTS)
    assert loss_fn.loss_name == name and loss_fn.accepts_soft_targets == accepts_soft_targets(name)
    logits, target = _batch()
    soft = F.one_hot(target, NUM_CLASSES).to(logits.dtype)
    if accepts_soft_targets(name):  # a one-hot soft target is the hard target
        torch.testing.assert_close(loss_fn(logits, soft), loss_fn(logits, target))
    else:
        with pytest.raises(ValueError, match=f"loss '{name}' expects integer class indices.*soft"):
            loss_fn(logits, soft)


def test_soft_target_registry() -> None:
    assert soft_target_losses() == ["ce", "bsce", "la"]
    assert accepts_soft_targets("Balanced-Softmax") and accepts_soft_targets("logit_adjust")
    assert not accepts_soft_targets("gml") and not accepts_soft_targets("ldam_drw")
    with pytest.raises(ValueError, match="valid names"):
        accepts_soft_targets("nope")


@pytest.mark.parametrize("name", list_losses())
def test_registry_entry_names_and_cites(name: str) -> None:
    spec = loss_spec(name)
    assert spec.display_name
    assert all(isinstance(k, str) and k for k in spec.cite)
    assert isinstance(create_loss(name, COUNTS), spec.cls)


def test_bsce_is_an_entry_of_logit_adjustment() -> None:
    bsce = create_loss("bsce", COUNTS)
    assert type(bsce) is LogitAdjustedLoss and bsce.tau == 1.0 and bsce.loss_name == "bsce"
    assert loss_spec("balanced_softmax") is loss_spec("bsce") and loss_spec("bsce").cite == ("ren2020balanced",)
    with pytest.raises(ValueError, match="loss 'bsce' was built for 4 classes"):
        bsce(torch.randn(3, 5), torch.tensor([0, 1, 2]))


# --------------------------------------------------------------------------------------------
# individual losses against their formulas


def test_ce_matches_f_cross_entropy() -> None:
    logits, target = _batch()
    torch.testing.assert_close(CrossEntropyLoss()(logits, target), F.cross_entropy(logits, target))
    torch.testing.assert_close(
        create_loss("ce", smoothing=0.1)(logits, target), F.cross_entropy(logits, target, label_smoothing=0.1)
    )


def test_ce_soft_targets() -> None:
    logits, target = _batch()
    one_hot = F.one_hot(target, NUM_CLASSES).to(logits.dtype)
    torch.testing.assert_close(CrossEntropyLoss()(logits, one_hot), F.cross_entropy(logits, target))
    soft = torch.softmax(torch.randn(logits.shape, dtype=logits.dtype), dim=1)
    expected = -(soft * logits.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(CrossEntropyLoss()(logits, soft), expected)


def test_bsce_is_ce_on_shifted_logits() -> None:
    logits, target = _batch()
    shifted = logits + torch.tensor(COUNTS, dtype=logits.dtype).log()
    expected = F.cross_entropy(shifted, target)
    torch.testing.assert_close(BalancedSoftmaxLoss(COUNTS)(logits, target), expected)
    torch.testing.assert_close(create_loss("balanced_softmax", COUNTS)(logits, target), expected)


def test_la_tau_one_equals_bsce() -> None:
    logits, target = _batch()
    la = create_loss("logit_adjust", COUNTS, tau=1.0)
    assert isinstance(la, LogitAdjustedLoss)
    torch.testing.assert_close(la(logits, target), create_loss("bsce", COUNTS)(logits, target))
    la_zero = LogitAdjustedLoss(COUNTS, tau=0.0)
    torch.testing.assert_close(la_zero(logits, target), F.cross_entropy(logits, target))


def test_focal_gamma_zero_is_ce_and_formula() -> None:
    logits, target = _batch()
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target), F.cross_entropy(logits, target))
    pt = logits.softmax(1)[torch.arange(len(target)), target]
    expected = (-((1 - pt) ** 2) * pt.log()).mean()
    torch.testing.assert_close(create_loss("focal", gamma=2.0)(logits, target), expected)


def test_cb_weights_two_classes_by_hand() -> None:
    beta, counts = 0.9, [10, 2]
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    expected = [2 * w / sum(raw) for w in raw]  # normalised to sum to C = 2
    loss_fn = create_loss("cb", counts, beta=beta)
    assert isinstance(loss_fn, ClassBalancedLoss)
    torch.testing.assert_close(loss_fn.weights.double(), torch.tensor(expected, dtype=torch.float64))
    logits = torch.randn(6, 2, dtype=torch.float64)
    target = torch.tensor([0, 1, 1, 0, 0, 1])
    weights = torch.tensor(expected, dtype=torch.float64)[target]
    ce = F.cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(loss_fn(logits, target), (weights * ce).mean())
    focal = create_loss("cb_focal", counts, beta=beta, gamma=0.0)
    torch.testing.assert_close(focal(logits, target), (weights * ce).mean())


def test_ldam_margins() -> None:
    loss_fn = create_loss("ldam", COUNTS)
    assert isinstance(loss_fn, LDAMLoss) and loss_fn.drw_epoch is None
    margins = loss_fn.margins.double()
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    assert math.isclose(margins.max().item(), 0.5, rel_tol=1e-6)
    ratio = margins * counts.pow(0.25)
    torch.testing.assert_close(ratio, ratio[0].expand_as(ratio))
    assert math.isclose(LDAMLoss(COUNTS, max_m=0.3).margins.max().item(), 0.3, rel_tol=1e-6)
    # value: CE on s * (z - m_y at the true class)
    logits, target = _batch()
    adjusted = logits.clone()
    adjusted[torch.arange(len(target)), target] -= margins[target]
    torch.testing.assert_close(loss_fn(logits, target), F.cross_entropy(30.0 * adjusted, target))


def test_ldam_drw_switches_at_drw_epoch() -> None:
    loss_fn = create_loss("ldam_drw", COUNTS, drw_epoch=3)
    logits, target = _batch()
    loss_fn.set_epoch(2)
    assert loss_fn.class_weights is None
    before = loss_fn(logits, target)
    no_drw = LDAMLoss(COUNTS)(logits, target)
    torch.testing.assert_close(before, no_drw)
    loss_fn.set_epoch(3)
    weights = loss_fn.class_weights
    assert weights is not None
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    raw = (1 - 0.9999) / (1 - 0.9999**counts)
    torch.testing.assert_close(weights.double(), raw * NUM_CLASSES / raw.sum(), rtol=1e-5, atol=1e-6)
    after = loss_fn(logits, target)
    assert not torch.allclose(before, after)
    margins = loss_fn.margins.double()
    adjusted = logits.clone()
    adjusted[torch.arange(len(target)), target] -= margins[target]
    expected = F.cross_entropy(30.0 * adjusted, target, weight=weights.double())
    torch.testing.assert_close(after, expected)
    assert create_loss("ldam_drw", COUNTS).drw_epoch == 160


# --------------------------------------------------------------------------------------------
# GML


def _naive_gml(logits: torch.Tensor, target: torch.Tensor, counts: list[int], p: float) -> float:
    """Python loops, plain softmax and probabilities: the definition, no log-space tricks."""
    per_class = []
    for c in range(len(counts)):
        probs = []
        for i in range(len(target)):
            if int(target[i]) != c:
                continue
            scores = [math.exp(float(logits[i, k]) + math.log(counts[k])) for k in range(len(counts))]
            probs.append(scores[c] / sum(scores))
        if probs:
            mean_p = sum(q**p for q in probs) / len(probs)
            per_class.append(-math.log(mean_p ** (1.0 / p)))
    return sum(per_class) / len(per_class)


@pytest.mark.parametrize("p", [1.0, 2.0, 0.5, -1.0])
def test_gml_matches_naive(p: float) -> None:
    logits, _ = _batch(n=9, seed=3)
    target = torch.tensor([0, 0, 2, 0, 2, 2, 2, 0, 0])  # classes 1 and 3 absent
    loss = create_loss("gml", COUNTS, p=p)(logits, target)
    assert math.isclose(loss.item(), _naive_gml(logits, target, COUNTS, p), rel_tol=1e-10)


def test_gml_p0_is_geometric_mean_limit() -> None:
    logits, target = _batch(n=10, seed=4)
    log_q = F.log_softmax(logits + torch.tensor(COUNTS, dtype=logits.dtype).log(), 1)
    log_q = log_q[torch.arange(len(target)), target]
    expected = -torch.stack([log_q[target == c].mean() for c in target.unique()]).mean()
    torch.testing.assert_close(GeometricMeanLoss(COUNTS, p=0.0)(logits, target), expected)
    near = GeometricMeanLoss(COUNTS, p=1e-6)(logits, target)
    torch.testing.assert_close(near, expected, rtol=1e-5, atol=1e-6)


def test_gml_extreme_logits_stable() -> None:
    logits, target = _batch(n=8, seed=5, dtype=torch.float32)
    logits = (logits * 200).requires_grad_(True)  # true-class probabilities down to ~exp(-1000)
    for p in (1.0, 2.0):
        loss = GeometricMeanLoss(COUNTS, p=p)(logits, target)
        assert torch.isfinite(loss)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_gml_absent_classes_and_gradient_flow(p: float) -> None:
    loss_fn = GeometricMeanLoss(COUNTS, p=p)
    logits, _ = _batch(n=7, seed=6)
    target = torch.tensor([1, 1, 1, 3, 1, 3, 1])  # classes 0 and 2 absent
    logits.requires_grad_(True)
    log_means, present = loss_fn.class_log_means(logits, target)
    assert present.tolist() == [False, True, False, True]
    assert log_means[~present].eq(0).all()
    # each present class's term only receives gradient from its own samples
    for c in (1, 3):
        (grad,) = torch.autograd.grad(log_means[c], logits, retain_graph=True)
        assert torch.isfinite(grad).all()
        assert grad[target != c].abs().max() == 0
        assert grad[target == c].abs().sum() > 0
    # absent classes' placeholders carry no gradient (and no NaN)
    for c in (0, 2):
        (grad,) = torch.autograd.grad(log_means[c], logits, retain_graph=True, allow_unused=True)
        assert grad is None or grad.abs().max() == 0
    # the loss is the mean over present classes only: equals per-class losses on sub-batches
    loss = loss_fn(logits, target)
    sub = [loss_fn(logits[target == c], target[target == c]) for c in (1, 3)]
    torch.testing.assert_close(loss, torch.stack(sub).mean())


def test_gml_invariances() -> None:
    loss_fn = GeometricMeanLoss(COUNTS)
    logits, target = _batch(n=10, seed=7)
    loss = loss_fn(logits, target)
    perm = torch.randperm(len(target))
    torch.testing.assert_close(loss_fn(logits[perm], target[perm]), loss)  # order
    torch.testing.assert_close(loss_fn(logits.repeat(3, 1), target.repeat(3)), loss)  # per-class means
    torch.testing.assert_close(loss_fn(logits + 5.0, target), loss)  # softmax shift


# --------------------------------------------------------------------------------------------
# errors


def test_unknown_name_lists_valid() -> None:
    with pytest.raises(ValueError, match="valid names") as info:
        create_loss("nope", COUNTS)
    for name in list_losses():
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["cb", "cb_focal", "bsce", "la", "ldam", "ldam_drw", "gml"])
def test_missing_counts(name: str) -> None:
    with pytest.raises(ValueError, match="class_counts"):
        create_loss(name)


@pytest.mark.parametrize("name", ["cb", "cb_focal", "bsce", "la", "ldam", "ldam_drw", "gml"])
def test_zero_counts(name: str) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        create_loss(name, [10, 0, 3])


def test_ce_focal_need_no_counts() -> None:
    logits, target = _batch()
    assert torch.isfinite(create_loss("ce")(logits, target))
    assert torch.isfinite(create_loss("focal", [10, 0, 3, 1])(logits, target))


def test_bad_kwargs_and_shapes() -> None:
    with pytest.raises(TypeError, match="gamma"):
        create_loss("bsce", COUNTS, gamma=2.0)
    with pytest.raises(ValueError, match="4 classes"):
        create_loss("gml", COUNTS)(torch.randn(3, 5), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="soft"):
        create_loss("ldam", COUNTS)(torch.randn(3, 4), torch.softmax(torch.randn(3, 4), 1))


# --------------------------------------------------------------------------------------------
# label-aware smoothing (MiSLAS)


@pytest.mark.parametrize(
    "form, middle",
    [
        ("linear", 0.25),
        ("concave", 0.1 + 0.3 / math.sqrt(2)),  # 0.3121: above the line
        ("convex", 0.4 - 0.3 / math.sqrt(2)),
    ],
)  # 0.1879: below it
def test_las_epsilons_by_hand(form: str, middle: float) -> None:
    """Counts 9, 5, 1: t = (N - 1) / 8 = 1, 1/2, 0; eps_1 = 0.4 (head), eps_K = 0.1 (tail)."""
    from ltzoo.methods.losses import label_aware_epsilons

    eps = label_aware_epsilons(torch.tensor([9.0, 5.0, 1.0]), eps_head=0.4, eps_tail=0.1, form=form)
    torch.testing.assert_close(eps, torch.tensor([0.4, middle, 0.1], dtype=torch.float64), rtol=0, atol=1e-12)
    # the registered loss holds them per class, whatever the class order
    loss = create_loss("las", [1, 9, 5], eps_head=0.4, eps_tail=0.1, form=form)
    torch.testing.assert_close(loss.epsilons, torch.tensor([0.1, 0.4, middle], dtype=torch.float64), rtol=0, atol=1e-12)


def test_las_loss_by_hand() -> None:
    """Logits (0, ln 3): p = (1/4, 3/4); class 1 (the head, eps 0.2):
    0.8 * -ln(3/4) + 0.2 * (-ln(1/4) - ln(3/4)) / 2."""
    loss = create_loss("las", [1, 4], eps_head=0.2, eps_tail=0.0)
    value = loss(torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64), torch.tensor([1]))
    assert float(value) == pytest.approx(0.3975433013185919, abs=1e-12)
    # the tail class (eps 0): plain negative log-likelihood
    value = loss(torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64), torch.tensor([0]))
    assert float(value) == pytest.approx(math.log(4.0), abs=1e-12)


def test_las_with_zero_smoothing_is_ce_and_with_equal_counts_is_label_smoothing() -> None:
    logits, target = _batch(n=40)
    las = create_loss("las", COUNTS, eps_head=0.0, eps_tail=0.0)
    torch.testing.assert_close(las(logits, target), F.cross_entropy(logits, target), rtol=0, atol=1e-12)
    uniform = create_loss("las", [7, 7, 7, 7], eps_head=0.3, eps_tail=0.0)
    torch.testing.assert_close(
        uniform(logits, target), F.cross_entropy(logits, target, label_smoothing=0.3), rtol=0, atol=1e-12
    )


def test_las_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown label-aware smoothing form 'cubic'"):
        create_loss("las", COUNTS, form="cubic")
    with pytest.raises(ValueError, match=r"eps_head must be in \[0, 1\)"):
        create_loss("las", COUNTS, eps_head=1.0)
