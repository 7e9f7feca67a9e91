"""Hugging Face `datasets` image datasets as ltzoo splits (``hf:<hub name or local path>``)."""

from __future__ import annotations

from pathlib import Path

from ltzoo.data import formats
from ltzoo.data.splits import Split

_VAL_NAMES = ("validation", "val", "valid")


def _load(name: str):
    import datasets

    path = Path(name)
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file()):
        return datasets.load_from_disk(str(path))
    return datasets.load_dataset(name)


def _columns(ds) -> tuple[str, str]:
    import datasets

    image = next((k for k, f in ds.features.items() if isinstance(f, datasets.Image)), None)
    label = next((k for k in ("label", "labels", "fine_label") if k in ds.features), None)
    if image is None or label is None:
        raise ValueError(f"a hf: dataset needs an Image column and a 'label' column; found columns {list(ds.features)}")
    return image, label


def _split(ds, name: str, image_key: str, label_key: str) -> Split:
    split = Split(name, list(ds[label_key]), hf=ds, hf_image_key=image_key, source=f"hf split {name!r}")
    return formats.decode_to_tensor(split)


def read_hf(name: str, **_) -> tuple[Split, Split | None, Split | None, list[str]]:
    """Read a `datasets` DatasetDict with 'train' and 'test' (and optionally 'validation') splits."""
    dd = _load(name)
    if "train" not in dd:
        raise ValueError(f"hf:{name} has splits {list(dd)}; a 'train' split is needed")
    image_key, label_key = _columns(dd["train"])
    feature = dd["train"].features[label_key]
    names = (
        list(feature.names) if hasattr(feature, "names") else [str(c) for c in range(max(dd["train"][label_key]) + 1)]
    )
    val_name = next((v for v in _VAL_NAMES if v in dd), None)
    return (
        _split(dd["train"], "train", image_key, label_key),
        _split(dd["test"], "test", image_key, label_key) if "test" in dd else None,
        _split(dd[val_name], "val", image_key, label_key) if val_name else None,
        names,
    )
