"""JPEG loader speed per worker: ltzoo's training and evaluation loaders against timm's and the decoder's floor.

On ImageNet-sized synthetic JPEGs (benchmarks/rehearsal.py's generator: 400x350 px, about 110 KB), each variant is
a DataLoader with ONE worker, timed over the same images after its first batch (worker start-up not counted),
in interleaved rounds (A, B, C, ..., A, B, C, ...); the median round is reported as images/s per worker:

- ltzoo train / eval: `make_loader` with the transform the recipes build for imagenet_lt + resnet50
  (`ltzoo.runfolder.model_io.image_transform`: timm's RandomResizedCrop 224 + flip + colour jitter, or Resize 256 /
  CenterCrop 224, bicubic, through `ltzoo.data.decode.FileImageTransform`: uint8 out);
- ltzoo before (float): `make_loader` with timm's plain transform (what ltzoo did before: float normalised batches);
- timm train / eval: ``timm.data.create_loader`` over ``timm.data.ImageDataset`` (its own reader and loader) with
  the same transforms, no prefetcher (CPU);
- ltzoo train / eval, device path (what a run on a GPU uses): the workers decode and crop
  (`ltzoo.data.decode.DeviceCrops`), the device resizes, flips, jitters and normalises; the device's share is
  timed apart, on this CPU (`device_work_ms`);
- decode floor: a loader whose items are ``Image.open(path).convert('RGB')`` alone (nothing else done), and the
  same decoded at half size by ``draft('RGB', (w//2, h//2))`` (what DCT scaling saves where a crop allows it), and
  decoded down to the last row of a timm RandomResizedCrop box drawn for it (what ltzoo's training loaders decode:
  `ltzoo.data.decode.decode`'s ``rows``), so the share of the speed that comes from decoding less is shown apart.

    python benchmarks/loader_speed.py --tree /tmp/imagenet_tree   # or without --tree: a tree is generated
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

ROOT = Path(__file__).resolve().parent.parent

from rehearsal import dataset_shape, reduce_shape, write_tree  # noqa: E402

from ltzoo.data.datasets import IMAGENET_MEAN, IMAGENET_STD, load_dataset  # noqa: E402
from ltzoo.data.decode import decode  # noqa: E402
from ltzoo.data.loader import make_loader  # noqa: E402
from ltzoo.runfolder.model_io import image_transform  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


class DecodeOnly(Dataset):
    """Items are the decoding of the file alone (full size, or reduced by ``draft``, or down to the bottom of a
    RandomResizedCrop box drawn as timm draws it: ``crop``); a 1-element tensor out."""

    def __init__(self, files, draft: int = 1, crop=None):
        self.files, self.draft, self.crop = files, draft, crop

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.files[i]) as img:
            if self.crop is not None:
                top, _, height, _ = self.crop.get_params(img, self.crop.scale, self.crop.ratio)
                decode(img, rows=top + height)
                return torch.zeros(1), 0
            if self.draft > 1:
                img.draft("RGB", (img.size[0] // self.draft, img.size[1] // self.draft))
            img.convert("RGB")
        return torch.zeros(1), 0


def variants(ds, batch: int, n: int, seed: int) -> dict:
    """name -> a function making a fresh loader over the same ``n`` training images."""
    files = list(ds.train.files[:n])
    split = ds.train.subset(torch.arange(len(files)))
    model = timm.create_model("resnet50", pretrained=False, num_classes=ds.num_classes)
    train_tf, eval_tf = (image_transform(ds, model, train=t, on_device=False) for t in (True, False))
    train_dev, eval_dev = (image_transform(ds, model, train=t, on_device=True) for t in (True, False))
    cfg = timm.data.resolve_data_config({}, model=model)

    def sampler():
        return RandomSampler(split, generator=torch.Generator().manual_seed(seed))

    def timm_loader(train: bool):
        root = Path(files[0]).parent.parent
        keep = set(files)
        data = timm.data.ImageDataset(str(root))
        data.reader.samples = [s for s in data.reader.samples if s[0] in keep]
        return timm.data.create_loader(
            data,
            input_size=cfg["input_size"],
            batch_size=batch,
            is_training=train,
            use_prefetcher=False,
            interpolation=cfg["interpolation"],
            crop_pct=cfg["crop_pct"],
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            num_workers=1,
            persistent_workers=False,
        )

    def decode_only(draft: int, crop=None):
        return DataLoader(DecodeOnly(files, draft, crop), batch_size=batch, num_workers=1)

    return {
        "ltzoo train": lambda: make_loader(split, batch, sampler(), train_tf, num_workers=1),
        "timm train": lambda: timm_loader(True),
        "ltzoo before train (float)": lambda: make_loader(split, batch, sampler(), train_tf_plain(ds, model), 1),
        "ltzoo eval": lambda: make_loader(split, batch, None, eval_tf, num_workers=1),
        "ltzoo train, device path": lambda: make_loader(split, batch, sampler(), train_dev, num_workers=1),
        "ltzoo eval, device path": lambda: make_loader(split, batch, None, eval_dev, num_workers=1),
        "timm eval": lambda: timm_loader(False),
        "decode floor (PIL open + convert RGB)": lambda: decode_only(1),
        "decode at half size (draft)": lambda: decode_only(2),
        "decode down to a training crop's last row": lambda: decode_only(1, train_tf.crop),
    }


def device_work_ms(ds, n: int, batch: int) -> dict:
    """ms per image of `DeviceCrops.materialize` + normalisation on this CPU (one thread): the work the device path
    moves from the workers to the device."""
    from ltzoo.data.loader import BatchPreprocess

    files = list(ds.train.files[:n])
    split = ds.train.subset(torch.arange(len(files)))
    model = timm.create_model("resnet50", pretrained=False, num_classes=ds.num_classes)
    prep = BatchPreprocess(IMAGENET_MEAN, IMAGENET_STD, crop_padding=0, flip=False)
    out = {}
    for name, train in (("train", True), ("eval", False)):
        tf = image_transform(ds, model, train=train, on_device=True)
        batches = list(make_loader(split, batch, None, tf, num_workers=0))
        start = time.perf_counter()
        for x, _ in batches:
            prep(x, train=train)
        out[name] = 1000 * (time.perf_counter() - start) / len(files)
    return out


def train_tf_plain(ds, model):
    """timm's plain training transform of the recipes' data config: float out (ltzoo before this change)."""
    from ltzoo.runfolder.model_io import data_config

    return timm.data.create_transform(**data_config(ds, model), is_training=True)


def timed(make) -> tuple[float, int]:
    """images/s of one loader after its first batch (worker start-up not counted)."""
    it = iter(make())
    next(it)
    n, start = 0, time.perf_counter()
    for x, *_ in it:
        n += len(x)
    return n / (time.perf_counter() - start), n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", help="an ImageNet-LT-shaped tree of ImageNet-sized JPEGs (default: generate one)")
    p.add_argument("--images", type=int, default=544, help="images per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    tree = Path(args.tree) if args.tree else Path(tempfile.mkdtemp(prefix="loader_speed_")) / "tree"
    gen = None
    if not args.tree:
        shape = reduce_shape(dataset_shape("imagenet_lt"), classes=100, max_per_class=20)
        gen = write_tree(shape, tree, "imagenet_lt", size=(400, 350), quality=94, variants=4)
        print(f"tree: {gen}")
    ds = load_dataset("imagenet_lt", data_dir=str(tree), check_files=False)
    makers = variants(ds, args.batch, args.images, seed=0)
    rates: dict[str, list[float]] = {k: [] for k in makers}
    for r in range(args.rounds):
        for name, make in makers.items():
            rate, n = timed(make)
            rates[name].append(rate)
            print(f"round {r}: {name}: {rate:.0f} images/s ({n} images)", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    floor = med["decode floor (PIL open + convert RGB)"]
    device_ms = device_work_ms(ds, args.images, args.batch)
    targets = {
        "ltzoo train >= timm train": med["ltzoo train"] >= med["timm train"],
        "ltzoo eval >= timm eval": med["ltzoo eval"] >= med["timm eval"],
        "ltzoo train within 15% of the decode floor": med["ltzoo train"] >= 0.85 * floor,
        "ltzoo eval within 15% of the decode floor": med["ltzoo eval"] >= 0.85 * floor,
        "ltzoo train (device path) within 15% of the decode floor": med["ltzoo train, device path"] >= 0.85 * floor,
        "ltzoo eval (device path) within 15% of the decode floor": med["ltzoo eval, device path"] >= 0.85 * floor,
    }
    res = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other work)",
        "torch": torch.__version__,
        "timm": timm.__version__,
        "pillow": __import__("PIL").__version__,
        "workers": 1,
        "batch_size": args.batch,
        "images_per_measurement": args.images,
        "rounds": args.rounds,
        "tree": gen or str(tree),
        "images_per_second_per_worker": med,
        "rounds_images_per_second": rates,
        "ratios": {
            "ltzoo_train_vs_timm": med["ltzoo train"] / med["timm train"],
            "ltzoo_eval_vs_timm": med["ltzoo eval"] / med["timm eval"],
            "ltzoo_train_vs_floor": med["ltzoo train"] / floor,
            "ltzoo_eval_vs_floor": med["ltzoo eval"] / floor,
            "half_size_decode_vs_floor": med["decode at half size (draft)"] / floor,
            "crop_rows_decode_vs_floor": med["decode down to a training crop's last row"] / floor,
            "ltzoo_train_device_vs_floor": med["ltzoo train, device path"] / floor,
            "ltzoo_eval_device_vs_floor": med["ltzoo eval, device path"] / floor,
            "ltzoo_train_device_vs_timm": med["ltzoo train, device path"] / med["timm train"],
        },
        "device_work_ms_per_image_on_this_cpu": device_ms,
        "targets": targets,
        "rerun": "python benchmarks/loader_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "loader_speed.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "loader_speed.md").write_text(markdown(res))
    print(markdown(res))
    return 0


def markdown(res: dict) -> str:
    med, ra = res["images_per_second_per_worker"], res["ratios"]
    t = res["tree"]
    what = (
        f"{t['image_size'][0]}x{t['image_size'][1]} px synthetic JPEGs of {t['mean_file_kib']} KiB "
        "(benchmarks/rehearsal.py)"
        if isinstance(t, dict)
        else f"the tree {t}"
    )
    lines = [
        "# JPEG loader speed per worker",
        "",
        f"{res['machine']}; torch {res['torch']}, timm {res['timm']}, Pillow {res['pillow']}. One loader worker "
        f"per variant, batch {res['batch_size']}, {res['images_per_measurement']} images of {what} per "
        f"measurement after the first batch; {res['rounds']} interleaved rounds, the median shown. ResNet-50's data "
        "config (224 px, bicubic, crop_pct 0.875).",
        "",
        "| loader | images/s per worker | vs decode floor |",
        "|---|---|---|",
    ]
    floor = med["decode floor (PIL open + convert RGB)"]
    lines += [f"| {k} | {v:.0f} | {v / floor:.2f} |" for k, v in med.items()]
    lines += [
        "",
        f"ltzoo train {ra['ltzoo_train_vs_timm']:.2f}x timm's, eval {ra['ltzoo_eval_vs_timm']:.2f}x; ltzoo train "
        f"{ra['ltzoo_train_vs_floor']:.2f} of the decode floor, eval {ra['ltzoo_eval_vs_floor']:.2f}; a half-size "
        f"decode runs {ra['half_size_decode_vs_floor']:.2f}x the full one, a decode down to a training crop's last "
        f"row {ra['crop_rows_decode_vs_floor']:.2f}x (what the training loaders decode: of their speed over the "
        "floor's, that share comes from decoding less, not from doing the rest faster).",
        "",
        "The device path (what a GPU run uses: `ltzoo.data.decode.DeviceCrops`): the workers decode and crop, "
        "the device resizes, flips, jitters and normalises. Its workers run at "
        f"{ra['ltzoo_train_device_vs_floor']:.2f} of the decode floor for training "
        f"({ra['ltzoo_train_device_vs_timm']:.2f}x timm's loader) and "
        f"{ra['ltzoo_eval_device_vs_floor']:.2f} for evaluation. The work it moves to the device costs "
        f"{res['device_work_ms_per_image_on_this_cpu']['train']:.2f} ms per image for training and "
        f"{res['device_work_ms_per_image_on_this_cpu']['eval']:.2f} ms for evaluation on this CPU, one thread (on a "
        "GPU, batched kernels; not measured here: no GPU was lent).",
        "",
        "Targets: " + "; ".join(f"{k}: {'met' if v else 'missed'}" for k, v in res["targets"].items()) + ".",
        "",
        f"Re-run: `{res['rerun']}`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
