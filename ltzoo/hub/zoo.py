"""The zoo's catalogue, read from the generated model cards in ``hub_cards/``.

Each ``hub_cards/<name>.md`` (written by ``ltzoo card RUN_DIR --name NAME --repo-id ORG/NAME``) is
parsed with huggingface_hub's `ModelCard.load`: the ``ltzoo`` metadata block gives the name, method,
backbone, dataset and hub id; the ``model-index`` gives the test-split numbers. ``README.md`` and
sub-folders (``templates/``) are not cards.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard

from ltzoo.hub.card import METRICS, default_cards_dir

#: Catalogue columns: (key, header).
COLUMNS = (
    ("name", "name"),
    ("method", "method"),
    ("backbone", "backbone"),
    ("dataset", "dataset"),
    ("acc", "acc"),
    ("hm", "HM"),
    ("gm", "GM"),
    ("min_recall", "min recall"),
    ("hub_id", "hub id"),
)
_TYPE_TO_KEY = {mtype: key for key, (mtype, _, _) in METRICS.items()}


def card_entry(path: str | Path) -> dict:
    """One catalogue row from a card file: its ltzoo metadata and test-split metrics (percentages)."""
    path = Path(path)
    card = ModelCard.load(path)
    meta = card.data.to_dict()
    block = meta.get("ltzoo") if isinstance(meta.get("ltzoo"), dict) else {}
    entry = {
        "name": block.get("name") or getattr(card.data, "model_name", None) or path.stem,
        "method": block.get("method"),
        "backbone": block.get("backbone"),
        "dataset": block.get("dataset"),
        "imbalance_ratio": block.get("imbalance_ratio"),
        "hub_id": block.get("hub_id"),
        "parents": block.get("parents") or [],
        "card": str(path),
    }
    test: dict = {}
    val: dict = {}
    for r in card.data.eval_results or []:
        key = _TYPE_TO_KEY.get(r.metric_type)
        if key is None:
            continue
        (test if r.dataset_split == "test" else val if r.dataset_split == "validation" else {})[key] = r.metric_value
    entry.update({k: test.get(k) for k in METRICS})
    entry["val"] = val
    return entry


def catalogue(cards_dir: str | Path | None = None) -> list[dict]:
    """Every card of ``cards_dir`` (default: ``hub_cards/``), sorted by dataset then name."""
    cards_dir = Path(cards_dir) if cards_dir is not None else default_cards_dir()
    if not cards_dir.is_dir():
        raise FileNotFoundError(f"cards folder {cards_dir} does not exist")
    entries = [card_entry(p) for p in sorted(cards_dir.glob("*.md")) if p.name.lower() != "readme.md"]
    return sorted(entries, key=lambda e: (str(e["dataset"]), str(e["name"])))


def catalogue_table(entries: list[dict]) -> str:
    """The catalogue as a Markdown table (metrics: test-split percentages)."""

    def cell(v) -> str:
        if v is None:
            return "-"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(e.get(k)) for k, _ in COLUMNS) + " |" for e in entries]
    return "\n".join(lines)
