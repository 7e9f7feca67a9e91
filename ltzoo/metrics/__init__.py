"""Long-tail metrics (accuracy, HM, GM, min recall, many/medium/few) and their plots."""
from ltzoo.metrics.longtail import SUMMARY_KEYS, geometric_mean, harmonic_mean, longtail_metrics, per_class_recall
from ltzoo.metrics.plot import plot_per_class_recall

__all__ = ["SUMMARY_KEYS", "geometric_mean", "harmonic_mean", "longtail_metrics", "per_class_recall",
           "plot_per_class_recall"]
