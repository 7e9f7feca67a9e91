"""Long-tailed data: profiles, datasets by name, samplers, subset draws, and batch pipelines."""

from ltzoo.data.datasets import DATASETS, list_datasets, load_dataset
from ltzoo.data.profiles import PROFILES, longtail_counts, subsample_longtail
from ltzoo.data.samplers import SAMPLERS, balanced_subsets, create_sampler, imbalanced_subsets
from ltzoo.data.splits import LTDataset, Split, shot_groups

__all__ = [
    "DATASETS",
    "PROFILES",
    "SAMPLERS",
    "LTDataset",
    "Split",
    "balanced_subsets",
    "imbalanced_subsets",
    "create_sampler",
    "list_datasets",
    "load_dataset",
    "longtail_counts",
    "shot_groups",
    "subsample_longtail",
]
