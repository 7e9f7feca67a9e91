"""ltzoo.data.decode: a file decoded at the smallest JPEG scale its crop allows gives timm's crop boxes, flips and
jitter from the same random draws, timm's pixels where no reduction applies, and pixels within DCT-scaling
resampling of them where one does; PNGs are timm's exactly."""

from __future__ import annotations

import random

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from ltzoo.data import decode
from ltzoo.data.decode import FileImageTransform, draft_factor, file_transform
from ltzoo.data.loader import BatchPreprocess, cores_per_process, make_loader
from ltzoo.data.splits import Split

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _timm(train: bool):
    return timm.data.create_transform(
        input_size=224, is_training=train, interpolation="bicubic", crop_pct=0.875, mean=MEAN, std=STD
    )


def _image(path, size: tuple[int, int], fmt: str = "JPEG"):
    """A smooth colour image (little high-frequency content, as in photographs) saved at ``size`` (w, h)."""
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    small.save(path, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return path


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return BatchPreprocess(MEAN, STD, crop_padding=0, flip=False)(x[None])[0]


def _pair(tf_ours, tf_timm, path, seed: int):
    """Both transforms of one file from the same random draws (python's random for the box, torch's for flip and
    jitter, as timm draws them)."""
    random.seed(seed)
    torch.manual_seed(seed)
    with Image.open(path) as img:
        ours = tf_ours(img)
    random.seed(seed)
    torch.manual_seed(seed)
    with Image.open(path) as img:
        ref = tf_timm(img.convert("RGB"))
    return ours, ref


def test_draft_factor_keeps_the_output_resolution():
    assert draft_factor((350, 400), (224, 224)) == 1, "an ImageNet-sized crop allows no reduction at 224 px"
    assert draft_factor((448, 900), (224, 224)) == 2
    assert draft_factor((1000, 1800), (224, 224)) == 4
    assert draft_factor((2000, 1900), (224, 224)) == 8
    assert draft_factor((100, 100), (224, 224)) == 1, "a crop smaller than the output: full size"


@pytest.mark.parametrize("fmt,size", [("JPEG", (400, 350)), ("PNG", (1200, 1000))])
def test_training_crop_is_timms_where_no_reduction_applies(tmp_path, fmt, size):
    path = _image(tmp_path / f"a.{fmt.lower()}", size, fmt)
    ours_tf, ref_tf = FileImageTransform(_timm(True)), _timm(True)
    for seed in range(8):
        ours, ref = _pair(ours_tf, ref_tf, path, seed)
        assert ours.dtype == torch.uint8 and ours.shape == (3, 224, 224)
        assert torch.allclose(_normalised(ours), ref, atol=1e-5), "the same boxes, flips, jitter and pixels"


def test_training_crop_with_reduction_keeps_timms_boxes(tmp_path, monkeypatch):
    path = _image(tmp_path / "big.jpg", (1800, 1400))
    factors = []
    real = decode._scale
    monkeypatch.setattr(decode, "_scale", lambda img, factor: factors.append(factor) or real(img, factor))
    ours_tf, ref_tf = FileImageTransform(_timm(True)), _timm(True)
    no_draft = FileImageTransform(_timm(True), draft=False)
    diffs = []
    for seed in range(16):
        ours, ref = _pair(ours_tf, ref_tf, path, seed)
        full, _ = _pair(no_draft, ref_tf, path, seed)
        assert torch.allclose(_normalised(full), ref, atol=1e-5), "without draft: timm's pixels"
        diffs.append((ours.float() - full.float()).abs().mean().item())
    assert max(factors) > 1, "some boxes are large enough to decode reduced"
    assert max(diffs) < 3.0, f"the same boxes, flips and jitter: only the resampling differs ({diffs} grey levels)"


def test_a_decode_stopped_early_has_the_full_decodes_rows(tmp_path):
    """A baseline JPEG's decoding stops after the rows asked for, which are the full decode's bit for bit; a
    progressive JPEG, a PNG and a truncated file are decoded whole (the truncated one still fails)."""
    path = _image(tmp_path / "a.jpg", (400, 350))
    with Image.open(path) as img:
        full = np.asarray(decode.decode(img))
    for rows in (1, 57, 349):
        with Image.open(path) as img:
            assert decode.stops_early(img)
            part = np.asarray(decode.decode(img, rows=rows))
        assert part.shape == full.shape and np.array_equal(part[:rows], full[:rows])
        assert not part[rows:].any(), "the rows below were not decoded"
    with Image.open(path) as img:  # at a reduced scale too
        small = np.asarray(decode.decode(img, 2))
    with Image.open(path) as img:
        img.draft("RGB", (200, 175))
        assert np.array_equal(np.asarray(decode.decode(img, rows=80))[:80], small[:80])
    Image.open(path).save(tmp_path / "p.jpg", progressive=True, quality=90)
    Image.open(path).save(tmp_path / "a.png")
    for other in ("p.jpg", "a.png"):
        with Image.open(tmp_path / other) as img:
            assert not decode.stops_early(img)
            assert np.asarray(decode.decode(img, rows=20))[300:].any(), "decoded whole"
    # a header libjpeg refuses (a quantisation table never defined) fails before any row: not taken for the stop
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    for k in range(data[sof + 9]):
        data[sof + 10 + 3 * k + 2] = 3
    (tmp_path / "bad.jpg").write_bytes(bytes(data))
    with Image.open(tmp_path / "bad.jpg") as img, pytest.raises(OSError, match="broken data stream"):
        decode.decode(img, rows=100)
    Image.new("RGB", (400, 350)).save(tmp_path / "black.jpg")  # a black last row of a good file is kept
    with Image.open(tmp_path / "black.jpg") as img:
        assert decode.decode(img, rows=100).size == (400, 350)
    (tmp_path / "t.jpg").write_bytes(path.read_bytes()[:3000])  # cut off above row 300
    with Image.open(tmp_path / "t.jpg") as img, pytest.raises(OSError, match="truncated"):
        decode.decode(img, rows=300)


def test_evaluation_reduces_only_above_the_resize(tmp_path):
    ref_tf = _timm(False)
    ft = FileImageTransform(ref_tf)
    assert ft.eval_factor((400, 350)) == 1 and ft.eval_factor((1200, 1000)) == 2 and ft.eval_factor((2400, 2100)) == 8
    small = _image(tmp_path / "s.jpg", (400, 350))
    ours, ref = _pair(ft, ref_tf, small, 0)
    assert torch.allclose(_normalised(ours), ref, atol=1e-5)
    big = _image(tmp_path / "b.jpg", (1200, 1000))
    ours, ref = _pair(ft, ref_tf, big, 0)
    assert (_normalised(ours) - ref).abs().mean() < 0.03, "DCT scaling, then the same resize: close"


def test_file_transform_leaves_other_transforms_alone():
    tf = timm.data.create_transform(input_size=224, is_training=False, normalize=False)
    assert file_transform(tf) is tf and file_transform(None) is None
    assert isinstance(file_transform(_timm(False)), FileImageTransform)


def test_loader_hands_out_uint8_batches(tmp_path):
    files = [str(_image(tmp_path / f"{i}.jpg", (300, 260))) for i in range(3)] + [
        str(_image(tmp_path / "p.png", (300, 260), "PNG"))
    ]
    split = Split("test", torch.tensor([0, 1, 0, 1]), files=files)
    x, y = next(iter(make_loader(split, 4, transform=FileImageTransform(_timm(False)), num_workers=0)))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 224, 224) and y.tolist() == [0, 1, 0, 1]


def test_workers_at_most_the_cores(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    split = Split("test", torch.tensor([0]), files=[str(_image(tmp_path / "a.jpg", (64, 64)))])
    loader = make_loader(split, 1, transform=FileImageTransform(_timm(False)), num_workers=10_000)
    assert loader.num_workers == cores_per_process() >= 1


# ------------------------------------------------------------------------------------------ the device path
def _device(tf, path, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The device path's output of one file (workers: decode and crop; device: resize, flip, jitter), uint8."""
    random.seed(seed)
    torch.manual_seed(seed)
    with Image.open(path) as img:
        crop, params = tf(img)
    return decode.DeviceCrops.of([crop], params[None]).materialize()[0], params


@pytest.mark.parametrize("train", [True, False])
def test_the_device_path_draws_as_timm_and_resizes_alike(tmp_path, train):
    """The same random draws give the same crop box, flip and jitter as timm's transform; the device's resize and
    jitter of the crop differ from PIL's by rounding (a few grey levels on average at most)."""
    path = _image(tmp_path / "a.jpg", (500, 375))
    tf_device = FileImageTransform(_timm(train), on_device=True)
    assert tf_device.supports_device and tf_device.on_device
    for seed in range(6):
        ours, params = _device(tf_device, path, seed)
        random.seed(seed)
        torch.manual_seed(seed)
        worker = FileImageTransform(_timm(train))
        with Image.open(path) as img:
            worker_out = worker(img)
        assert ours.shape == worker_out.shape == (3, 224, 224) and ours.dtype == torch.uint8
        diff = (ours.float() - worker_out.float()).abs()
        assert diff.mean() < 3.0, (seed, diff.mean())  # the same box, flip and jitter: only the resampling differs
    # the jitter's draws: torchvision's get_params after the flip's draw, in that order
    random.seed(0)
    torch.manual_seed(0)
    _, params = _device(tf_device, path, 0)
    if train:
        random.seed(0)
        torch.manual_seed(0)
        crop = _timm(True).transforms[0]
        with Image.open(path) as img:
            crop.get_params(img, crop.scale, crop.ratio)
        flip = float(torch.rand(1) < 0.5)
        jitter = _timm(True).transforms[2]
        fn_idx, b, c, s, _ = jitter.get_params(jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
        assert params[3].item() == flip
        assert torch.allclose(params[4:7], torch.tensor([b, c, s]))
        assert params[7:11].long().tolist() == fn_idx.tolist() and params[11] == 0  # a training crop


def test_the_device_path_loader_hands_out_crops_the_preprocess_finishes(tmp_path):
    files = [str(_image(tmp_path / f"{i}.jpg", (300 + 20 * i, 260))) for i in range(5)]
    split = Split(name="train", labels=torch.tensor([0, 1, 0, 1, 0]), files=files)
    tf = file_transform(_timm(True), on_device=True)
    assert isinstance(tf, FileImageTransform) and tf.on_device
    x, y = next(iter(make_loader(split, 4, transform=tf, num_workers=0)))
    assert isinstance(x, decode.DeviceCrops) and len(x) == 4 and y.tolist() == [0, 1, 0, 1]
    assert len({tuple(c.shape) for c in x.crops()}) > 1  # crops of different sizes, resized on the device
    out = BatchPreprocess(MEAN, STD, crop_padding=0, flip=False)(x.to("cpu"), train=True)
    assert out.shape == (4, 3, 224, 224) and out.dtype == torch.float32
    # a transform the device path does not cover (hue jitter) stays on the workers
    hue = timm.data.create_transform(input_size=224, is_training=True, color_jitter=(0.4, 0.4, 0.4, 0.1))
    assert not getattr(file_transform(hue, on_device=True), "on_device", False)
