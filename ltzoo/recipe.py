"""What every recipe shares: its command line (YAML defaults, command line wins), the run folder's
bookkeeping (checkpoints to resume from, the JSONL log, results), the optimiser and schedule, and the
summary table it prints at the end.
"""
from __future__ import annotations

import argparse
import difflib
import json
import logging
import math
import os
import resource
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from ltzoo.metrics import SUMMARY_KEYS

_logger = logging.getLogger(__name__)


def base_parser(description: str) -> argparse.ArgumentParser:
    """The flags users reach for first, named alike in every recipe."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-c", "--config", help="YAML file of defaults (keys are flag names with _); the command line wins")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="fmnist_lt", help="dataset name (see `ltzoo data --help`) or hf:<name>")
    g.add_argument("--data-dir", default=None, help="where the dataset's files are")
    g.add_argument("--imbalance", type=float, default=None,
                   help="imbalance ratio rho (largest / smallest class); unset: 100 for fmnist_lt and cifar*_lt, "
                        "the data as it is for the others")
    g.add_argument("--profile", default="exp", choices=("exp", "step"), help="long-tail profile")
    g.add_argument("--val-per-class", type=int, default=None,
                   help="balanced validation images per class to draw when the dataset has no val split; unset: "
                        "100 for fmnist_lt and cifar10_lt, 20 for the others, 0 (none) for the list datasets")
    g.add_argument("--train-list", default=None)
    g.add_argument("--val-list", default=None)
    g.add_argument("--test-list", default=None)
    g.add_argument("--workers", type=int, default=4, help="loader workers for file-backed datasets")
    g = p.add_argument_group("model and training")
    g.add_argument("--model", default="resnet32_cifar", help="any timm architecture name")
    g.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=False, help="start --model from timm's pretrained weights")
    g.add_argument("--init", default=None, help="start from this run folder or hub id")
    g.add_argument("--new-head", action="store_true", help="replace --init's classifier (other classes)")
    g.add_argument("--epochs", type=int, default=30)
    g.add_argument("--batch-size", type=int, default=128, help="images per step, per process")
    g.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    g.add_argument("--weight-decay", type=float, default=5e-4)
    g.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
    g.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up, then cosine decay to 0")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--mixed-precision", default=None, choices=("no", "fp16", "bf16"),
                   help="overrides accelerate's config")
    g.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads per process; unset: the machine's cores shared among its processes "
                        "(accelerate launch alone would pin one)")
    g = p.add_argument_group("run folder")
    g.add_argument("--output", default=None, help="the run folder; unset: runs/<recipe>-<dataset>-<model>-s<seed>")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from the run folder's last checkpoint if it has one")
    g.add_argument("--save-every", type=int, default=1, help="checkpoint every N epochs")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run_cli(main, script: str) -> None:
    """Run a recipe's ``main`` as a script: bad input ends with one clear line and exit code 2, no traceback."""
    import sys

    try:
        main()
    except (ValueError, FileNotFoundError) as exc:
        sys.stderr.write(f"{Path(script).name}: error: {exc}\n")
        sys.exit(2)


def setup_logging() -> None:
    """INFO-level logging for a recipe's run (accelerate's logger prints on the main process only)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO)


def configure_threads(accelerator, threads: int | None = None) -> int:
    """Give a CPU process its share of the cores (accelerate launch sets OMP_NUM_THREADS=1)."""
    if accelerator.device.type != "cpu":
        return torch.get_num_threads()
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
    n = threads or max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) // local)
    torch.set_num_threads(n)
    return n


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse with ``--config`` YAML values as defaults; unknown keys in the YAML are an error."""
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        try:
            with open(pre.config) as f:
                cfg = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as exc:
            parser.error(f"cannot read the config file {pre.config}: {exc}")
        if not isinstance(cfg, dict):
            parser.error(f"{pre.config}: a config is a mapping of flag names to values (like `epochs: 15`), "
                         f"not a {type(cfg).__name__}")
        known = {a.dest for a in parser._actions}
        cfg = {str(k).replace("-", "_"): v for k, v in cfg.items()}
        unknown = sorted(set(cfg) - known)
        if unknown:
            hints = [f"{k} -> {m[0]}" for k in unknown if (m := difflib.get_close_matches(k, known, n=1))]
            parser.error(f"{pre.config}: unknown keys {unknown}" + (f" (did you mean {', '.join(hints)}?)" if hints else ""))
        for a in parser._actions:  # argparse checks choices on the command line only, not on defaults
            if a.choices is not None and a.dest in cfg and cfg[a.dest] not in a.choices:
                parser.error(f"{pre.config}: {a.dest}: invalid choice {cfg[a.dest]!r} (choose from "
                             f"{', '.join(map(str, a.choices))})")
        parser.set_defaults(**cfg)
    return parser.parse_args(argv)


def default_output(recipe: str, args: argparse.Namespace) -> Path:
    """runs/<recipe>-<dataset>-<model>-s<seed> unless --output is given."""
    if args.output:
        return Path(args.output)
    dataset = args.dataset.replace("hf:", "hf-").replace("/", "-")
    return Path("runs") / f"{recipe}-{dataset}-{args.model}-s{args.seed}"


def dataset_kwargs(args: argparse.Namespace) -> dict:
    """The `load_dataset` keyword arguments of the data flags."""
    return dict(data_dir=args.data_dir, imbalance=args.imbalance, profile=args.profile, seed=args.seed,
                val_per_class=args.val_per_class, train_list=args.train_list, val_list=args.val_list,
                test_list=args.test_list)


# ----------------------------------------------------------------------------- optimiser, schedule
def create_optimizer(model: torch.nn.Module, args: argparse.Namespace, params=None) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum 0.9, or AdamW; no weight decay on biases and norm weights."""
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if args.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=args.lr)
    return torch.optim.SGD(groups, lr=args.lr, momentum=0.9, nesterov=True)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak rate over ``warmup_steps``, then cosine decay to zero at ``total_steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ------------------------------------------------------------------------------ checkpoints, logs
class RunFolder:
    """Checkpoints (accelerate's save_state), the JSONL log and the resume logic of one run folder."""

    def __init__(self, path: str | Path, accelerator):
        self.path = Path(path)
        self.accelerator = accelerator
        self.ckpt_dir = self.path / "checkpoints"
        self.log_path = self.path / "log.jsonl"
        if accelerator.is_main_process:
            self.path.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()

    def last_checkpoint(self) -> Path | None:
        """The newest complete checkpoint folder (``epoch_N`` with its state file), if any."""
        done = [p for p in self.ckpt_dir.glob("epoch_*") if (p / "train_state.json").is_file()]
        return max(done, key=lambda p: int(p.name.split("_")[1]), default=None)

    def save(self, epoch: int, state: dict, keep: int = 1) -> None:
        """Checkpoint after ``epoch``: written to a temporary folder, then renamed into place."""
        acc = self.accelerator
        final, tmp = self.ckpt_dir / f"epoch_{epoch}", self.ckpt_dir / f".tmp_epoch_{epoch}"
        if acc.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)  # before any process writes its share (its RNG state) into it
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / "train_state.json").write_text(json.dumps({**state, "epoch": epoch}, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            older = sorted(self.ckpt_dir.glob("epoch_*"), key=lambda p: int(p.name.split("_")[1]))[:-keep]
            for p in older:
                shutil.rmtree(p, ignore_errors=True)
        acc.wait_for_everyone()

    def reset(self) -> None:
        """Start afresh (``--no-resume``): drop the folder's checkpoints and log."""
        if self.accelerator.is_main_process:
            shutil.rmtree(self.ckpt_dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)
        self.accelerator.wait_for_everyone()

    def resume(self) -> dict | None:
        """Load the last checkpoint into the prepared objects; returns its train state (None: fresh start).

        The log keeps only the records of the epochs the checkpoint holds (none on a fresh start).
        """
        ckpt = self.last_checkpoint()
        if ckpt is None:
            self._truncate_log(-1)
            return None
        self.accelerator.load_state(str(ckpt))
        state = json.loads((ckpt / "train_state.json").read_text())
        self.accelerator.print(f"resumed from {ckpt} (epoch {state['epoch']} done)")
        self._truncate_log(state["epoch"])
        return state

    def _truncate_log(self, last_epoch: int) -> None:
        if not (self.accelerator.is_main_process and self.log_path.is_file()):
            return
        keep = [ln for ln in self.log_path.read_text().splitlines() if ln and json.loads(ln).get("epoch", -1) <= last_epoch]
        self.log_path.write_text("".join(ln + "\n" for ln in keep))

    def log(self, record: dict) -> None:
        """Append one record to log.jsonl (main process)."""
        if self.accelerator.is_main_process:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")


def peak_memory_mb() -> float:
    """Peak memory of this process: GPU memory allocated where there is a GPU, else peak RSS."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def selection_score(metrics: dict, key: str = "hm") -> tuple:
    """The model-selection key on the validation split: the chosen metric, ties broken by mean class accuracy."""
    return (metrics[key], metrics["mean_class_acc"], metrics["acc"])


# --------------------------------------------------------------------------------------- the table
def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def summary_table(rows: dict[str, dict[str, dict]], splits: Sequence[str] = ("val", "test")) -> str:
    """A Markdown table: one row per (model, split), the long-tail metrics as percentages."""
    head = "| model | split | " + " | ".join(f"{k} %" for k in SUMMARY_KEYS) + " |"
    lines = [head, "|" + "---|" * (len(SUMMARY_KEYS) + 2)]
    for name, by_split in rows.items():
        for split in splits:
            m = by_split.get(split)
            if m:
                lines.append(f"| {name} | {split} | " + " | ".join(_pct(m.get(k)) for k in SUMMARY_KEYS) + " |")
    return "\n".join(lines)


def brief(metrics: dict) -> dict:
    """The headline numbers of a metrics dict (no per-class lists), for logs."""
    return {k: metrics.get(k) for k in SUMMARY_KEYS}


def hardware() -> str:
    """What the run ran on, for results files."""
    import platform

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def finish_run(accelerator, model, ds, run_dir: Path, loaders: dict, prep, results: dict, title: str) -> dict:
    """Evaluate the chosen model on each split, then write the model, results.json and the recall plot.

    Args:
        loaders: split name -> prepared loader (validation first; the test split is evaluated once, here).
        results: what the recipe adds to results.json (recipe, method, selected epoch, times, config...).
        title: a short name of the model for the plot.
    """
    from ltzoo.engine import evaluate
    from ltzoo.metrics import plot_per_class_recall
    from ltzoo.runs import RESULTS, save_model, write_json

    metrics = {split: evaluate(accelerator, model, dl, prep, ds.train_counts, ds.shot_thresholds, split,
                               progress=False) for split, dl in loaders.items() if dl is not None}
    results = {**results, "dataset": ds.summary(), "train_counts": ds.train_counts, "class_names": ds.class_names,
               "metrics": metrics, "hardware": hardware(), "peak_memory_mb": peak_memory_mb(),
               "num_processes": accelerator.num_processes}
    if accelerator.is_main_process:
        save_model(accelerator.unwrap_model(model), run_dir, ds)
        write_json(run_dir / RESULTS, results)
        split = "test" if "test" in metrics else next(iter(metrics))
        plot_per_class_recall(metrics[split], ds.train_counts, run_dir / "per_class_recall.png",
                              title=f"{title}: per-class recall on the {split} split", class_names=ds.class_names)
    accelerator.wait_for_everyone()
    return results
