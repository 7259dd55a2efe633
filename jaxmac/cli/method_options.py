"""The command-line options of the learned methods, built from the settings each declares
(``jaxmac.settings.setting`` on its agent's, algorithm's and hyperparameters' fields), so a new
method in ``jaxmac.training.METHODS`` reaches ``jaxmac train`` without editing it."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from jaxmac.training import METHODS, method


def option_dest(f: dataclasses.Field) -> str:
    return f.metadata["flag"] or f.name


def option_flags(dests: list[str]) -> list[str]:
    return [f"--{d.replace('_', '-')}" for d in dests]


def _method_options() -> dict[str, tuple[dataclasses.Field, dict[str, Any]]]:
    """Every method's declared settings as command-line options: dest -> (the field, its
    default per method). A name two methods declare must mean the same kind of value."""
    options: dict[str, tuple[dataclasses.Field, dict[str, Any]]] = {}
    for algo, m in METHODS.items():
        for fields in m.settings().values():
            for f in fields:
                dest = option_dest(f)
                known, defaults = options.setdefault(dest, (f, {}))
                if known.metadata["kind"] is not f.metadata["kind"] or (
                    f.metadata["kind"] is bool and defaults and f.default not in defaults.values()
                ):
                    raise TypeError(f"methods declare setting {dest!r} differently: {known} and {f}")
                defaults[algo] = f.default
    return options


METHOD_OPTIONS = _method_options()


def add_method_option(
    group: argparse._ArgumentGroup, dest: str, f: dataclasses.Field, defaults: dict[str, Any]
) -> None:
    """A boolean setting is a switch away from its default (``--no-sie``, ``--raw-logits``); the
    rest take a value. Every default is None: the method's own default applies after parsing."""
    flag, methods = dest.replace("_", "-"), ", ".join(defaults)
    if f.metadata["kind"] is bool:
        group.add_argument(
            f"--no-{flag}" if f.default else f"--{flag}",
            dest=dest,
            action="store_const",
            const=not f.default,
            default=None,
            help=f"{f.metadata['help']}: {'off' if f.default else 'on'} ({methods})",
        )
        return
    values = set(map(str, defaults.values()))
    if values == {"None"}:
        shown = methods
    elif len(values) == 1:
        shown = f"{methods}; default {values.pop()}"
    else:
        shown = "default " + ", ".join(f"{algo} {default}" for algo, default in defaults.items())
    group.add_argument(
        f"--{flag}", dest=dest, type=f.metadata["kind"], default=None, help=f"{f.metadata['help']} ({shown})"
    )


def method_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The ``agent``, ``algorithm`` and ``hparams`` dicts of ``args.algo``: the options given,
    the method's defaults for the rest. An option of another method is an error naming the
    method's own."""
    own = method(args.algo).settings()
    dests = [option_dest(f) for fields in own.values() for f in fields]
    foreign = [d for d in METHOD_OPTIONS if d not in dests and getattr(args, d) is not None]
    if foreign:
        raise ValueError(
            f"{option_flags(foreign)} are not settings of {args.algo}; its settings: {option_flags(dests)}"
        )

    def pick(f: dataclasses.Field) -> Any:
        given = getattr(args, option_dest(f))
        return f.default if given is None else given

    return {section: {f.name: pick(f) for f in fields} for section, fields in own.items()}
