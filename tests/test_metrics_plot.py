"""The per-class recall plot (`ltzoo.metrics.plot`) at 10, 1,000 and 8,142 classes: which layout it takes, what it
shows (shot groups at their cut-offs, the binned mean, the worst classes by name, the recall histogram), and that
it is written deterministically and atomically."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from ltzoo.metrics import longtail_metrics, plot_per_class_recall
from ltzoo.metrics.plot import BARS_UP_TO, _recall_bins, build_per_class_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: ImageNet-LT's training images per class (1,280 down to 5), where the shared data holds it.
IMAGENET_LT_COUNTS = Path(__file__).resolve().parents[2] / "shared/data/splits/derived/ImageNet_LT_train_cls_freq.json"


def _counts(num_classes: int, rng: np.random.Generator) -> list[int]:
    """Long-tailed training counts: ImageNet-LT's own at 1,000 classes if present, else an exponential profile
    (CIFAR-10-LT's 5,000 to 50 at 10 classes, ImageNet-LT's 1,280 to 5, iNaturalist 2018's 1,000 to 2 at 8,142)."""
    if num_classes == 1000 and IMAGENET_LT_COUNTS.is_file():
        return json.loads(IMAGENET_LT_COUNTS.read_text())
    hi, lo = {10: (5000, 50), 8142: (1000, 2)}.get(num_classes, (1280, 5))
    counts = np.round(hi * (lo / hi) ** (np.arange(num_classes) / max(1, num_classes - 1))).astype(int)
    return rng.permutation(counts).tolist()


def _long_tailed(num_classes: int, seed: int = 0, **shots):
    """A `longtail_metrics` result whose recalls rise with the log of the training count, its counts and names.
    Test images per class: 100 (10 classes), 50 (ImageNet-LT's test split), 3 (iNaturalist's validation)."""
    rng = np.random.default_rng(seed)
    counts = _counts(num_classes, rng)
    per = {10: 100, 8142: 3}.get(num_classes, 50)
    logc = np.log(np.asarray(counts, dtype=float))
    p = 1 / (1 + np.exp(-(-2.2 + 0.75 * logc + rng.normal(0, 0.6, num_classes))))
    hits = rng.binomial(per, p)
    labels = np.repeat(np.arange(num_classes), per)
    right = (np.arange(per)[None, :] < hits[:, None]).ravel()
    preds = np.where(right, labels, (labels + 1) % num_classes)
    m = longtail_metrics(torch.from_numpy(labels), torch.from_numpy(preds), train_counts=counts, **shots)
    names = [f"n{1440764 + 37 * c:08d} class {c}" for c in range(num_classes)]
    return m, counts, names


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("num_classes", [10, 1000, 8142])
def test_writes_a_png_at_each_scale(tmp_path, num_classes):
    m, counts, names = _long_tailed(num_classes)
    t = time.perf_counter()
    out = plot_per_class_recall(m, counts, tmp_path / "sub" / "recall.png", title="test split", class_names=names)
    elapsed = time.perf_counter() - t
    print(f"plot_per_class_recall, {num_classes} classes: {elapsed:.2f}s")  # no timing assert: shared CI machines
    assert out == tmp_path / "sub" / "recall.png"
    width, height = _png_size(out.read_bytes())
    assert width >= 1000 and height >= 400
    assert [p.name for p in out.parent.iterdir()] == ["recall.png"]  # no temporary file left beside it

    fig = build_per_class_figure(m, counts, "test split", names)
    if num_classes <= BARS_UP_TO:
        assert fig.get_label() == "bars"
        assert fig.axes[0].get_xscale() == "linear"
    else:
        assert fig.get_label() == "scatter"
        assert fig.axes[0].get_xscale() == "log"  # recall against training images, not a barcode of bars
        assert not fig.axes[0].containers  # no bars
        assert f"({num_classes:,} classes)" in fig.axes[0].get_title()


def test_few_classes_keep_one_labelled_bar_each_most_images_first(tmp_path):
    m, counts, names = _long_tailed(10)
    fig = build_per_class_figure(m, counts, "t", names)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    order = sorted(range(10), key=lambda c: -counts[c])
    assert [t.split("\n")[0].split(" (")[0] for t in ticks] == [names[c] for c in order]
    assert all(f"({counts[c]})" in t for t, c in zip(ticks, order))
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    assert heights == sorted(round(r, 6) for r in m["per_class_recall"])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("HM ") for t in legend) and any(t.startswith("many-shot") for t in legend)
    plain = build_per_class_figure(m, None, "t")  # no counts: class order, names by index
    assert plain.get_label() == "bars"
    assert [t.get_text() for t in plain.axes[0].get_xticklabels()] == [f"class {c}" for c in range(10)]


def test_between_30_and_50_classes_every_bar_is_named(tmp_path):
    m, counts, names = _long_tailed(40)
    fig = build_per_class_figure(m, counts, "t", [f"c{c}" for c in range(40)])
    assert fig.get_label() == "bars"
    assert len([t for t in fig.axes[0].get_xticklabels() if t.get_text()]) == 40
    assert plot_per_class_recall(m, counts, tmp_path / "p.png").read_bytes()[:8] == PNG_MAGIC


def test_the_worst_classes_are_named_and_circled():
    m, counts, names = _long_tailed(1000)
    fig = build_per_class_figure(m, counts, "t", names)
    recall = m["per_class_recall"]
    worst = sorted(range(1000), key=lambda c: (recall[c], -counts[c], c))[:5]
    listing = "\n".join(_texts(fig.axes[2]))
    assert fig.axes[2].get_title(loc="left") == "lowest recall (5 of 1,000)"
    positions = [listing.index(names[c]) for c in worst]
    assert positions == sorted(positions)  # in order, lowest first
    numbers = [a.get_text() for a in fig.axes[0].texts if isinstance(a, matplotlib.text.Annotation)]
    assert sorted(int(n) for label in numbers for n in label.split(",")) == [1, 2, 3, 4, 5]
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)  # place them as the saved PNG has them
    labels = [a for a in fig.axes[0].texts if isinstance(a, matplotlib.text.Annotation)]
    boxes = [a.get_bbox_patch().get_window_extent(renderer) for a in labels]  # the white box behind each number
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_the_shot_groups_sit_at_the_metrics_cut_offs_unless_told_otherwise():
    m, counts, _ = _long_tailed(1000, many=300, few=50)
    assert m["shot_thresholds"] == {"many": 300, "few": 50}
    texts = "\n".join(_texts(build_per_class_figure(m, counts)))
    c = np.asarray(counts)
    assert f"few-shot (< 50 images)\n{int((c < 50).sum()):,} classes" in texts
    assert f"many-shot (> 300 images)\n{int((c > 300).sum()):,} classes" in texts
    assert f"mean {100 * m['few']:.1f}%" in texts  # the group's mean recall, as the metrics have it
    texts = "\n".join(_texts(build_per_class_figure(m, counts, shot_thresholds={"many": 100, "few": 20})))
    assert "few-shot (< 20 images)" in texts and "many-shot (> 100 images)" in texts
    cuts = sorted(line.get_xdata()[0] for line in build_per_class_figure(m, counts).axes[0].lines[:2])
    assert cuts == [49.5, 300.5]  # dashed lines between 49 and 50 images, and between 300 and 301


def test_the_binned_mean_follows_recall_up_the_counts():
    m, counts, _ = _long_tailed(1000)
    ax = build_per_class_figure(m, counts).axes[0]
    (mean,) = [line for line in ax.lines if line.get_label() == "mean per log-count bin"]
    x, y = mean.get_xdata(), mean.get_ydata()
    assert 8 <= len(x) <= 24 and np.all(np.diff(x) > 0)
    assert y[-1] - y[0] > 0.3  # the head is recognised far better than the tail
    recall = np.asarray(m["per_class_recall"])
    assert min(y) >= recall.min() and max(y) <= recall.max()


def test_the_histogram_counts_every_class_in_bins_that_do_not_alias():
    m, counts, _ = _long_tailed(1000)  # 50 test images per class: recalls are multiples of 1/50
    fig = build_per_class_figure(m, counts)
    assert sum(p.get_width() for p in fig.axes[1].patches) == 1000
    edges = _recall_bins(np.arange(51) / 50)
    per_bin = np.histogram(np.arange(51) / 50, bins=edges)[0]
    assert set(per_bin.tolist()) == {3}  # three possible recalls in each bin, not alternately two and three
    assert len(_recall_bins(np.array([0, 1 / 3, 2 / 3, 1.0]))) == 5  # 3 images per class: four bins
    assert np.allclose(_recall_bins(np.array([0.123, 0.5])), np.linspace(0, 1, 21))


def test_inaturalist_scale_is_readable_and_deterministic(tmp_path):
    m, counts, names = _long_tailed(8142)  # 3 validation images per class: four possible recalls
    a = plot_per_class_recall(m, counts, tmp_path / "a.png", class_names=names).read_bytes()
    b = plot_per_class_recall(m, counts, tmp_path / "b.png", class_names=names).read_bytes()
    assert a == b
    fig = build_per_class_figure(m, counts, "t", names)
    zero = sum(r == 0 for r in m["per_class_recall"])
    assert f"{zero:,} classes at 0% recall" in "\n".join(_texts(fig.axes[2]))
    assert "points jittered" in _texts(fig.axes[0])


def test_many_classes_without_counts_rank_recall_and_note_absent_classes(tmp_path):
    m, counts, names = _long_tailed(1000)
    m = {**m, "per_class_recall": [None if c % 100 == 0 else r for c, r in enumerate(m["per_class_recall"])]}
    fig = build_per_class_figure(m, None, "t", names)
    assert fig.get_label() == "profile"
    assert "990 classes; 10 absent from the split" in fig.axes[0].get_title()
    fig = build_per_class_figure(m, counts, "t", names)
    assert fig.get_label() == "scatter"
    assert "990 classes; 10 absent" in fig.axes[0].get_title()
    assert plot_per_class_recall(m, None, tmp_path / "p.png").read_bytes()[:8] == PNG_MAGIC


def test_metrics_read_back_from_results_json(tmp_path):
    m, counts, names = _long_tailed(1000)
    back = json.loads(json.dumps(m))  # as `ltzoo card` and the zoo read them
    out = plot_per_class_recall(back, counts, tmp_path / "r.png", "t", names)  # the positional call of old
    assert out.read_bytes()[:8] == PNG_MAGIC
    del back["shot_thresholds"]  # an older results.json: longtail_metrics' default cut-offs
    assert "few-shot (< 20 images)" in "\n".join(_texts(build_per_class_figure(back, counts)))


def test_balanced_classes_make_one_group(tmp_path):
    m, _, _ = _long_tailed(200)
    counts = [60] * 200
    fig = build_per_class_figure(m, counts)
    texts = "\n".join(_texts(fig))
    assert "medium-shot" in texts and "few-shot (" not in texts and "many-shot (" not in texts
    assert plot_per_class_recall(m, counts, tmp_path / "b.png").read_bytes()[:8] == PNG_MAGIC


def test_written_atomically(tmp_path, monkeypatch):
    m, counts, _ = _long_tailed(1000)
    path = tmp_path / "recall.png"
    path.write_bytes(b"the previous plot")

    def fail(self, fname, **kwargs):
        Path(fname).write_bytes(b"half a PNG")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", fail)
    with pytest.raises(OSError, match="disk full"):
        plot_per_class_recall(m, counts, path)
    assert path.read_bytes() == b"the previous plot"
    assert [p.name for p in tmp_path.iterdir()] == ["recall.png"]


@pytest.mark.parametrize("num_classes", [10, 1000])
def test_class_names_are_shown_as_written(tmp_path, num_classes):
    m, counts, _ = _long_tailed(num_classes)
    names = [rf"${c} \notacommand ${c + 1}" for c in range(num_classes)]  # mathtext would fail to parse these
    out = plot_per_class_recall(m, counts, tmp_path / "n.png", class_names=names)
    assert out.read_bytes()[:8] == PNG_MAGIC
