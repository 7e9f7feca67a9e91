"""The run's config: the parsed flags are never changed; what a run decides is recorded with its rule."""

from __future__ import annotations

import argparse
import copy

import pytest

from ltzoo.config.resolution import Resolution, RunConfig


def test_parsed_flags_are_read_only_and_decisions_lay_over_them():
    parsed = argparse.Namespace(shots=None, subsets=4, profile=None)
    flags = RunConfig.of(parsed)
    with pytest.raises(AttributeError, match="read-only: record --shots as a decision"):
        flags.shots = 20
    resolution = Resolution()
    assert resolution.decide("shots", 20, "the largest K for 4 subsets") == 20
    args = resolution.apply(flags)
    assert args.shots == 20 and args.subsets == 4 and flags.shots is None and parsed.shots is None
    assert resolution.rules() == {"shots": "the largest K for 4 subsets"}
    assert vars(args) == {"shots": 20, "subsets": 4, "profile": None}
    assert copy.deepcopy(args) == args and isinstance(copy.deepcopy(args), RunConfig)
    with pytest.raises(AttributeError):
        del args.shots


def test_a_recipe_decides_without_changing_its_flags():
    from ltzoo.recipes import btm

    args = btm.build_parser().parse_args(["--dataset", "fmnist_lt"])
    recipe = btm.BTM(args)
    recipe.decide("shots", 7, "a test's rule")
    assert recipe.args.shots == 7 and recipe.flags.shots is None and args.shots is None
    assert recipe.resolution.rules() == {"shots": "a test's rule"}
