"""What a run decided from its data and its starting point, kept apart from the flags it was given.

Parsing gives a `RunConfig`: the flags, which nothing changes afterwards. What a recipe decides for a flag the
user left unset (BTM's shots from the class counts, whether the head is ensembled, the profile the data applied,
the architecture ``--init`` brings) is a `Decision`, recorded with the rule that chose it in the run's
`Resolution`. The recipe reads the flags with its decisions laid over them (`Resolution.apply`, a new `RunConfig`
each time), and run_config.yaml records both: each resolved value under its flag's name (so a card's reproduce
command and a resumed run see what ran) and each rule under ``resolved``.

    resolution = Resolution()
    shots = resolution.decide("shots", 20, "the largest K that leaves 4 subsets of every class (choose_shots)")
    args = resolution.apply(flags)          # flags.shots is still None; args.shots == 20
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any


class RunConfig(argparse.Namespace):
    """A parsed command line that cannot be changed: a value the run decides is a `Decision`, not an edit."""

    @classmethod
    def of(cls, flags: argparse.Namespace, decided: dict[str, Any] | None = None) -> RunConfig:
        """``flags`` (copied), with the ``decided`` values laid over them."""
        config = cls.__new__(cls)
        config.__dict__.update(vars(flags))
        config.__dict__.update(decided or {})
        return config

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"the run's config is read-only: record --{name.replace('_', '-')} as a decision "
            "(Resolution.decide, Recipe.decide) instead of changing the parsed flags"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError("the run's config is read-only")


@dataclass(frozen=True)
class Decision:
    """A value the run chose for a flag, and the rule that chose it (printed, and recorded in run_config.yaml)."""

    value: Any
    rule: str


class Resolution:
    """The decisions of one run, in the order they were made."""

    def __init__(self) -> None:
        self.decisions: dict[str, Decision] = {}

    def decide(self, name: str, value: Any, rule: str) -> Any:
        """Record ``value`` for flag ``name``, chosen by ``rule``; returns ``value``."""
        self.decisions[name] = Decision(value, rule)
        return value

    def apply(self, flags: argparse.Namespace) -> RunConfig:
        """The flags with every decision laid over them."""
        return RunConfig.of(flags, {name: d.value for name, d in self.decisions.items()})

    def rules(self) -> dict[str, str]:
        """flag -> the rule that chose its value (run_config.yaml's ``resolved``)."""
        return {name: d.rule for name, d in self.decisions.items()}
