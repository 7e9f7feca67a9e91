"""The method tables on Fashion-MNIST-LT: every method of ltzoo on one backbone, seeds, one table per setting.

    python benchmarks/method_table.py                                   # rho=100, own order: run what is missing,
                                                                        # then the table
    python benchmarks/method_table.py --setting rho100_hard --runs ce bsce gml_on_ce btm_on_ce
    python benchmarks/method_table.py --setting ctx_rho100 --groups csa --jobs 8 --data-dir DIR
    python benchmarks/method_table.py --only-table --setting rho10      # rebuild a table from finished runs

Settings (`SETTINGS`): rho100 (Fashion-MNIST-LT, rho = 100, the dataset's own class order), rho100_hard
(the same with the hard-tail class order of benchmarks/results/hard_tail_order.md), rho10 (rho = 10) and
ctx_rho100 (fmnist_ctx_lt: the same images with irrelevant background contexts, CSA's benchmark).

Each run is a real recipe under `accelerate launch` (stage 1 with ltzoo.recipes.pretrain, classifier
retraining with ltzoo.recipes.gml, BTM with ltzoo.recipes.btm, CSA with ltzoo.recipes.csa), written to
runs/<grid>/<setting>/s<seed>/<name> (`--grid`, default bench), at each recipe's default precision (bf16 where
the device computes it
natively) unless the run says otherwise. Finished runs (results.json present) are skipped, so the script
resumes where it stopped; `--jobs N` runs N recipes at once (a run starts when the run it starts from has
finished), and several runners can share the grid (each claims a run with a .claim file). `--deadline-at`
stops starting runs after a given time. Rows come from the runs' results.json: the test split, evaluated
once on the model chosen on the validation split; a row run on fewer seeds than asked says so. Output:
benchmarks/results/method_table_<setting>.{csv,md}, hm_vs_acc_<setting>.png and per_class_recall_<setting>.png
(in benchmarks/results/<grid>/ for `--grid` other than bench), copied into README.md between its
<!-- method-table:<setting> --> (or <!-- method-table:<grid>:<setting> -->) markers. The `gap` column
measures each row against the balanced-set ceiling: the setting's own `ceiling` run, else, for a
Fashion-MNIST-LT setting, that of runs/<grid>/rho100 (`--ceiling-grid` names another grid). The H200 grid's
results.json files are kept in benchmarks/results/h200/runs_results.tgz: `tar xzf` it into runs/ to
rebuild its tables with `--only-table`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
STAGE1 = ["--model", "resnet20_cifar", "--epochs", "15", "--batch-size", "128", "--lr", "0.1"]  # pretrain, csa runs
STAGE1_RECIPES = ("pretrain", "csa")
LONG = ["--epochs", "45"]  # the longer stage-1 schedule of the "strong" group (3x the default)
PRECISION = {"no": "fp32", "bf16": "bf16", "fp16": "fp16"}  # results.json's speed.mixed_precision -> the table's word
BALANCED_REF_PER_CLASS = 1464  # ceil(14,639 / 10): fmnist_lt rho=100 (n_max 5900, exp profile) keeps 14,639 images

#: setting -> (dataset, imbalance, class order or None, what the table is about)
SETTINGS = {
    "rho100": ("fmnist_lt", 100.0, None, "Fashion-MNIST-LT, rho=100, the dataset's own class order"),
    "rho100_hard": (
        "fmnist_lt",
        100.0,
        "hard_tail",
        "Fashion-MNIST-LT, rho=100, hard-tail class order "
        "(the classes a balanced model recalls worst on validation get the fewest images)",
    ),
    "rho10": ("fmnist_lt", 10.0, None, "Fashion-MNIST-LT, rho=10, the dataset's own class order"),
    "ctx_rho100": (
        "fmnist_ctx_lt",
        100.0,
        None,
        "Fashion-MNIST-LT with irrelevant background contexts "
        "(fmnist_ctx_lt: fixed per tail class in training, random in validation and test), rho=100",
    ),
}

# name -> (recipe, args, stage-1 run it starts from or None, group)
RUNS = {
    "ce": ("pretrain", ["--loss", "ce"], None, "core"),
    "gml_on_ce": ("gml", [], "ce", "core"),
    "btm_on_ce": ("btm", ["--classifier", "gml"], "ce", "core"),
    "ceiling": ("pretrain", ["--loss", "ce", "--imbalance", "1"], None, "ceiling"),
    "bsce": ("pretrain", ["--loss", "bsce"], None, "baselines"),
    "btm_on_bsce": ("btm", ["--classifier", "gml"], "bsce", "baselines"),
    "cb_resample": ("pretrain", ["--loss", "ce", "--sampler", "balanced"], None, "baselines"),
    "cb_reweight": ("pretrain", ["--loss", "cb"], None, "baselines"),
    "ldam_drw": ("pretrain", ["--loss", "ldam_drw"], None, "baselines"),
    "csa": ("csa", ["--loss", "ce"], None, "csa"),
    "btm_on_csa": ("btm", ["--classifier", "gml"], "csa", "csa"),
    # today's fp32 training loop against the default (bf16 where native): the same pipeline, 3 seeds each
    "ce_fp32": ("pretrain", ["--loss", "ce", "--mixed-precision", "no", "--no-channels-last"], None, "fp32"),
    "btm_on_ce_fp32": (
        "btm",
        ["--classifier", "gml", "--mixed-precision", "no", "--no-channels-last"],
        "ce_fp32",
        "fp32",
    ),
    # a stronger stage 1 (chosen on validation HM): a 3x longer schedule, with and without mixup
    "bsce_long": ("pretrain", ["--loss", "bsce", *LONG], None, "strong"),
    "bsce_long_mixup": ("pretrain", ["--loss", "bsce", *LONG, "--mixup", "0.2"], None, "strong"),
    "btm_on_bsce_long": ("btm", ["--classifier", "gml"], "bsce_long", "strong"),
    "btm_on_bsce_long_mixup": ("btm", ["--classifier", "gml"], "bsce_long_mixup", "strong"),
    # ... and with weight balancing's stage-1 weight decay (2e-3, the pick of the CE runs on validation)
    "bsce_long_wd2e3": ("pretrain", ["--loss", "bsce", *LONG, "--weight-decay", "2e-3"], None, "strong"),
    "btm_on_bsce_long_wd2e3": ("btm", ["--classifier", "gml"], "bsce_long_wd2e3", "strong"),
    # weight balancing (Alshammari et al., CVPR 2022), stage 1: CE with a larger weight decay (the default is 5e-4)
    "ce_wd2e3": ("pretrain", ["--loss", "ce", "--weight-decay", "2e-3"], None, "wb"),
    "ce_wd5e3": ("pretrain", ["--loss", "ce", "--weight-decay", "5e-3"], None, "wb"),
    # ... and its stage 2, the wb classifier (beside every other head of the gml recipe); heads_on_ce is
    # gml_on_ce again, by the code that has the wb head (gml_on_ce's runs predate it)
    "heads_on_ce": ("gml", [], "ce", "wb"),
    "heads_on_ce_wd2e3": ("gml", [], "ce_wd2e3", "wb"),
    "heads_on_ce_wd5e3": ("gml", [], "ce_wd5e3", "wb"),
    "btm_on_ce_wd2e3": ("btm", ["--classifier", "gml"], "ce_wd2e3", "wb"),  # 2e-3: the best on validation
    # MiSLAS (Zhong et al., CVPR 2021) stage 1: CE with mixup at the paper's alpha (1.0, every epoch), the
    # table's 15-epoch schedule; its classifier stages (las, ncm, gml, ...) are heads of the gml recipe
    "mislas": ("pretrain", ["--loss", "ce", "--mixup", "1.0"], None, "mislas"),
    "heads_on_mislas": ("gml", [], "mislas", "mislas"),  # every head (las without shifted BN, ncm, gml, ...)
    "las_on_mislas": ("gml", ["--shift-bn"], "mislas", "mislas"),  # MiSLAS's stage 2: las on shifted BN
    "btm_on_mislas": ("btm", ["--classifier", "gml"], "mislas", "mislas"),
    "btm_las_on_mislas": ("btm", ["--classifier", "las"], "mislas", "mislas"),  # shifted BN: las's default
    # the balanced-set ceiling on the longer schedule of the "strong" rows (the gap column keeps measuring
    # every row against the 15-epoch `ceiling`, CE's schedule)
    "ceiling_long": ("pretrain", ["--loss", "ce", "--imbalance", "1", *LONG], None, "strong"),
    # relative accuracy's balanced reference A_v (Zhang et al., survey, section 4.1): CE on a class-balanced
    # subset of the same total size as fmnist_lt rho=100's training set (14,639 images: 1,464 per class)
    "balanced_ref": (
        "pretrain",
        ["--loss", "ce", "--imbalance", "1", "--n-max", str(BALANCED_REF_PER_CLASS)],
        None,
        "relative",
    ),
}

# table row -> (run, key in that run's results "table" or None for its final metrics)
ROWS = {
    "CE": ("ce", None),
    "CB re-sampling": ("cb_resample", None),
    "CB re-weighting": ("cb_reweight", None),
    "Balanced Softmax": ("bsce", None),  # = the logit-adjusted loss at its default tau = 1: one row, one run
    "LDAM-DRW": ("ldam_drw", None),
    "CE + cRT": ("gml_on_ce", "crt"),
    "CE + LWS": ("gml_on_ce", "lws"),
    "CE + tau-norm": ("gml_on_ce", "taunorm"),
    "CE + post-hoc LA": ("gml_on_ce", "la"),
    "CE + GML": ("gml_on_ce", "gml"),
    "CE + GML + ensemble": ("gml_on_ce", None),
    "CE + BTM": ("btm_on_ce", "BTM"),
    "CE + BTM + GML": ("btm_on_ce", None),
    "BSCE + BTM + GML": ("btm_on_bsce", None),
    "CSA (context-shift augmentation)": ("csa", None),
    "CSA + BTM": ("btm_on_csa", "BTM"),
    "CSA + BTM + GML": ("btm_on_csa", None),
    "Balanced Softmax, 45 epochs": ("bsce_long", None),
    "Balanced Softmax + mixup, 45 epochs": ("bsce_long_mixup", None),
    "BSCE 45 ep. + BTM + GML": ("btm_on_bsce_long", None),
    "BSCE + mixup 45 ep. + BTM + GML": ("btm_on_bsce_long_mixup", None),
    "Balanced Softmax, 45 epochs, WD 2e-3": ("bsce_long_wd2e3", None),
    "BSCE 45 ep. WD 2e-3 + BTM + GML": ("btm_on_bsce_long_wd2e3", None),
    "CE, weight decay 2e-3": ("ce_wd2e3", None),
    "CE, weight decay 5e-3": ("ce_wd5e3", None),
    "CE + WB classifier (CB loss, WD, MaxNorm)": ("heads_on_ce", "wb"),
    "Weight balancing: CE (WD 2e-3) + WB classifier": ("heads_on_ce_wd2e3", "wb"),
    "Weight balancing: CE (WD 5e-3) + WB classifier": ("heads_on_ce_wd5e3", "wb"),
    "CE (WD 2e-3) + GML + ensemble": ("heads_on_ce_wd2e3", None),
    "CE (WD 5e-3) + GML + ensemble": ("heads_on_ce_wd5e3", None),
    "CE (WD 2e-3) + cRT": ("heads_on_ce_wd2e3", "crt"),
    "CE (WD 2e-3) + BTM + GML": ("btm_on_ce_wd2e3", None),
    "CE + NCM (cosine)": ("heads_on_ce", "ncm"),
    "CE + NCM (Euclidean)": ("heads_on_ce", "ncm_l2"),
    "CE + LAS, no shifted BN": ("heads_on_ce", "las"),
    "MiSLAS stage 1: CE + mixup (alpha 1)": ("mislas", None),
    "MiSLAS: stage 1 + LAS + shifted BN": ("las_on_mislas", "las"),
    "MiSLAS stage 1 + LAS, no shifted BN": ("heads_on_mislas", "las"),
    "MiSLAS stage 1 + NCM (cosine)": ("heads_on_mislas", "ncm"),
    "MiSLAS stage 1 + cRT": ("heads_on_mislas", "crt"),
    "MiSLAS stage 1 + GML": ("heads_on_mislas", "gml"),
    "MiSLAS stage 1 + GML + ensemble": ("heads_on_mislas", None),
    "MiSLAS stage 1, shifted BN + GML + ensemble": ("las_on_mislas", None),
    "MiSLAS stage 1 + BTM + GML": ("btm_on_mislas", None),
    "MiSLAS stage 1 + BTM + LAS + shifted BN": ("btm_las_on_mislas", None),
    "CE, fp32 training": ("ce_fp32", None),
    "CE + BTM + GML, fp32 training": ("btm_on_ce_fp32", None),
    "Ceiling: CE on the full balanced set": ("ceiling", None),
    "Ceiling: CE on the full balanced set, 45 epochs": ("ceiling_long", None),
    "Reference: CE on a size-matched balanced subset": ("balanced_ref", None),
}
BALANCED_ROW = "Reference: CE on a size-matched balanced subset"  # A_v of the rel acc column
CEILING = "Ceiling: CE on the full balanced set"  # the row the gap column measures against (15 epochs, as CE)
GRID = "bench"  # runs/GRID/<setting>: set by --grid
THREADS = 1  # per run: run one runner per core (see the module docstring)
COLUMNS = ("acc", "hm", "gm", "min_recall", "many", "medium", "few")


# ------------------------------------------------------------------ relative accuracy and one-seed intervals
BALANCED_REF = "balanced_ref"
#: settings whose training set is the size of fmnist_lt rho=100's (14,639 images), which balanced_ref matches
SIZE_MATCHED = ("rho100", "rho100_hard")
#: where the balanced references' results.json are kept in the repository (runs/ is not)
REF_COPIES = RESULTS / "balanced_ref"


def reference_accuracy(grid: str, seeds: list[int]) -> tuple[float | None, int, str]:
    """A_v of relative accuracy: the mean test accuracy of CE on the size-matched balanced subset
    (`balanced_ref`) over the seeds run, from runs/<grid>/rho100, else the copies in benchmarks/results/balanced_ref.

    Returns:
        (A_v or None, the number of seeds, where it was read).
    """
    for base in (ROOT / "runs" / grid / "rho100", REF_COPIES):
        accs = [
            json.loads(p.read_text())["metrics"]["test"]["acc"]
            for s in seeds
            if (p := run_dir(base, s, BALANCED_REF) / "results.json").is_file()
        ]
        if accs:
            return statistics.mean(accs), len(accs), str(base.relative_to(ROOT) if base.is_relative_to(ROOT) else base)
    return None, 0, ""


def relative_accuracy(rows: list[dict], setting: str, grid: str, seeds: list[int]) -> str:
    """Add ``relative_acc`` = A_t / A_u to every row (Zhang et al., survey, section 4.1), A_u = max(A_v, A_b)
    with A_b taken equal to A_v (see `RELATIVE_NOTE`); returns the table's note ('' when there is no A_v)."""
    ref, n, where = reference_accuracy(grid, seeds) if setting in SIZE_MATCHED else (None, 0, "")
    for r in rows:
        r["relative_acc"] = r["acc"] / ref if ref and r["acc"] is not None else None
    if not ref:
        return ""
    return (
        f" `rel acc`: relative accuracy A_t / max(A_v, A_b) (Zhang et al., Deep Long-Tailed Learning: A Survey, "
        f"TPAMI 2023, section 4.1), A_v = {100 * ref:.2f} (CE on a class-balanced subset of Fashion-MNIST of the same "
        f"total size, 1,464 images per class; test accuracy, mean of {n} seeds, {where}). " + RELATIVE_NOTE
    )


RELATIVE_NOTE = (
    "A_b (each method trained on that balanced subset) is taken equal to A_v for every row: on balanced "
    "data Balanced Softmax, logit adjustment and CB re-weighting are CE exactly (a uniform prior, equal "
    "weights) and CB re-sampling nearly so (a uniform sampler); for the rows that do not reduce to CE "
    "(LDAM-DRW, the retrained heads, BTM, GML, CSA, mixup, 45 epochs, a larger weight decay) A_b was not "
    "trained, so their A_u >= A_v and their rel acc is an upper bound."
)


def hm_interval(base: Path, seeds: list[int], row: str) -> str | None:
    """The 95% stratified-bootstrap interval of a row's test HM on one seed: from the run's results.json
    (recipes since ltzoo.training.evaluation write it) or its predictions.safetensors, else from the zoo entry exported
    from that run (benchmarks/export_zoo.py); None where no predictions of the row exist."""
    name, key = ROWS[row]
    if key is not None:  # a head of a run's table: results.json keeps its summary numbers only
        return None
    for seed in seeds:
        found = _interval_of(run_dir(base, seed, name))
        if found:
            return f"{found} (seed {seed})"
    from export_zoo import ENTRIES  # benchmarks/ is on sys.path when the script runs

    for zoo_name, (run, _) in ENTRIES.items():
        entry = ROOT / "zoo" / zoo_name
        parts = Path(run).parts  # {grid}/<setting>/s{seed}/<run> for the method table's entries
        if (
            parts[0] == "{grid}"
            and len(parts) == 4
            and parts[1] == base.name
            and parts[3] == name
            and (entry / "run_config.yaml").is_file()
        ):
            import yaml

            seed = (yaml.safe_load((entry / "run_config.yaml").read_text()) or {}).get("seed")
            found = _interval_of(entry)
            if found and seed in seeds:
                return f"{found} (seed {seed}, zoo/{zoo_name})"
    return None


def _interval_of(folder: Path) -> str | None:
    """``[lo, hi]`` of the test HM of a run folder or zoo entry, in percent, if it has one."""
    res = folder / "results.json"
    if res.is_file():
        boot = (json.loads(res.read_text())["metrics"].get("test") or {}).get("bootstrap")
        if boot:
            lo, hi = boot["intervals"]["hm"]
            return f"[{100 * lo:.2f}, {100 * hi:.2f}]"
    pred = folder / "predictions.safetensors"
    if pred.is_file():
        from ltzoo.metrics import stratified_bootstrap
        from ltzoo.runfolder.predictions import load_predictions

        p = load_predictions(pred)
        z, y = p.split("test")
        lo, hi = stratified_bootstrap(y, z.argmax(-1), len(p.train_counts), resamples=1000)["intervals"]["hm"]
        return f"[{100 * lo:.2f}, {100 * hi:.2f}]"
    return None


def rows_from_csv(path: Path) -> list[dict]:
    """A table's rows as its CSV holds them (numbers as floats), for `--from-csv`."""
    rows = []
    for r in csv.DictReader(path.open()):
        out: dict = {}
        for k, v in r.items():
            if k in ("method", "hardware", "commits", "hm_interval", "precisions"):
                out[k] = v or None if k == "hm_interval" else v
            elif k == "seeds":
                out[k] = int(v)
            elif k == "carried":
                out[k] = v == "True"
            else:
                out[k] = float(v) if v not in ("", None) else None
        rows.append(out)
    return rows


def run_dir(base: Path, seed: int, name: str) -> Path:
    return base / f"s{seed}" / name


def claim(out: Path) -> bool:
    """Claim an unfinished run for this process, so that several runners can share the grid."""
    if (out / "results.json").is_file():
        return False
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".claim"
    if lock.is_file():
        if _running(out):
            return False  # another runner is on it
        lock.unlink(missing_ok=True)  # its runner died: take it over (the recipe resumes)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def _running(out: Path) -> bool:
    """Whether a live runner has claimed the run in ``out``."""
    try:
        pid = int((out / ".claim").read_text() or 0)
        if pid <= 0:
            return False
        os.kill(pid, 0)
        return True
    except (FileNotFoundError, ProcessLookupError, ValueError, PermissionError):
        return False


def recipe_args(
    name: str,
    seed: int,
    base: Path,
    setting: str = "rho100",
    data_dir: str | None = None,
    threads: int = THREADS,
    epochs: int | None = None,
) -> tuple[str, list[str]]:
    """The recipe of run ``name`` and its flags."""
    recipe, extra, parent, _ = RUNS[name]
    dataset, imbalance, order, _ = SETTINGS[setting]
    out = run_dir(base, seed, name)
    args = (
        [
            "--dataset",
            dataset,
            "--imbalance",
            str(imbalance),
            "--seed",
            str(seed),
            "--output",
            str(out),
            "--no-progress",
            "--threads",
            str(threads),
        ]
        + (STAGE1 if recipe in STAGE1_RECIPES else [])
        + extra
    )
    if epochs and recipe in STAGE1_RECIPES:  # a quick grid: every stage 1 this long
        args += ["--epochs", str(epochs)]
    args += ["--class-order", order] if order else []
    args += ["--data-dir", data_dir] if data_dir else []
    if parent:
        args += ["--init", str(run_dir(base, seed, parent))]
    return recipe, args


def launch(
    name: str,
    seed: int,
    base: Path,
    setting: str,
    log,
    data_dir: str | None = None,
    threads: int = THREADS,
    epochs: int | None = None,
) -> None:
    """Run one recipe of the grid to completion under `accelerate launch`, its output appended to ``log``."""
    recipe, args = recipe_args(name, seed, base, setting, data_dir, threads, epochs)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--dynamo_backend",
        "no",
        "-q",
        "-m",
        f"ltzoo.recipes.{recipe}",
    ] + args
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(f"\n$ {' '.join(cmd)}\n{proc.stdout}")
    log.flush()
    status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {log.name})"
    print(f"  {setting} {name} (seed {seed}) {status} in {time.perf_counter() - start:.0f} s", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} seed {seed} failed")


def run_grid(
    base: Path,
    setting: str,
    seeds: list[int],
    names: list[str],
    jobs: int = 1,
    deadline: float | None = None,
    data_dir: str | None = None,
    threads: int = THREADS,
    epochs: int | None = None,
) -> None:
    """Run the unfinished (name, seed) pairs, ``jobs`` at a time, in the order given (names first, then
    seeds); a run starts once the run it starts from has finished, and is dropped if that one failed."""
    done = lambda n, s: (run_dir(base, s, n) / "results.json").is_file()  # noqa: E731
    todo = [(n, s) for n in names for s in seeds if not done(n, s)]
    # a run whose parent is neither finished, asked for, nor running elsewhere: run the parent first
    for n, s in list(todo):
        parent = RUNS[n][2]
        if parent and not done(parent, s) and (parent, s) not in todo and not _running(run_dir(base, s, parent)):
            print(f"  {setting} {n} (seed {s}) starts from {parent}, which has not run: adding it", flush=True)
            todo.insert(todo.index((n, s)), (parent, s))
    failed: set[tuple[str, int]] = set()
    lock = threading.Lock()
    base.mkdir(parents=True, exist_ok=True)
    log = open(base / "runs.log", "a")

    def next_run() -> tuple[str, int] | None:
        while True:
            with lock:
                todo[:] = [(n, s) for n, s in todo if not done(n, s)]  # another runner of the grid finished them
                if not todo or (deadline and time.time() > deadline):
                    return None
                for i, (n, s) in enumerate(todo):
                    parent = RUNS[n][2]
                    if parent and (parent, s) in failed:
                        failed.add(todo.pop(i))
                        break
                    if (parent is None or (run_dir(base, s, parent) / "results.json").is_file()) and claim(
                        run_dir(base, s, n)
                    ):
                        return todo.pop(i)
            time.sleep(2)  # every remaining run waits for the run it starts from

    def worker() -> None:
        while (item := next_run()) is not None:
            name, seed = item
            try:
                launch(name, seed, base, setting, log, data_dir, threads, epochs)
            except RuntimeError:
                with lock:
                    failed.add(item)
            finally:
                (run_dir(base, seed, name) / ".claim").unlink(missing_ok=True)

    workers = [threading.Thread(target=worker) for _ in range(max(1, jobs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    log.close()


def metrics_of(base: Path, seed: int, row: str) -> dict | None:
    name, key = ROWS[row]
    path = run_dir(base, seed, name) / "results.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    m = res["metrics"]["test"] if key is None else res["table"][key]["test"]
    val = (res["metrics"] if key is None else res["table"][key]).get("val") or {}
    sec = res.get("seconds", {})
    # a BTM stage with its merged model's evaluation (runs before seconds.evaluation counted it in), so the
    # column means one thing whichever commit a run came from
    secs = res.get("train_seconds") or (
        sec.get("btm_total_one_device") or sec.get("btm_total") or sec.get("heads") or 0
    ) + sec.get("evaluation", 0)
    return {
        **{c: m.get(c) for c in COLUMNS},
        "val_hm": val.get("hm"),
        "seconds": secs,
        "peak_memory_mb": res.get("peak_memory_mb"),
        "hardware": res.get("hardware"),
        "commit": source_commit(base, run_dir(base, seed, name)),
        "seed": seed,
        "precision": training_precision(base, seed, name, res),
    }


def training_precision(base: Path, seed: int, name: str, res: dict) -> str | None:
    """The precision a run trained at (results.json's speed), else that of the run it starts from (the gml
    recipe's heads train on the features of a stage 1 and record none of their own)."""
    precision = (res.get("speed") or {}).get("mixed_precision")
    parent = RUNS[name][2]
    if precision is None and parent and (run_dir(base, seed, parent) / "results.json").is_file():
        parent_res = json.loads((run_dir(base, seed, parent) / "results.json").read_text())
        return training_precision(base, seed, parent, parent_res)
    return precision


def source_commit(base: Path, run: Path) -> str:
    """The commit a run's code came from: runs/<grid>/source_commit.txt where the grid ran from a tree copied
    to another machine without its git history, else the run's run_config.yaml (git_commit)."""
    copied = base.parent / "source_commit.txt"
    if copied.is_file():
        return copied.read_text().strip()[:7] + " (copied tree)"
    import yaml

    from ltzoo.runfolder.model_io import RUN_CONFIG

    config = run / RUN_CONFIG
    value = (yaml.safe_load(config.read_text()) or {}).get("git_commit") if config.is_file() else None
    if not value:
        return "unknown"
    return value[:7] + ("-dirty" if value.endswith("-dirty") else "")


def aggregate(base: Path, seeds: list[int], only: list[str] | None = None) -> list[dict]:
    rows = []
    for row in only or ROWS:
        per_seed = [m for m in (metrics_of(base, s, row) for s in seeds) if m]
        if not per_seed:
            continue
        out = {"method": row, "seeds": len(per_seed)}
        for c in COLUMNS + ("val_hm", "seconds", "peak_memory_mb"):
            vals = [m[c] for m in per_seed if m[c] is not None]
            out[c] = statistics.mean(vals) if vals else None
            out[c + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out["hm_interval"] = hm_interval(base, seeds, row)
        out["hardware"] = "; ".join(sorted({m["hardware"] for m in per_seed if m["hardware"]}))
        out["commits"] = "; ".join(sorted({m["commit"] for m in per_seed}))
        # the training precision of each seed, where the seeds of a row differ (a seed re-run on a CPU without
        # bf16 units trains in fp32 where the others trained in bf16): the table says which
        precisions = {m["seed"]: PRECISION.get(m["precision"], m["precision"]) for m in per_seed if m["precision"]}
        out["precisions"] = (
            "; ".join(f"seed {s}: {p}" for s, p in sorted(precisions.items()))
            if len(set(precisions.values())) > 1
            else ""
        )
        rows.append(out)
    return rows


def carried(rows: list[dict], setting: str) -> list[dict]:
    """``rows`` (measured here) and, in ROWS' order, the rows of the committed table (its CSV) whose runs are not
    on this machine: runs/ is not kept in git, so a table rebuilt on another machine keeps the rows it cannot
    re-measure, marked `carried` (the Markdown table flags them with a dagger). A committed row on more seeds
    than this machine has finished stays too (a partial re-run does not replace a complete row), and so does the
    committed row of a stage 1 that carried rows start from."""
    path = RESULTS / f"method_table_{setting}.csv"
    old = {r["method"]: r for r in rows_from_csv(path)} if path.is_file() else {}
    have = {r["method"] for r in rows if r["method"] not in old or r["seeds"] >= old[r["method"]]["seeds"]}
    rows = [r for r in rows if r["method"] in have]
    keep = {m: {**r, "carried": True} for m, r in old.items() if m in ROWS and m not in have}
    mine = {r["method"]: {**r, "carried": False} for r in rows}
    # a carried row's stage 1 stays carried too, so that the two come from the same runs (CE's row is also
    # the gap column's reference): re-runs of a stage 1 made for new rows on top of it do not replace it
    parents = {RUNS[ROWS[m][0]][2] for m in keep} - {None}
    for m in [m for m in mine if m in old and ROWS[m][0] in parents]:
        keep[m] = {**old[m], "carried": True}
        del mine[m]
    return [mine.get(m) or keep[m] for m in ROWS if m in mine or m in keep]


def _cell(r: dict, c: str) -> str:
    """A percentage, with its standard deviation over seeds where there are several."""
    if r[c] is None:
        return "-"
    return f"{100 * r[c]:.2f} ± {100 * r[c + '_std']:.2f}" if r["seeds"] > 1 else f"{100 * r[c]:.2f}"


def gap_closed(rows: list[dict], ceiling: dict | None) -> dict[str, float]:
    """method -> share of the CE-to-ceiling HM gap it closes (test means), where CE and a ceiling exist."""
    ce = next((r for r in rows if r["method"] == "CE"), None)
    if not (ce and ceiling) or ceiling["hm"] <= ce["hm"]:
        return {}
    return {r["method"]: (r["hm"] - ce["hm"]) / (ceiling["hm"] - ce["hm"]) for r in rows}


def write_table(
    rows: list[dict],
    setting: str,
    seeds: list[int],
    ceiling: dict | None = None,
    ceiling_source: str = "",
    rerun: str = "",
    relative_note: str = "",
) -> None:
    """The table as CSV and Markdown (README's copy and the plots too), for one setting.

    ``ceiling``: the balanced-set ceiling row to measure the HM gap against when the setting has none of its
    own (it is the same model whatever the class order), ``ceiling_source`` where it was trained;
    ``rerun``: the command line that rebuilds this table.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = setting
    with open(RESULTS / f"method_table_{tag}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))  # carried rows: older keys
        w.writeheader()
        w.writerows(rows)
    closed = gap_closed(rows, ceiling)
    rel = any(r.get("relative_acc") is not None for r in rows)
    ci = any(r.get("hm_interval") for r in rows)
    hardware = sorted({h for r in rows for h in r["hardware"].split("; ") if h})
    commits = sorted({c for r in rows for c in r["commits"].split("; ")})
    lines = [
        f"{SETTINGS[setting][3]}; resnet20_cifar; test split (1,000 images per class), model chosen on the "
        f"balanced validation split (`val hm`: its validation HM); mean ± std over the seeds run (of {seeds}); "
        "a row run on fewer seeds than asked says so (`1 of 3`) and shows no ± for one seed.",
        f"Hardware: {' / '.join(hardware)}. Code: commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}"
        + (" (`git diff` between them shows what changed)" if len(commits) > 1 else "")
        + ". Seconds: training time of the stage the row adds (stage 1, the "
        "BTM stage with its merged model's evaluation, or the classifier heads)."
        + (
            " `gap`: the share of the CE-to-ceiling test HM gap the row "
            f"closes (ceiling HM {100 * ceiling['hm']:.2f}, {ceiling['seeds']} seeds{ceiling_source})."
            if closed
            else ""
        )
        + relative_note
        + (
            " `test HM 95% CI, 1 seed`: the stratified-bootstrap interval (1,000 resamples) of the "
            "row's test HM on the seed named, where its predictions are kept (runs since "
            "ltzoo.training.evaluation, or the zoo model of that run); `-`: none kept."
            if ci
            else ""
        ),
        "",
        "| method | seeds | "
        + " | ".join(COLUMNS)
        + " | val hm |"
        + (" gap |" if closed else "")
        + (" rel acc |" if rel else "")
        + (" test HM 95% CI, 1 seed |" if ci else "")
        + " seconds | peak MB |",
        "|---|---|" + "---|" * (len(COLUMNS) + 3 + bool(closed) + rel + ci),
    ]
    for r in rows:
        n = f"{r['seeds']}" if r["seeds"] == len(seeds) else f"{r['seeds']} of {len(seeds)}"
        gap = [f"{100 * closed[r['method']]:.0f}%"] if closed else []
        gap += [f"{r['relative_acc']:.3f}" if r.get("relative_acc") is not None else "-"] if rel else []
        gap += [r.get("hm_interval") or "-"] if ci else []
        mark = (" †" if r.get("carried") else "") + (" ‡" if r.get("precisions") else "")
        lines.append(
            f"| {r['method']}{mark} | {n} | "
            + " | ".join(_cell(r, c) for c in COLUMNS + ("val_hm",))
            + " | "
            + " | ".join(gap + [f"{r['seconds'] or 0:.0f}", f"{r['peak_memory_mb'] or 0:.0f}"])
            + " |"
        )
    mixed = [r for r in rows if r.get("precisions")]
    if mixed:
        lines += [
            "",
            "‡: its seeds trained at different precisions (bf16 autocast on CPUs with bf16 units, fp32 on "
            "others"
            + ("; the fp32 rows above measure what that changes" if any("fp32" in r["method"] for r in rows) else "")
            + "): "
            + "; ".join(f"{r['method']}: {r['precisions']}" for r in mixed)
            + ".",
        ]
    if any(r.get("carried") for r in rows):
        lines += [
            "",
            "†: carried from the committed table (its runs were not on the machine that rebuilt it; its "
            "commits are among those listed above).",
        ]
    lines += ["", f"Re-run: `{rerun}`"]
    (RESULTS / f"method_table_{tag}.md").write_text("\n".join(lines) + "\n")
    target_text = targets(rows, tag, ceiling)
    if GRID != "bench-quick":  # not a quick grid's
        update_readme(
            tag if GRID == "bench" else f"{GRID}:{tag}",
            "\n".join(lines) + ("\n\n" + target_text if target_text else ""),
        )
    plot(rows, tag)


def targets(rows: list[dict], tag: str, ceiling: dict | None = None) -> str | None:
    """BTM+GML against its stage 1 and the ceiling: the share of the HM gap closed, min recall, accuracy."""
    by = {r["method"]: r for r in rows}
    ce, btm, top = by.get("CE"), by.get("CE + BTM + GML"), ceiling
    if not (ce and btm and top):
        return None
    closed = (btm["hm"] - ce["hm"]) / (top["hm"] - ce["hm"])
    checks = [
        ("share of the HM gap to the ceiling closed", f"{100 * closed:.0f}%", ">= 50%", closed >= 0.5),
        (
            "min recall gain (points)",
            f"{100 * (btm['min_recall'] - ce['min_recall']):+.2f}",
            ">= +15",
            btm["min_recall"] - ce["min_recall"] >= 0.15,
        ),
        (
            "accuracy change (points)",
            f"{100 * (btm['acc'] - ce['acc']):+.2f}",
            ">= -1",
            btm["acc"] - ce["acc"] >= -0.01,
        ),
    ]
    lines = [
        f"BTM+GML targets on the test split, means over seeds (CE and BTM+GML: {ce['seeds']} and "
        f"{btm['seeds']} seeds; ceiling: {top['seeds']}): HM {100 * ce['hm']:.2f} (CE) -> {100 * btm['hm']:.2f} "
        f"(BTM+GML), ceiling {100 * top['hm']:.2f}.",
        "",
        "| target | measured | wanted | met |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {value} | {want} | {'yes' if ok else 'NO'} |" for name, value, want, ok in checks]
    text = "\n".join(lines) + "\n"
    (RESULTS / f"btm_targets_{tag}.md").write_text(text)
    return text


def update_readme(tag: str, table: str) -> None:
    """Put the table into README.md between its <!-- method-table:TAG --> markers, if it has them."""
    write_between_markers(f"method-table:{tag}", table)


def write_between_markers(name: str, text: str) -> None:
    """Replace what README.md holds between <!-- NAME --> and <!-- /NAME --> with ``text``, if it has them."""
    readme = ROOT / "README.md"
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    body = readme.read_text()
    if begin in body and end in body:
        head, rest = body.split(begin, 1)
        readme.write_text(head + begin + "\n" + text + "\n" + end + rest.split(end, 1)[1])


def plot(rows: list[dict], tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    markers = "osD^v<>phX*"
    for i, r in enumerate(rows):
        ax.errorbar(
            100 * r["acc"],
            100 * r["hm"],
            xerr=100 * r["acc_std"],
            yerr=100 * r["hm_std"],
            fmt=markers[i % len(markers)],
            label=f"{r['method']} ({r['seeds']} seeds)",
            capsize=2,
        )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_xlabel("accuracy (%)")
    ax.set_ylabel("harmonic mean of per-class recall (%)")
    ax.set_title(f"{tag}: HM against accuracy (test)")
    fig.tight_layout()
    fig.savefig(RESULTS / f"hm_vs_acc_{tag}.png", dpi=110)
    plt.close(fig)


def plot_recall(base: Path, seed: int, tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4))
    main = [
        "CE",
        "Balanced Softmax",
        "CE + GML + ensemble",
        "CE + BTM + GML",
        "CSA (context-shift augmentation)",
        "BSCE 45 ep. + BTM + GML",
        CEILING,
    ]
    shown = 0
    for i, row in enumerate(main):
        name, key = ROWS[row]
        path = run_dir(base, seed, name) / "results.json"
        if not path.is_file():
            continue
        if key is not None:  # table rows of a run hold summary numbers only
            continue
        recall = json.loads(path.read_text())["metrics"]["test"]["per_class_recall"]
        width = 0.8 / len(main)
        ax.bar([c + i * width for c in range(len(recall))], recall, width=width, label=row)
        shown += 1
    if shown:
        ax.set_xlabel("class (most training images first)")
        ax.set_ylabel("test recall")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        fig.savefig(RESULTS / f"per_class_recall_{tag}.png", dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setting", default="rho100", choices=list(SETTINGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--groups",
        nargs="+",
        default=["core", "ceiling", "baselines", "csa"],
        choices=sorted({g for *_, g in RUNS.values()}),
        help="the runs of these groups (in RUNS' order)",
    )
    p.add_argument("--runs", nargs="+", default=None, choices=list(RUNS), help="these runs instead of --groups")
    p.add_argument("--jobs", type=int, default=1, help="recipes run at once")
    p.add_argument("--threads", type=int, default=THREADS, help="CPU threads per recipe")
    p.add_argument("--deadline-at", type=float, default=None, help="start no run after this UNIX time")
    p.add_argument("--data-dir", default=None, help="the dataset's files (default: the recipes' own search)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="a quick grid: every stage 1 this many epochs (runs/bench-quick/, results/quick/, whatever --grid says)",
    )
    p.add_argument(
        "--grid",
        default="bench",
        metavar="NAME",
        help="runs/NAME/<setting> holds the runs; a grid other than 'bench' (say one run on another "
        "machine) writes its tables to benchmarks/results/NAME/ and README's "
        "<!-- method-table:NAME:<setting> --> markers",
    )
    p.add_argument(
        "--ceiling-grid",
        default=None,
        metavar="NAME",
        help="take the balanced-set ceiling (for the gap column) from runs/NAME/rho100 (default: --grid's)",
    )
    p.add_argument("--only-table", action="store_true")
    p.add_argument(
        "--from-csv",
        action="store_true",
        help="with --only-table: rebuild the table from its committed CSV (for a machine without the "
        "runs' folders), adding the balanced reference row, rel acc and the one-seed HM intervals "
        "that this machine's runs and zoo models give",
    )
    args = p.parse_args()
    global RESULTS, GRID
    GRID = "bench-quick" if args.epochs else args.grid
    base = ROOT / "runs" / GRID / args.setting
    if args.epochs:  # never mixed with the real tables
        RESULTS = RESULTS / "quick"
    elif GRID != "bench":
        RESULTS = RESULTS / GRID
    if not args.only_table:
        names = args.runs or [n for g in args.groups for n, (*_, group) in RUNS.items() if group == g]
        run_grid(
            base, args.setting, args.seeds, names, args.jobs, args.deadline_at, args.data_dir, args.threads, args.epochs
        )
    rows = aggregate(base, args.seeds)
    if args.from_csv:  # the runs are elsewhere: the committed table's rows, with what this machine can add
        rows = rows_from_csv(RESULTS / f"method_table_{args.setting}.csv")
        for r in rows:
            r["hm_interval"] = r.get("hm_interval") or (
                hm_interval(base, args.seeds, r["method"]) if r["method"] in ROWS else None
            )
        ref_base = base if (run_dir(base, args.seeds[0], BALANCED_REF) / "results.json").is_file() else REF_COPIES
        ref_row = next(iter(aggregate(ref_base, args.seeds, [BALANCED_ROW])), None)
        rows = [r for r in rows if r["method"] != BALANCED_ROW] + ([ref_row] if ref_row else [])
    elif GRID == "bench":  # keep the committed rows this machine has no runs for
        rows = carried(rows, args.setting)
    if rows:
        relative_note = relative_accuracy(rows, args.setting, args.grid, args.seeds)
        ceiling, source = borrowed_ceiling(rows, args.setting, args.ceiling_grid or GRID, args.seeds)
        if args.ceiling_grid and ceiling is None:
            print(
                f"method_table.py: no ceiling run in runs/{args.ceiling_grid}/rho100 for seeds {args.seeds}: "
                "the table has no gap column",
                file=sys.stderr,
            )
        shown = list(dict.fromkeys(n for n in RUNS for r in rows if ROWS[r["method"]][0] == n))
        rerun = (
            f"python benchmarks/method_table.py --setting {args.setting} --seeds {' '.join(map(str, args.seeds))} "
            f"--runs {' '.join(shown)}"
            + (f" --epochs {args.epochs}" if args.epochs else "")
            + (f" --grid {args.grid}" if args.grid != "bench" and not args.epochs else "")
            + (f" --ceiling-grid {args.ceiling_grid}" if args.ceiling_grid else "")
            + (" --only-table --from-csv" if args.from_csv else "")
        )
        write_table(
            rows,
            args.setting,
            args.seeds,
            ceiling=ceiling,
            ceiling_source=source,
            rerun=rerun,
            relative_note=relative_note,
        )
        plot_recall(base, args.seeds[0], args.setting)
        print((RESULTS / f"method_table_{args.setting}.md").read_text())


def borrowed_ceiling(rows: list[dict], setting: str, grid: str, seeds: list[int]) -> tuple[dict | None, str]:
    """The ceiling of the rows' own (a `ceiling` run in this setting), else, for a Fashion-MNIST-LT setting, the
    one of ``grid``'s rho100 runs: CE on the full balanced training set, the same model whatever the class
    order or imbalance. Returns it and a note on where it was trained ('' for the rows' own)."""
    own = next((r for r in rows if r["method"] == CEILING), None)
    if own or SETTINGS[setting][0] != "fmnist_lt":
        return own, ""
    other = next((r for r in aggregate(ROOT / "runs" / grid / "rho100", seeds) if r["method"] == CEILING), None)
    return other, (f", trained in runs/{grid}/rho100 on {other['hardware']}" if other else "")


if __name__ == "__main__":
    sys.exit(main())
