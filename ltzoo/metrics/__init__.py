"""Long-tail metrics (accuracy, HM, GM, min recall, many/medium/few), probability metrics (ECE, NLL, Brier,
top-5), bootstrap intervals, shifted test priors, their plots and the summary table."""

from ltzoo.metrics.bootstrap import INTERVAL_KEYS, interval_text, paired_bootstrap, stratified_bootstrap
from ltzoo.metrics.longtail import (
    SUMMARY_KEYS,
    geometric_mean,
    harmonic_mean,
    longtail_metrics,
    per_class_recall,
    selection_score,
)
from ltzoo.metrics.plot import plot_per_class_recall, plot_prior_sweep, plot_reliability
from ltzoo.metrics.priors import adjust_logits, check_prior, em_prior, prior_sweep, shifted_metrics, shifted_priors
from ltzoo.metrics.probability import probability_metrics, reliability_bins, weighted_probability_metrics
from ltzoo.metrics.shots import LITERATURE_SHOT_CUTS, choose_shot_cuts
from ltzoo.metrics.table import brief, interval_table, summary_table

__all__ = [
    "INTERVAL_KEYS",
    "LITERATURE_SHOT_CUTS",
    "SUMMARY_KEYS",
    "adjust_logits",
    "brief",
    "check_prior",
    "choose_shot_cuts",
    "em_prior",
    "geometric_mean",
    "harmonic_mean",
    "interval_table",
    "interval_text",
    "longtail_metrics",
    "paired_bootstrap",
    "per_class_recall",
    "plot_per_class_recall",
    "plot_prior_sweep",
    "plot_reliability",
    "prior_sweep",
    "probability_metrics",
    "reliability_bins",
    "selection_score",
    "shifted_metrics",
    "stratified_bootstrap",
    "summary_table",
    "shifted_priors",
    "weighted_probability_metrics",
]
