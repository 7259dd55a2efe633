"""What ``jaxmac train --resume`` may change in a saved run, and the run it continues with."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from jaxmac.cli.method_options import METHOD_OPTIONS, option_dest, option_flags
from jaxmac.cli.options import DEVICE_OPTIONS, SHAPE_OPTIONS, SINK_OPTIONS
from jaxmac.env import REWARD_PRESETS
from jaxmac.training import RunConfig

#: What a --resume may change (options by dest): the run's length, the traced values (the
#: method's hyperparameters and the environment's parameters) and the evaluation settings.
RESUMABLE = ("updates", "ues", "p_arrival", "tbler", "churn", "reward", "chunk", "eval_every", "eval_ues")
RESUMABLE += ("eval_episodes", "greedy", "stop_if")


def _saved_values(saved: RunConfig) -> dict[str, Any]:
    """Every option's value in a saved run, by dest, in the form the option parses to."""
    env, params = saved.build_env(), saved.base_hparams().env
    presets = [
        k for k, w in REWARD_PRESETS.items() if all(saved.env_params.get(n) == v for n, v in w.items())
    ]
    values: dict[str, Any] = {
        "algo": saved.algo,
        "no_comm": saved.no_comm,
        "seed": saved.seeds[0],
        "seeds": list(saved.seeds),
        "sweep": [(k, tuple(v)) for k, v in saved.grid.items()],
        "ues": list(range(int(params.n_min), int(params.n_max) + 1)),
        "reward": presets[0] if presets else None,
        "chunk": saved.chunk,
        "eval_every": saved.eval_every,
        "eval_ues": None if saved.eval_ues is None else list(saved.eval_ues),
        "eval_episodes": saved.eval_episodes,
        "greedy": saved.greedy,
        "stop_if": list(saved.stop_if),
    }
    values |= {k: getattr(env, k) for k in SHAPE_OPTIONS}
    values |= {k: float(f"{float(getattr(params, k)):.7g}") for k in ("p_arrival", "tbler", "churn")}
    for section, fields in saved.method.settings().items():
        values |= {option_dest(f): getattr(saved, section).get(f.name, f.default) for f in fields}
    return values


def resumed_config(
    saved: RunConfig, args: argparse.Namespace, seeds: tuple[int, ...], grid: dict[str, Any]
) -> tuple[RunConfig, dict[str, tuple[Any, Any]]]:
    """The saved run with the options given on this ``--resume`` applied, and the changes
    (option -> (old, new)). An option that may not change between segments (shapes, the
    method's structure, episodes, seeds) is an error naming it, unless it repeats the saved value.
    A ``--preset``'s values are defaults, which a resumed run's own settings replace."""
    saved_values = _saved_values(saved)
    # a preset sets defaults only; the sinks are this segment's host output, not the run's settings
    not_settings = ("out", "resume", "preset", "previous_checkpoint", *SINK_OPTIONS, *DEVICE_OPTIONS)
    given = {d for d in args.given if d not in not_settings}
    hparams = {option_dest(f): f.name for f in saved.method.settings()["hparams"]}
    foreign = sorted(d for d in given if d in METHOD_OPTIONS and d not in saved_values)
    if foreign:
        raise ValueError(f"{option_flags(foreign)} are not settings of the run's method {saved.algo}")
    requested = {"seeds": list(seeds), "sweep": list(grid.items())}
    changes = {
        d: (saved_values[d], requested.get(d, getattr(args, d)))
        for d in sorted(given)
        if requested.get(d, getattr(args, d)) != saved_values[d]
    }
    fixed = [d for d in changes if d not in RESUMABLE and d not in hparams]
    if fixed:
        shown = ", ".join(f"{option_flags([d])[0]} ({changes[d][0]} -> {changes[d][1]})" for d in fixed)
        raise ValueError(
            f"--resume cannot change {shown}: it fixes the run's shapes or compiled program; "
            "train into a new directory instead"
        )
    new = {d: v for d, (_, v) in changes.items()}
    env_params = dict(saved.env_params)
    if "ues" in new:
        env_params |= {"n_min": min(new["ues"]), "n_max": max(new["ues"])}
    env_params |= {k: new[k] for k in ("p_arrival", "tbler", "churn") if k in new}
    env_params |= REWARD_PRESETS[new["reward"]] if "reward" in new else {}
    config = dataclasses.replace(
        saved,
        algorithm={**saved.algorithm, **({"updates": new["updates"]} if "updates" in new else {})},
        hparams={**saved.hparams, **{hparams[d]: v for d, v in new.items() if d in hparams}},
        env_params=env_params,
        **{k: new[k] for k in ("chunk", "eval_every", "eval_episodes", "greedy") if k in new},
        **({"stop_if": tuple(new["stop_if"])} if "stop_if" in new else {}),
        **({"eval_ues": tuple(new["eval_ues"])} if "eval_ues" in new else {}),
    )
    return config, changes
