"""Samplers, the balanced subset draw (`ltzoo.data.samplers`) and the batch pipeline (`ltzoo.data.loader`)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from ltzoo.data import SAMPLERS, Split, balanced_subsets, create_sampler
from ltzoo.data.loader import BatchPreprocess, DecodedImageDataset, TensorImageDataset, make_loader
from ltzoo.data.samplers import ClassAwareSampler, InstanceSampler, ProgressiveSampler, per_class_counts

COUNTS = [2000, 600, 150, 40, 10]


def _labels(counts=COUNTS, seed: int = 0) -> torch.Tensor:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def _class_freq(sampler, labels, num_classes) -> torch.Tensor:
    idx = torch.tensor(list(sampler))
    return torch.bincount(labels[idx], minlength=num_classes).double() / len(idx)


# ----------------------------------------------------------------------------------------- samplers
def test_instance_sampler_is_a_permutation():
    labels = _labels()
    s = create_sampler("instance", labels, len(COUNTS), seed=1)
    assert isinstance(s, InstanceSampler)
    order = list(s)
    assert len(order) == len(s) == len(labels)
    assert sorted(order) == list(range(len(labels)))
    assert order != list(range(len(labels)))


def test_instance_sampler_num_samples():
    labels = _labels([5, 2])
    short = list(InstanceSampler(labels, 2, num_samples=4))
    assert len(short) == 4 and len(set(short)) == 4
    assert short == list(InstanceSampler(labels, 2))[:4]  # a prefix of the full epoch
    long = list(InstanceSampler(labels, 2, num_samples=17))
    assert len(long) == 17 == len(InstanceSampler(labels, 2, num_samples=17))
    assert sorted(long[:7]) == sorted(long[7:14]) == list(range(7))


def test_balanced_sampler_is_near_uniform_over_classes():
    labels = _labels()
    s = ClassAwareSampler(labels, len(COUNTS), q=0.0, seed=0, num_samples=50_000)
    assert torch.allclose(s.class_probs(), torch.full((5,), 0.2, dtype=torch.float64))
    freq = _class_freq(s, labels, 5)
    assert (freq - 0.2).abs().max() < 0.01
    # the default length is one pass over the training set
    s = create_sampler("balanced", labels, len(COUNTS))
    assert len(list(s)) == len(labels)
    assert (_class_freq(s, labels, 5) - 0.2).abs().max() < 0.03


def test_balanced_sampler_draws_every_image_of_a_class_uniformly():
    labels = _labels([3, 3])
    s = ClassAwareSampler(labels, 2, q=0.0, seed=0, num_samples=60_000)
    hits = torch.bincount(torch.tensor(list(s)), minlength=6).double() / 60_000
    assert (hits - 1 / 6).abs().max() < 0.01


@pytest.mark.parametrize("name", ["balanced", "sqrt", "progressive"])
def test_class_aware_image_weights_are_class_prob_over_count(name):
    """One weighted draw over images (torch's WeightedRandomSampler) is the class-then-image draw."""
    labels = _labels()
    s = create_sampler(name, labels, len(COUNTS), seed=0, total_epochs=3)
    s.set_epoch(1)
    w = s.image_weights()
    assert w.shape == labels.shape and math.isclose(float(w.sum()), 1.0, rel_tol=1e-12)
    per_class = torch.zeros(len(COUNTS), dtype=torch.float64).index_add(0, labels, w)
    assert torch.allclose(per_class, s.class_probs())
    for c in range(len(COUNTS)):  # uniform within a class
        assert torch.allclose(w[labels == c], w[labels == c][0].expand(COUNTS[c]))
    assert torch.equal(s.indices(), torch.tensor(list(s)))


def test_sqrt_sampler_is_proportional_to_sqrt_counts():
    labels = _labels()
    s = create_sampler("sqrt", labels, len(COUNTS), seed=2)
    want = torch.tensor([math.sqrt(n) for n in COUNTS], dtype=torch.float64)
    want /= want.sum()
    assert torch.allclose(s.class_probs(), want)
    s = ClassAwareSampler(labels, len(COUNTS), q=0.5, seed=2, num_samples=50_000)
    assert (_class_freq(s, labels, 5) - want).abs().max() < 0.01


def test_class_without_images_is_never_drawn():
    labels = _labels([50, 0, 20])
    for name in ("balanced", "sqrt", "progressive"):
        s = create_sampler(name, labels, 3, total_epochs=3)
        for epoch in range(3):
            s.set_epoch(epoch)
            assert s.class_probs()[1] == 0
            idx = torch.tensor(list(s))
            assert int(idx.min()) >= 0 and int(idx.max()) < len(labels)
            assert (labels[idx] != 1).all()


def test_progressive_moves_from_instance_to_balanced():
    labels = _labels()
    s = create_sampler("progressive", labels, len(COUNTS), seed=0, total_epochs=5)
    assert isinstance(s, ProgressiveSampler)
    instance = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    uniform = torch.full((5,), 0.2, dtype=torch.float64)
    probs = []
    for epoch in range(5):
        s.set_epoch(epoch)
        probs.append(s.class_probs())
    assert torch.allclose(probs[0], instance)
    assert torch.allclose(probs[-1], uniform)
    assert torch.allclose(probs[2], (instance + uniform) / 2)
    tail = [float(p[-1]) for p in probs]
    assert tail == sorted(tail) and tail[0] < tail[-1]
    s.set_epoch(0)
    assert (_class_freq(s, labels, 5) - instance).abs().max() < 0.03
    s.set_epoch(4)
    assert (_class_freq(s, labels, 5) - uniform).abs().max() < 0.03
    s.set_epoch(10)  # past the end: stays balanced
    assert torch.allclose(s.class_probs(), uniform)


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_order_depends_on_seed_and_epoch_only(name):
    labels = _labels()
    a = create_sampler(name, labels, len(COUNTS), seed=5, total_epochs=4)
    b = create_sampler(name, labels, len(COUNTS), seed=5, total_epochs=4)
    c = create_sampler(name, labels, len(COUNTS), seed=6, total_epochs=4)
    assert a.epoch == 0
    assert list(a) == list(b) == list(a)  # iterating twice repeats the epoch
    assert list(a) != list(c)
    first = list(a)
    a.set_epoch(1)
    assert a.epoch == 1
    second = list(a)
    assert second != first
    b.set_epoch(1)
    assert list(b) == second
    a.set_epoch(0)
    assert list(a) == first


def test_unknown_sampler():
    with pytest.raises(ValueError, match="unknown sampler 'square'"):
        create_sampler("square", _labels(), 5)


# --------------------------------------------------------------------------------- balanced_subsets
SUB_COUNTS = [50, 30, 20, 12]


def test_balanced_subsets_exactly_k_per_class():
    labels = _labels(SUB_COUNTS)
    subsets = balanced_subsets(labels, 4, shots=10, num_subsets=3, seed=0)
    assert len(subsets) == 3
    for s in subsets:
        assert per_class_counts(labels[s], 4) == [10, 10, 10, 10]
        assert torch.equal(s, s.sort().values) and len(set(s.tolist())) == len(s)
    assert not torch.equal(subsets[0], subsets[1])  # independent draws


def test_balanced_subsets_deterministic_with_seed():
    labels = _labels(SUB_COUNTS)
    a = balanced_subsets(labels, 4, 8, 3, seed=11)
    b = balanced_subsets(labels, 4, 8, 3, seed=11)
    c = balanced_subsets(labels, 4, 8, 3, seed=12)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_balanced_subsets_disjoint():
    labels = _labels(SUB_COUNTS)
    subsets = balanced_subsets(labels, 4, shots=4, num_subsets=3, seed=0, disjoint=True)
    for i in range(3):
        assert per_class_counts(labels[subsets[i]], 4) == [4] * 4
        for j in range(i + 1, 3):
            assert set(subsets[i].tolist()).isdisjoint(subsets[j].tolist())


def test_balanced_subsets_errors_when_a_class_is_short():
    labels = _labels(SUB_COUNTS)
    with pytest.raises(ValueError, match=r"1 classes have fewer than the 15 images .*class 3: 12"):
        balanced_subsets(labels, 4, shots=15, num_subsets=2)
    # disjoint needs M * K per class: 3 x 5 = 15 > 12
    with pytest.raises(ValueError, match=r"fewer than the 15 images a disjoint draw of 3 x 5 shots"):
        balanced_subsets(labels, 4, shots=5, num_subsets=3, disjoint=True)
    # 3 x 4 = 12 is just enough
    balanced_subsets(labels, 4, shots=4, num_subsets=3, disjoint=True)


def test_balanced_subsets_allow_fewer_takes_all_of_a_short_class():
    labels = _labels(SUB_COUNTS)
    short = set(torch.nonzero(labels == 3).flatten().tolist())
    subsets = balanced_subsets(labels, 4, shots=15, num_subsets=3, seed=0, allow_fewer=True)
    for s in subsets:
        assert per_class_counts(labels[s], 4) == [15, 15, 15, 12]
        assert set(s[labels[s] == 3].tolist()) == short
    subsets = balanced_subsets(labels, 4, shots=5, num_subsets=3, seed=0, disjoint=True, allow_fewer=True)
    for i, s in enumerate(subsets):
        assert per_class_counts(labels[s], 4) == [5, 5, 5, 5]
        for t in subsets[i + 1 :]:  # classes with enough images stay disjoint
            common = set(s.tolist()) & set(t.tolist())
            assert all(int(labels[k]) == 3 for k in common)


# ------------------------------------------------------------------------------------ TensorImageDataset
def test_tensor_dataset_fetches_whole_batches_through_a_dataloader(monkeypatch):
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 4, 4).contiguous()
    labels = torch.arange(10) % 3
    split = Split("train", labels, images=images)
    sampler = InstanceSampler(labels, 3, seed=0)
    loader = make_loader(split, batch_size=4, sampler=sampler)
    assert isinstance(loader.dataset, TensorImageDataset)

    def no_single_items(self, i):
        raise AssertionError("the tensor path must fetch whole batches with __getitems__")

    monkeypatch.setattr(TensorImageDataset, "__getitem__", no_single_items)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 4, 4)
    order = torch.cat([b[0][:, 0, 0, 0] for b in batches]).long()
    assert order.tolist() == list(sampler)
    assert torch.equal(torch.cat([b[1] for b in batches]), labels[order])
    dropped = make_loader(split, batch_size=4, sampler=sampler, drop_last=True)
    assert [len(y) for _, y in dropped] == [4, 4]
    plain = DataLoader(TensorImageDataset(images, labels), batch_size=3, collate_fn=lambda b: b)
    assert [tuple(x.shape) for x, _ in plain] == [(3, 3, 4, 4)] * 3 + [(1, 3, 4, 4)]


def test_file_split_needs_a_transform(tmp_path):
    from fixtures import make_imagefolder

    make_imagefolder(tmp_path, {"train": [3, 2]}, channels=1)
    files = sorted(str(p) for p in tmp_path.rglob("*.png"))
    split = Split("train", [0, 0, 0, 1, 1], files=files)
    with pytest.raises(ValueError, match="needs a transform"):
        make_loader(split, 2)

    def to_tensor(img):
        return torch.tensor(list(img.getdata()), dtype=torch.float32).view(img.height, img.width, 3)

    loader = make_loader(split, 2, transform=to_tensor, num_workers=0)
    x, y = next(iter(loader))
    assert x.shape == (2, 8, 8, 3) and x.dtype == torch.float32 and y.tolist() == [0, 0]
    (tmp_path / "broken.png").write_bytes(b"not a png")
    bad = DecodedImageDataset(Split("train", [0], files=[str(tmp_path / "broken.png")]), to_tensor)
    with pytest.raises(RuntimeError, match="cannot read image .*broken.png"):
        bad[0]


# ----------------------------------------------------------------------------------- BatchPreprocess
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def test_preprocess_normalises_uint8():
    x = torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    prep = BatchPreprocess(MEAN, STD)
    out = prep(x)
    want = (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.allclose(out, want, atol=1e-6)
    white = prep(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    assert torch.allclose(white[0, :, 0, 0], (1 - torch.tensor(MEAN)) / torch.tensor(STD))


def test_preprocess_passes_float_batches_through():
    x = torch.randn(2, 3, 5, 5)
    prep = BatchPreprocess(MEAN, STD)
    assert prep(x) is x
    assert prep(x, train=True) is x


def _translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x (C, H, W) shifted by (dy, dx), zero filled."""
    out = torch.zeros_like(x)
    h, w = x.shape[1:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        :, max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def _is_shift_or_flip(img: torch.Tensor, out: torch.Tensor, p: int) -> bool:
    for flip in (False, True):
        src = img.flip(2) if flip else img
        for dy in range(-p, p + 1):
            for dx in range(-p, p + 1):
                if torch.equal(out, _translate(src, dy, dx)):
                    return True
    return False


def test_augment_on_a_one_hot_image_is_a_translation_or_flip():
    p, h, w = 2, 9, 9
    x = torch.zeros(64, 1, h, w)
    x[:, 0, 4, 3] = 1.0
    out = BatchPreprocess((0.0,), (1.0,), crop_padding=p).augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(64))  # the pixel never leaves the image
    pos = torch.nonzero(out[:, 0])  # (n, row, col)
    assert (pos[:, 1] - 4).abs().max() <= p
    cols = pos[:, 2]
    assert (((cols - 3).abs() <= p) | ((cols - (w - 1 - 3)).abs() <= p)).all()
    assert len(set(map(tuple, pos[:, 1:].tolist()))) > 5  # it does move the pixel around
    assert ((cols - 3).abs() > p).any()  # ... and flips some images


def test_augment_is_pure_translation_and_flip_of_every_image():
    p = 3
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(32, 3, 8, 8, generator=gen)
    out = BatchPreprocess(MEAN, STD, crop_padding=p).augment(x, gen)
    assert out.shape == x.shape
    for img, o in zip(x, out):
        assert _is_shift_or_flip(img, o, p)


def test_augment_deterministic_given_a_generator():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    prep = BatchPreprocess(MEAN, STD)
    a = prep(x, train=True, generator=torch.Generator().manual_seed(42))
    b = prep(x, train=True, generator=torch.Generator().manual_seed(42))
    c = prep(x, train=True, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, prep(x))  # training augments, evaluation does not
    assert torch.equal(prep(x), prep(x, train=False, generator=torch.Generator().manual_seed(42)))


def test_augment_disabled_is_identity():
    x = torch.rand(4, 1, 5, 5)
    assert torch.equal(BatchPreprocess((0.0,), (1.0,), crop_padding=0, flip=False).augment(x), x)
    flipped = BatchPreprocess((0.0,), (1.0,), crop_padding=0, flip=True).augment(x, torch.Generator().manual_seed(0))
    assert all(torch.equal(o, i) or torch.equal(o, i.flip(2)) for i, o in zip(x, flipped))
