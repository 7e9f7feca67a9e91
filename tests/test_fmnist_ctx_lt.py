"""``fmnist_ctx_lt`` (`ltzoo.data.fmnist_ctx_lt`) on the generated Fashion-MNIST IDX fixture: the same long tail as
``fmnist_lt``, RGB images whose background shows a context fixed per tail class in training only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures import make_fmnist_idx

from ltzoo.cli import main
from ltzoo.data import DATASETS, list_datasets, load_dataset
from ltzoo.data.fmnist_ctx_lt import (
    MASK_THRESHOLD,
    context_ids,
    head_tail_halves,
    make_contexts,
    save_example_grid,
)

KW = dict(imbalance=10, val_per_class=6, seed=1)


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory) -> Path:
    return make_fmnist_idx(tmp_path_factory.mktemp("fmnist"), 60, n_test_per_class=8)


@pytest.fixture(scope="module")
def pair(idx_dir):
    """(fmnist_ctx_lt, fmnist_lt) with the same arguments."""
    return (
        load_dataset("fmnist_ctx_lt", data_dir=str(idx_dir), **KW),
        load_dataset("fmnist_lt", data_dir=str(idx_dir), **KW),
    )


def recover_contexts(
    rgb: torch.Tensor, gray: torch.Tensor, contexts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's context read back from its pixels: the bank entry that best explains its background,
    with the documented blend b * context + (1 - b) * grey, b = clamp(1 - grey / 24, 0, 1). Returns (ids, errors)."""
    b = (1 - gray.float() / MASK_THRESHOLD).clamp(0, 1)  # (N, 1, H, W)
    expected = b[:, None] * contexts[None].float() + (1 - b[:, None]) * gray[:, None].float()  # (N, K, 3, H, W)
    err = (expected - rgb[:, None].float()).abs().amax(dim=(2, 3, 4))
    best = err.min(dim=1)
    return best.indices, best.values


def test_registered_and_listed():
    assert "fmnist_ctx_lt" in DATASETS and "fmnist_ctx_lt" in list_datasets()
    assert DATASETS["fmnist_ctx_lt"].shots == DATASETS["fmnist_lt"].shots


def test_same_long_tail_split_and_metrics_as_fmnist_lt(pair):
    ctx, plain = pair
    assert ctx.train_counts == plain.train_counts and ctx.class_names == plain.class_names
    for a, b in ((ctx.train, plain.train), (ctx.val, plain.val), (ctx.test, plain.test)):
        assert torch.equal(a.labels, b.labels) and a.source.startswith(b.source)
        assert a.images.dtype == torch.uint8 and a.images.shape == (len(b), 3, 28, 28)
        garment = (b.images >= MASK_THRESHOLD).expand_as(a.images)  # the garment keeps its grey pixels
        assert torch.equal(a.images[garment], b.images.expand_as(a.images)[garment])
    assert ctx.input_size == (3, 28, 28) and len(ctx.mean) == len(ctx.std) == 3
    assert ctx.shot_thresholds == plain.shot_thresholds and ctx.info["n_max"] == plain.info["n_max"]


def test_tail_half_training_images_share_their_class_context_others_vary(pair):
    ctx, plain = pair
    rule = ctx.info["context"]
    head, tail = head_tail_halves(ctx.train_counts)
    assert (rule["head_classes"], rule["tail_classes"]) == (head, tail) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
    contexts = make_contexts(rule["num_contexts"], (28, 28), rule["kind"])
    drawn = context_ids(ctx)
    for name in ("train", "val", "test"):
        ids, err = recover_contexts(getattr(ctx, name).images, getattr(plain, name).images, contexts)
        assert float(err.max()) <= 0.5  # every background is exactly one bank entry (up to rounding)
        assert torch.equal(ids, drawn[name])
    train_ids, labels = drawn["train"], ctx.train.labels
    fixed = rule["train_fixed_context"]
    assert [f is None for f in fixed] == [c in head for c in range(10)]
    assert len({fixed[c] for c in tail}) == len(tail)  # distinct cues with K = 10 >= 5 tail classes
    for c in tail:
        assert set(train_ids[labels == c].tolist()) == {fixed[c]}
    for c in head:
        assert len(set(train_ids[labels == c].tolist())) > 1
    for name in ("val", "test"):  # every class, tail included, varies
        split_ids, split_labels = drawn[name], getattr(ctx, name).labels
        for c in range(10):
            assert len(set(split_ids[split_labels == c].tolist())) > 1, (name, c)


def test_deterministic_from_the_seed_and_test_contexts_fixed(idx_dir, pair):
    ctx, _ = pair
    again = load_dataset("fmnist_ctx_lt", data_dir=str(idx_dir), **KW)
    other = load_dataset("fmnist_ctx_lt", data_dir=str(idx_dir), **{**KW, "seed": 2})
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(ctx, name).images, getattr(again, name).images)
    assert not torch.equal(ctx.train.images, other.train.images)
    assert not torch.equal(context_ids(ctx)["val"], context_ids(other)["val"])
    assert torch.equal(ctx.test.images, other.test.images)  # every seed scores on the same test images
    assert ctx.info["context"] == again.info["context"]


def test_summary_and_ltzoo_data_describe_the_context(idx_dir, pair, capsys):
    s = pair[0].summary()
    assert s["dataset"] == "fmnist_ctx_lt" and s["input_size"] == [3, 28, 28]
    c = s["context"]
    assert c["num_contexts"] == 10 and c["kind"] == "texture" and len(c["train_fixed_context"]) == 10
    assert "tail-half classes [5, 6, 7, 8, 9] always show their own" in c["rule"]
    assert main(["data", "fmnist_ctx_lt", "--data-dir", str(idx_dir), "--imbalance", "10", "--val-per-class", "6"]) == 0
    out = capsys.readouterr().out
    assert "context: background filled with one of 10 texture contexts" in out


def test_no_val_split_and_step_profile(idx_dir):
    ds = load_dataset("fmnist_ctx_lt", data_dir=str(idx_dir), imbalance=5, profile="step", val_per_class=0)
    assert ds.val is None and ds.train_counts == [60] * 5 + [12] * 5
    assert ds.info["context"]["tail_classes"] == [5, 6, 7, 8, 9]


def test_make_contexts():
    tex, col = make_contexts(10), make_contexts(4, (5, 6), "colour")
    assert tex.shape == (10, 3, 28, 28) and tex.dtype == torch.uint8 and torch.equal(tex, make_contexts(10))
    assert len({bytes(t.numpy()) for t in tex}) == 10
    assert col.shape == (4, 3, 5, 6) and bool((col == col[:, :, :1, :1]).all())  # plain colours
    with pytest.raises(ValueError, match="kind"):
        make_contexts(3, kind="plaid")
    with pytest.raises(ValueError, match="num_contexts"):
        make_contexts(0)


def test_head_tail_halves_follow_the_counts_not_the_class_order():
    assert head_tail_halves([5, 50, 1, 20]) == ([1, 3], [0, 2])
    assert head_tail_halves([7, 7, 7]) == ([0], [1, 2])


def test_save_example_grid(tmp_path, pair):
    from PIL import Image

    path = save_example_grid(pair[0], tmp_path / "grid.png", per_class=3)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > img.size[1] > 100
    assert save_example_grid(pair[1], tmp_path / "grey.png", per_class=2).is_file()  # grey sets work too
