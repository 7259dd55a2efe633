"""Command-line options shared by the subcommands: the environment and UE-count ranges."""

from __future__ import annotations

import argparse

from jaxmac.env import REWARD_PRESETS, EnvParams, UDTSEnv


def parse_ues(text: str) -> list[int]:
    """``"1-8"`` -> [1, ..., 8]; ``"2,4,8"`` -> [2, 4, 8]; ``"3"`` -> [3]."""
    counts: list[int] = []
    try:
        for part in text.split(","):
            lo, dash, hi = part.partition("-")
            lo_n, hi_n = int(lo), int(hi if dash else lo)
            if lo_n > hi_n:
                raise ValueError
            counts.extend(range(lo_n, hi_n + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a count, a range LO-HI or a comma list like 1-4,8; got {text!r}"
        ) from None
    return counts


def add_env_options(parser: argparse.ArgumentParser) -> None:
    defaults = UDTSEnv()
    params = EnvParams()
    group = parser.add_argument_group("environment (docs/SPEC.md §1.1)")
    group.add_argument("--max-ues", type=int, default=defaults.max_ues, help="padded UE dimension")
    group.add_argument("--buffer-size", type=int, default=defaults.buffer_size, help="FIFO capacity B")
    group.add_argument("--episode-len", type=int, default=defaults.episode_len, help="TTIs per episode T")
    group.add_argument("--history", type=int, default=defaults.history, help="past TTIs observed k")
    group.add_argument("--ucm-vocab", type=int, default=defaults.ucm_vocab)
    group.add_argument("--dcm-vocab", type=int, default=defaults.dcm_vocab)
    group.add_argument("--p-arrival", type=float, default=float(params.p_arrival))
    group.add_argument("--tbler", type=float, default=float(params.tbler))
    group.add_argument("--churn", type=float, default=float(params.churn))
    group.add_argument("--reward", choices=sorted(REWARD_PRESETS), default="llm4mac", help="reward preset")


def env_from_options(args: argparse.Namespace) -> tuple[UDTSEnv, EnvParams]:
    env = UDTSEnv(
        max_ues=args.max_ues,
        buffer_size=args.buffer_size,
        episode_len=args.episode_len,
        ucm_vocab=args.ucm_vocab,
        dcm_vocab=args.dcm_vocab,
        history=args.history,
    )
    params = env.default_params.replace(p_arrival=args.p_arrival, tbler=args.tbler, churn=args.churn)
    return env, params.with_reward_preset(args.reward)
