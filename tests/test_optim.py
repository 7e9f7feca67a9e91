"""The step-decay schedule and the plain-momentum optimiser of `ltzoo.training.optim` (LDAM-DRW's and MiSLAS's
CIFAR-LT recipes), and the pretrain flags that reach them. The cosine schedule is tested in test_recipe_args."""

from __future__ import annotations

import pytest
import torch

from ltzoo.recipes import pretrain
from ltzoo.training.optim import create_optimizer, create_scheduler


def _rates(total: int, warmup: int, milestones=(), gamma: float = 0.1, lr: float = 0.1) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = create_scheduler(opt, total, warmup, milestones, gamma)
    rates = []
    for _ in range(total):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_step_decay_after_warmup_is_ldam_drws_schedule():
    """LDAM-DRW in steps: warm-up over 5, the peak until 160, x0.01 from 160, x0.0001 from 180, of 200."""
    rates = _rates(200, 5, (160, 180), gamma=0.01)
    assert rates[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert rates[5:160] == pytest.approx([0.1] * 155)
    assert rates[160:180] == pytest.approx([1e-3] * 20) and rates[180:] == pytest.approx([1e-5] * 20)


def test_step_decay_without_warmup_and_bad_milestones():
    assert _rates(10, 0, (4,), gamma=0.5) == pytest.approx([0.1] * 4 + [0.05] * 6)
    for bad in ((3,), (12,), (8, 6), (6, 6)):
        with pytest.raises(ValueError, match="milestones"):
            _rates(10, 3, bad)


def test_plain_momentum_optimizer():
    opt = create_optimizer(torch.nn.Linear(2, 2), "momentum", 0.1, 2e-4)
    assert isinstance(opt, torch.optim.SGD)
    assert not opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9


def test_pretrain_flags(capsys):
    args = pretrain.build_parser().parse_args(
        [
            "--epochs",
            "200",
            "--warmup-epochs",
            "5",
            "--lr-steps",
            "160",
            "180",
            "--lr-gamma",
            "0.01",
            "--optimizer",
            "momentum",
        ]
    )
    assert args.lr_steps == [160, 180] and args.lr_gamma == 0.01 and args.optimizer == "momentum"
    assert pretrain.build_parser().parse_args([]).lr_steps is None  # cosine by default
    for bad in (
        ["--epochs", "10", "--lr-steps", "12"],
        ["--warmup-epochs", "5", "--lr-steps", "3"],
        ["--lr-steps", "8", "6"],
    ):
        with pytest.raises(SystemExit):
            pretrain.build_parser().parse_args(bad)
        assert "--lr-steps" in capsys.readouterr().err
