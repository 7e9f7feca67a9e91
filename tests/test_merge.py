"""Weight averaging (model soups) and BatchNorm re-estimation: ltzoo.methods.merge."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ltzoo.methods.merge import average_checkpoints, greedy_soup, reestimate_bn, sequential_weights


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3)
    )


def _trained_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with non-trivial BN running statistics and num_batches_tracked."""
    net = _net(seed).train()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 1, 5, 5, generator=gen) * 2 + 1)
    return {k: v.clone() for k, v in net.state_dict().items()}


def _save(sd: dict, path) -> str:
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return str(path)


def _assert_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------------- average_checkpoints
def test_average_of_two_identical_dicts_is_exact():
    sd = _trained_state()
    assert int(sd["1.num_batches_tracked"]) == 3 and sd["1.num_batches_tracked"].dtype == torch.long
    assert not torch.equal(sd["1.running_mean"], torch.zeros(4))
    _assert_equal(average_checkpoints([sd, {k: v.clone() for k, v in sd.items()}]), sd)


def test_average_of_two_identical_files_is_exact(tmp_path):
    sd = _trained_state()
    files = [_save(sd, tmp_path / "a.safetensors"), _save(sd, tmp_path / "b.safetensors")]
    _assert_equal(average_checkpoints(files), sd)
    _assert_equal(average_checkpoints([tmp_path / "a.safetensors"]), sd)  # Path objects too
    # the merged model loads into the architecture and computes what the member does
    net, ref = _net(), _net()
    net.load_state_dict(average_checkpoints(files))
    ref.load_state_dict(sd)
    x = torch.randn(4, 1, 5, 5)
    torch.testing.assert_close(net.eval()(x), ref.eval()(x), rtol=0, atol=0)


def test_average_keeps_dtypes():
    sd = {
        "w": torch.randn(3, dtype=torch.float16),
        "b": torch.randn(2, dtype=torch.bfloat16),
        "n": torch.tensor(5),
        "d": torch.randn(2, dtype=torch.float64),
    }
    _assert_equal(average_checkpoints([sd, dict(sd), dict(sd)]), sd)


def test_average_of_different_models_is_elementwise_mean():
    a, b = _trained_state(0), _trained_state(1)
    merged = average_checkpoints([a, b])
    for k in a:
        if a[k].is_floating_point():
            expected = ((a[k].double() + b[k].double()) / 2).float()
            assert torch.equal(merged[k], expected), k
        else:  # integers (num_batches_tracked) come from the first member
            assert torch.equal(merged[k], a[k]) and merged[k].dtype == a[k].dtype, k
    c = _trained_state(2)
    merged = average_checkpoints([a, b, c])
    torch.testing.assert_close(merged["0.weight"], (a["0.weight"] + b["0.weight"] + c["0.weight"]) / 3)
    torch.testing.assert_close(
        merged["1.running_var"], (a["1.running_var"] + b["1.running_var"] + c["1.running_var"]) / 3
    )


def test_weighted_average():
    a, b = _trained_state(0), _trained_state(1)
    merged = average_checkpoints([a, b], weights=[1.0, 3.0])
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(merged[k], 0.25 * a[k] + 0.75 * b[k], rtol=1e-6, atol=1e-6)
    # weights are normalised: scaling them all changes nothing
    _assert_equal(average_checkpoints([a, b], weights=[2.0, 6.0]), merged)
    # a zero weight ignores that member (its values, not its keys)
    _assert_equal(
        average_checkpoints([a, b], weights=[0.0, 1.0]), {**b, "1.num_batches_tracked": a["1.num_batches_tracked"]}
    )
    # weighting identical members still returns the member
    _assert_equal(average_checkpoints([a, dict(a)], weights=[0.3, 0.7]), a)


def test_weights_must_match_members():
    a = _trained_state()
    with pytest.raises(ValueError, match="weights"):
        average_checkpoints([a, a], weights=[1.0])
    with pytest.raises(ValueError, match="weights"):
        average_checkpoints([a, a], weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="sum"):
        average_checkpoints([a, a], weights=[0.0, 0.0])


def test_mismatched_members_raise_clearly(tmp_path):
    a = _trained_state()
    extra = {**a, "2.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"member 1 has other parameters than member 0.*extra \['2.weight'\]"):
        average_checkpoints([a, extra])
    missing = {k: v for k, v in a.items() if k != "0.bias"}
    with pytest.raises(ValueError, match=r"missing \['0.bias'\]"):
        average_checkpoints([a, missing])
    reshaped = {**a, "4.weight": torch.zeros(2, 100)}
    with pytest.raises(ValueError, match=r"member 2: 4.weight has shape \(2, 100\), member 0 \(3, 100\)"):
        average_checkpoints([a, a, reshaped])
    # other architecture, from files
    other = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8)).state_dict()
    with pytest.raises(ValueError, match="other parameters"):
        average_checkpoints([_save(a, tmp_path / "a.safetensors"), _save(other, tmp_path / "o.safetensors")])
    retyped = {**a, "1.num_batches_tracked": torch.tensor(3.0)}
    with pytest.raises(ValueError, match="num_batches_tracked"):
        average_checkpoints([a, retyped])
    with pytest.raises(ValueError, match="no members"):
        average_checkpoints([])


def test_streaming_generator_and_file_list(tmp_path, monkeypatch):
    sds = [_trained_state(s) for s in range(4)]
    files = [_save(sd, tmp_path / f"m{i}.safetensors") for i, sd in enumerate(sds)]
    expected = average_checkpoints(sds)

    # a generator is consumed once, one member at a time
    consumed = []

    def gen():
        for i, sd in enumerate(sds):
            consumed.append(i)
            yield sd

    _assert_equal(average_checkpoints(gen()), expected)
    assert consumed == [0, 1, 2, 3]

    # a list of paths is loaded lazily: at most one member file is held at a time
    from ltzoo.methods import merge as merge

    live, peak, real_load = [], [0], merge.load_file

    def tracking_load(path):
        sd = real_load(path)
        live.append(path)
        peak[0] = max(peak[0], len(live))
        return _Released(sd, live, path)

    monkeypatch.setattr(merge, "load_file", tracking_load)
    _assert_equal(average_checkpoints(files), expected)
    assert len(live) <= 1 and peak[0] == 1, "more than one member file held at once"
    _assert_equal(average_checkpoints(iter(files)), expected)


class _Released(dict):
    """A loaded state dict that records when it is freed."""

    def __init__(self, sd, live, path):
        super().__init__(sd)
        self._live, self._path = live, path

    def __del__(self):
        self._live.remove(self._path)


# ------------------------------------------------------------------------------------------ greedy_soup
def test_greedy_soup_keeps_a_member_only_when_the_score_does_not_fall(tmp_path):
    # one parameter per member; the fake validation score peaks when the soup's value is 1.0
    values = [0.0, 1.0, 2.0, 5.0, 1.5]
    files = [_save({"w": torch.tensor([v])}, tmp_path / f"m{i}.safetensors") for i, v in enumerate(values)]
    seen = []

    def evaluate(sd):
        seen.append(float(sd["w"]))
        return -abs(float(sd["w"]) - 1.0)

    own = [evaluate({"w": torch.tensor([v])}) for v in values]
    seen.clear()
    merged, chosen = greedy_soup(files, own, evaluate)
    # order by own score: m1 (0), m4 (-0.5), then m0 and m2 (tie at -1, stable: m0 first), m3 (-4)
    # {1} -> 1.0 (score 0); +m4 -> 1.25 (worse: dropped); +m0 -> 0.5 (worse); +m2 -> 1.5 (worse); +m3 -> 3 (worse)
    assert chosen == [1] and float(merged["w"]) == 1.0
    assert seen == [1.0, 1.25, 0.5, 1.5, 3.0]

    # members that improve the soup are kept
    values = [0.0, 2.0, 1.2, 0.8]
    files = [_save({"w": torch.tensor([v])}, tmp_path / f"n{i}.safetensors") for i, v in enumerate(values)]
    scores = [-abs(v - 1.0) for v in values]  # order: 2 (1.2), 3 (0.8), then 0 and 1
    merged, chosen = greedy_soup(files, scores, lambda sd: -abs(float(sd["w"]) - 1.0))
    # {2} 1.2 (-0.2); +3 -> 1.0 (0: kept); +0 -> 2/3 (worse); +1 -> 4/3... (2+1.2+0.8)/3 = 1.333 (worse)
    assert chosen == [2, 3] and float(merged["w"]) == pytest.approx(1.0)

    # a tie keeps the member (model soups' rule: at least as good)
    merged, chosen = greedy_soup(files, [0.0, 3.0, 2.0, 1.0], lambda sd: 0.0)
    assert chosen == [0, 1, 2, 3] and float(merged["w"]) == pytest.approx(1.0)


def test_greedy_soup_argument_errors(tmp_path):
    f = _save({"w": torch.ones(1)}, tmp_path / "a.safetensors")
    with pytest.raises(ValueError, match="one score per member"):
        greedy_soup([f, f], [1.0], lambda sd: 0.0)
    with pytest.raises(ValueError, match="one score per member"):
        greedy_soup([], [], lambda sd: 0.0)


# ----------------------------------------------------------------------------------------- reestimate_bn
class _OneBN(nn.Module):
    """x -> BN -> linear: the BN's inputs are the images themselves."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3, momentum=0.1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.bn(x).mean((2, 3)))


def test_reestimate_bn_gives_exact_statistics_over_all_batches():
    torch.manual_seed(0)
    net = _OneBN()
    with torch.no_grad():  # non-trivial stale statistics and affine weights, to be replaced / kept
        net.bn.running_mean.fill_(5.0)
        net.bn.running_var.fill_(9.0)
        net.bn.weight.uniform_(0.5, 2.0)
        net.bn.bias.uniform_(-1, 1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    # batches of different sizes and distributions: an average of per-batch statistics would be wrong
    gen = torch.Generator().manual_seed(1)
    batches = [
        torch.randn(n, 3, 4, 4, generator=gen) * s + o for n, s, o in ((8, 1.0, 0.0), (5, 3.0, 2.0), (2, 0.5, -4.0))
    ]
    out = reestimate_bn(net, iter(batches))
    assert out is net and not net.training and not net.bn.training
    everything = torch.cat(batches)
    exact_mean = everything.double().mean((0, 2, 3))
    exact_var = everything.double().transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=True)  # BN's convention
    torch.testing.assert_close(net.bn.running_mean, exact_mean.float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(net.bn.running_var, exact_var.float(), rtol=1e-6, atol=1e-6)
    assert int(net.bn.num_batches_tracked) == 3
    for k in ("bn.weight", "bn.bias", "fc.weight", "fc.bias"):
        assert torch.equal(net.state_dict()[k], before[k]), f"{k} changed"
    assert net.bn.momentum == 0.1


def test_reestimate_bn_one_batch_matches_torch_batch_statistics():
    """With one batch, the result is what torch's BN computes on that batch (biased var normalises, unbiased is
    stored)."""
    torch.manual_seed(0)
    net = _OneBN()
    x = torch.randn(6, 3, 5, 5) * 2 + 1
    reestimate_bn(net, [x])
    ref = nn.BatchNorm2d(3, momentum=1.0).train()  # momentum 1: the running stats become the batch's
    ref(x)
    torch.testing.assert_close(net.bn.running_mean, ref.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net.bn.running_var, ref.running_var, rtol=1e-5, atol=1e-6)


def test_reestimate_bn_deeper_layers_see_train_mode_activations():
    """A second BN's statistics are those of its inputs in the training-mode forward pass (as in training)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))
    batches = [torch.randn(4, 2, 3, 3) for _ in range(3)]
    reestimate_bn(net, batches)
    mean, var = net[4].running_mean.clone(), net[4].running_var.clone()
    captured = []  # replay the training-mode pass (it moves the running stats, hence the copies above)
    h = net[4].register_forward_pre_hook(lambda m, inp: captured.append(inp[0].detach()))
    net.train()
    with torch.no_grad():
        for x in batches:
            net(x)
    h.remove()
    inputs = torch.cat(captured).transpose(0, 1).reshape(2, -1)
    torch.testing.assert_close(mean, inputs.mean(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var, inputs.var(1), rtol=1e-5, atol=1e-6)


def test_reestimate_bn_edge_cases():
    lin = nn.Sequential(nn.Linear(3, 3))
    assert reestimate_bn(lin, [torch.randn(2, 3)]) is lin and not lin.training  # no BN: nothing to do
    net = _OneBN()
    with pytest.raises(ValueError, match="no batches"):
        reestimate_bn(net, [])
    assert torch.equal(net.bn.running_mean, torch.zeros(3)) and not net.training
    bn1d = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    xs = [torch.randn(5, 4), torch.randn(3, 4)]
    reestimate_bn(bn1d, xs)
    with torch.no_grad():
        h = bn1d[0](torch.cat(xs))
    torch.testing.assert_close(bn1d[1].running_mean, h.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn1d[1].running_var, h.var(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lm", [0.7, 0.5, 1.0])
def test_sequential_weights_are_lt_soups_one_by_one_merge(lm):
    """LT-Soups' merge, new = (1 - lm) * new + lm * member from the start, is one weighted average."""
    g = torch.Generator().manual_seed(0)
    start = {"w": torch.randn(4, 3, generator=g)}
    members = [{"w": torch.randn(4, 3, generator=g)} for _ in range(5)]
    new = start["w"].double()
    for m in members:
        new = (1 - lm) * new + lm * m["w"].double()
    weights = sequential_weights(len(members), lm)
    assert sum(weights) == pytest.approx(1.0)
    assert torch.allclose(average_checkpoints([start, *members], weights)["w"], new.float(), atol=1e-6)
    with pytest.raises(ValueError, match="lm must be in"):
        sequential_weights(3, 0.0)
