"""The training floor: precision and the one Accelerator (`accelerator`), the one training step and epoch
(`loop`), the optimiser and schedule (`optim`), the watch on a loss turning non-finite (`numerics`), and the one
home of evaluation (`evaluation`: prediction in fp32, metrics from logits, a recipe's final evaluation)."""
