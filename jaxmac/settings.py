"""Declared settings: a dataclass field with the help text and command-line flag the CLI shows.

Agents, algorithm settings and hyperparameters declare their user-facing fields with
``setting``; ``jaxmac train`` builds its options from those declarations, so a new method's
settings reach the command line without editing it.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def setting(default: Any, help: str, *, flag: str | None = None, kind: type | None = None) -> Any:
    """A dataclass field with ``default`` and its command-line ``help``; ``flag`` names the
    option when it differs from the field (``num_envs`` is ``--episodes``), ``kind`` its type
    when the default does not show it (a ``None`` default)."""
    kind = type(default) if kind is None else kind
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "kind": kind})


def declared_settings(cls: type) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` declared with ``setting``, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]
