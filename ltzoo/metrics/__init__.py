"""Long-tail metrics (accuracy, HM, GM, min recall, many/medium/few) and their plots."""
from ltzoo.metrics.longtail import SUMMARY_KEYS, geometric_mean, harmonic_mean, longtail_metrics, per_class_recall
from ltzoo.metrics.plot import plot_per_class_recall
from ltzoo.metrics.shots import LITERATURE_SHOT_CUTS, choose_shot_cuts

__all__ = ["LITERATURE_SHOT_CUTS", "SUMMARY_KEYS", "choose_shot_cuts", "geometric_mean", "harmonic_mean",
           "longtail_metrics", "per_class_recall", "plot_per_class_recall"]
