"""ltzoo.training.numerics: the first non-finite loss of an epoch is found without a sync per step, and ends the run
on one line that names the epoch, the step, the precision and the fix."""

from __future__ import annotations

import pytest
import torch

from ltzoo.errors import run_main, user_error
from ltzoo.training.numerics import LossWatch, NonFiniteTraining

NAN, INF = float("nan"), float("inf")


def _watch(losses, precision="no", every=100) -> LossWatch:
    watch = LossWatch(epoch=3, precision=precision, device="cpu", every=every)
    for value in losses:
        watch.add(torch.tensor(value))
    return watch


def test_finite_losses_pass():
    _watch([1.0, 0.5, 1e30, 0.0]).check()


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_first_non_finite_step_is_named(bad):
    watch = _watch([1.0, 2.0, bad, 1.0, NAN], every=100)  # found at the check, not when added
    with pytest.raises(NonFiniteTraining) as info:
        watch.check()
    assert (info.value.epoch, info.value.step) == (3, 2)
    assert "at epoch 3, step 2 (fp32)" in str(info.value) and "lower --lr" in str(info.value)


def test_checked_every_few_steps_during_the_epoch():
    with pytest.raises(NonFiniteTraining, match="step 1 "):
        _watch([1.0, NAN, 1.0, 1.0], every=2)  # the check after step 1 raises, before step 2 is added
    _watch([1.0, 1.0, NAN], every=2)  # not yet seen: the epoch's final check would raise


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_names_the_fp32_fix(precision):
    with pytest.raises(NonFiniteTraining) as info:
        _watch([NAN], precision=precision).check()
    msg = str(info.value)
    assert f"({precision} mixed precision)" in msg and "--mixed-precision no" in msg and "lower --lr" in msg


def test_is_a_one_line_user_error(capsys):
    def main():
        _watch([1.0, NAN], precision="bf16").check()

    assert user_error(NonFiniteTraining(0, 1, "bf16")) is not None
    assert run_main(main, "pretrain.py", exit=False) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "pretrain.py: error: the training loss became non-finite at epoch 3, step 1 (bf16 mixed precision); lower --lr"
    )


def test_non_finite_weights_behind_a_finite_loss():
    """A NaN gradient in the last step leaves a finite loss but NaN weights: the end-of-epoch check sees them."""
    model = torch.nn.Linear(3, 2)
    _watch([1.0]).check(model)
    with torch.no_grad():
        model.weight[0, 1] = NAN
    with pytest.raises(NonFiniteTraining) as info:
        _watch([1.0], precision="bf16").check(model)
    assert info.value.step is None and "the weights became non-finite in epoch 3" in str(info.value)
    assert "(bf16 mixed precision); lower --lr, or train in fp32 with --mixed-precision no" in str(info.value)


def test_names_what_trained_and_its_learning_rate_flag():
    """A BTM member's loop: the message names the member and --member-lr, not the run's --lr."""
    watch = LossWatch(epoch=0, precision="no", device="cpu", lr_flag="--member-lr", of="member 2")
    watch.add(torch.tensor(NAN))
    with pytest.raises(
        NonFiniteTraining,
        match=r"^the training loss of member 2 became non-finite at epoch 0, "
        r"step 0 \(fp32\); lower --member-lr ",
    ):
        watch.check()
