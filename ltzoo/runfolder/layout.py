"""The names of the files in a run folder, in one place: every module that writes or reads one names it from here.

A run folder (``runs/<name>/``) holds, after a run:

    run_config.yaml          the resolved config, the git commit, each flag's option, kind and default
    log.jsonl                one line per epoch (and per BTM member)
    checkpoints/epoch_N/     resumable training state (train_state.json beside accelerate's files)
    config.json              timm's model config (architecture, num_classes, label names, data config)
    model.safetensors        the exported weights (timm's Hub format)
    results.json             every metric of the final evaluation, per split, with the decisions that led there
    predictions.safetensors  the final evaluation's logits and labels (for ``ltzoo compare``)
    per_class_recall.png     per-class recall against training-image count
    reliability.png          the reliability diagram of the test predictions
    README.md                the model card (``ltzoo card``)
    classifier_uncalibrated.safetensors   the classifier as trained, before calibration folded a temperature into
                             it (a later stage that trains from the model restores it)
"""

from __future__ import annotations

RUN_CONFIG = "run_config.yaml"
LOG = "log.jsonl"
CHECKPOINTS = "checkpoints"
TRAIN_STATE = "train_state.json"
MODEL_CONFIG = "config.json"
WEIGHTS = "model.safetensors"
RESULTS = "results.json"
PREDICTIONS = "predictions.safetensors"
PER_CLASS_PLOT = "per_class_recall.png"
#: the reliability diagram of the kept test predictions, beside them in a run folder
RELIABILITY = "reliability.png"
CARD = "README.md"
UNCALIBRATED_HEAD = "classifier_uncalibrated.safetensors"
