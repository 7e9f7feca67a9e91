"""Long-tail metrics (accuracy, HM, GM, min recall, many/medium/few), their plots and the summary table."""
from ltzoo.metrics.longtail import SUMMARY_KEYS, geometric_mean, harmonic_mean, longtail_metrics, per_class_recall
from ltzoo.metrics.plot import plot_per_class_recall
from ltzoo.metrics.shots import LITERATURE_SHOT_CUTS, choose_shot_cuts
from ltzoo.metrics.table import brief, summary_table

__all__ = ["LITERATURE_SHOT_CUTS", "SUMMARY_KEYS", "brief", "choose_shot_cuts", "geometric_mean", "harmonic_mean",
           "longtail_metrics", "per_class_recall", "plot_per_class_recall", "summary_table"]
