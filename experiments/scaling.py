"""How jaxmac's cost grows with the number of UEs and of parallel episodes.

Cost per agent-step: seconds / (episodes x TTIs x agents), agents = active UEs + the BS (the
UE count of each episode drawn uniformly in 1..max_ues, so about (max_ues + 1) / 2 + 1
agents). Three parts, each jitted on its own, compile excluded (reported), best of
``--repeats``:

* ``env``: ``UDTSEnv`` reset and 24 steps under ``contention_free`` (the environment alone);
* ``mappo``: one PPO update of Sym. MAPPO (``Trainer.rollout`` of one episode per parallel
  episode, then ``Trainer.learn``: GAE, 1 epoch x 2 minibatches; hidden 64);
* ``llm4mac``: the same for the tiny LLM4MAC (rollout and update timed apart; untrained);
* ``llm4mac-dec``: the same with ``--bs-target decoder``: one BS prompt per TTI, the target UE
  named on the decoder side (the remedy for the BS prompts' quadratic growth).

Two sweeps: ``max_ues`` 8 -> 16 -> 64 -> 256 (``--ues``; LLM4MAC 8 -> 16 -> 32,
``--llm-ues``: its 64-UE point took over 10 minutes here; ``--llm-dec-ues`` for the remedy)
at each part's ``EPISODES`` (the same at every max_ues), and episodes 1k -> 64k
(``--episode-sweep``) at max_ues 8 for the environment (MAPPO up to ``MAPPO_MAX_EPISODES``).
The growth exponent of a part is the slope of log cost per agent-step against log max_ues
between consecutive points (0: linear total cost in the agents; 1: each agent's cost grows
with the UE count, quadratic in total).

    python experiments/scaling.py --out results/scaling.json --plot results/scaling.png
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from env_rollout import make_rollout

from jaxmac.algorithms import HParams, PPOConfig, Trainer
from jaxmac.env import UDTSEnv
from jaxmac.training import make_agent

#: Episodes of each part's max_ues sweep: the same at every max_ues, since a part's cost per
#: agent-step also depends on the episodes (LLM4MAC's shared prompts, small-batch overheads).
EPISODES = {"env": 1024, "mappo": 128, "llm4mac": 8, "llm4mac-dec": 8}
#: The language parts: LLM4MAC's options besides the untrained tiny model.
LLM_PARTS = {"llm4mac": {}, "llm4mac-dec": {"bs_target": "decoder"}}
#: Most episodes of MAPPO's episode sweep (its 64k point alone would take minutes here).
MAPPO_MAX_EPISODES = 16384


def best_of(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def env_part(env: UDTSEnv, episodes: int, repeats: int) -> dict[str, float]:
    """Seconds of ``episodes`` whole episodes of ``contention_free`` and their agent-steps."""
    keys = jax.random.split(jax.random.PRNGKey(0), episodes)
    start = time.perf_counter()
    run = make_rollout(env, "contention_free", env.episode_len).lower(keys).compile()
    compile_s = time.perf_counter() - start
    agent_steps = int(run(keys)[0]) + episodes * env.episode_len  # the UEs', then the BS's
    return {
        "compile_s": compile_s,
        "seconds": best_of(lambda: run(keys), repeats),
        "agent_steps": agent_steps,
    }


def ppo_part(part: str, env: UDTSEnv, episodes: int, repeats: int) -> dict[str, float]:
    """Seconds of one PPO update's rollout and learning step, and the rollout's agent-steps."""
    if part in LLM_PARTS:
        agent = make_agent("llm4mac", env, model="tiny", pretrained=False, **LLM_PARTS[part])
    else:
        agent = make_agent(part, env, hidden=64)
    trainer = Trainer(agent, PPOConfig(num_envs=episodes, epochs=1, minibatches=2))
    hp = HParams(env=env.default_params.replace(n_min=1, n_max=env.max_ues))
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), hp)
    start = time.perf_counter()
    rollout = jax.jit(trainer.rollout).lower(state, hp).compile()
    _, transitions, _, last_value = rollout(state, hp)
    learn = jax.jit(trainer.learn).lower(state, transitions, last_value, hp).compile()
    compile_s = time.perf_counter() - start
    agent_steps = int(np.sum(np.asarray(transitions.obs.active)) + transitions.obs.active.shape[0] * episodes)
    return {
        "compile_s": compile_s,
        "rollout_s": best_of(lambda: rollout(state, hp), repeats),
        "update_s": best_of(lambda: learn(state, transitions, last_value, hp), repeats),
        "agent_steps": agent_steps,
    }


def measure(part: str, max_ues: int, episodes: int, repeats: int) -> dict[str, Any]:
    env = UDTSEnv(max_ues=max_ues)
    row: dict[str, Any] = {"part": part, "max_ues": max_ues, "episodes": episodes}
    if part == "env":
        row |= env_part(env, episodes, repeats)
    else:
        row |= ppo_part(part, env, episodes, repeats)
        row["seconds"] = row["rollout_s"] + row["update_s"]
    row["us_per_agent_step"] = 1e6 * row["seconds"] / row["agent_steps"]
    if part in LLM_PARTS:
        for phase in ("rollout", "update"):
            row[f"{phase}_us_per_agent_step"] = 1e6 * row[f"{phase}_s"] / row["agent_steps"]
    return row


def exponents(rows: list[dict], key: str = "us_per_agent_step") -> dict[str, list[float]]:
    """Per part: the slope of log(``key``) against log(max_ues) between consecutive points."""
    out: dict[str, list[float]] = {}
    for part in dict.fromkeys(r["part"] for r in rows):
        points = sorted((r["max_ues"], r[key]) for r in rows if r["part"] == part and key in r)
        out[part] = [
            math.log(c1 / c0) / math.log(m1 / m0)
            for (m0, c0), (m1, c1) in zip(points, points[1:], strict=False)
        ]
    return out


def plot(ue_rows: list[dict], episode_rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if episode_rows else 1  # the episode sweep's panel only when it was run
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    axes = axes[0]
    series = [(p, "us_per_agent_step") for p in ("env", "mappo")]
    series += [(p, f"{phase}_us_per_agent_step") for p in LLM_PARTS for phase in ("rollout", "update")]
    for part, key in series:
        points = sorted((r["max_ues"], r[key]) for r in ue_rows if r["part"] == part and key in r)
        if points:
            label = part if key == "us_per_agent_step" else f"{part} {key.split('_')[0]}"
            axes[0].loglog(*zip(*points, strict=True), "o-", label=label)
    axes[0].set(xlabel="max_ues (UE count drawn in 1..max_ues)", ylabel="µs per agent-step")
    axes[0].set_title("cost per agent-step as the UEs grow")
    for part in ("env", "mappo") if episode_rows else ():
        points = sorted((r["episodes"], r["us_per_agent_step"]) for r in episode_rows if r["part"] == part)
        if points:
            axes[1].loglog(*zip(*points, strict=True), "o-", label=part)
        axes[1].set(xlabel="parallel episodes (max_ues 8)", ylabel="µs per agent-step")
        axes[1].set_title("cost per agent-step as the episodes grow")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--parts", default="env,mappo,llm4mac,llm4mac-dec", help="comma list of " + ", ".join(EPISODES)
    )
    parser.add_argument("--ues", default="8,16,64,256", help="max_ues values of the UE sweep")
    parser.add_argument("--llm-ues", default="8,16,32", help="max_ues values for llm4mac (costliest)")
    parser.add_argument("--llm-dec-ues", default="8,16,32,64", help="max_ues values for llm4mac-dec")
    parser.add_argument(
        "--llm-episodes", type=int, default=EPISODES["llm4mac"], help="episodes of both language parts"
    )
    parser.add_argument(
        "--episode-sweep", default="1024,4096,16384,65536", help="episodes at max_ues 8 ('' to skip)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the cost growth")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    unknown = [p for p in parts if p not in EPISODES]
    if unknown:
        parser.error(f"--parts: unknown {unknown}, allowed: {', '.join(EPISODES)}")
    if args.llm_episodes < 1:
        parser.error(f"--llm-episodes must be >= 1, got {args.llm_episodes}")
    ue_rows, episode_rows = [], []
    counts = {"llm4mac": args.llm_ues, "llm4mac-dec": args.llm_dec_ues}
    print(f"{'part':11} {'max_ues':>7} {'episodes':>8} {'compile s':>9} {'run s':>8} {'µs/agent-step':>13}")
    for part in parts:
        for max_ues in (int(n) for n in counts.get(part, args.ues).split(",")):
            episodes = args.llm_episodes if part in LLM_PARTS else EPISODES[part]
            row = measure(part, max_ues, episodes, args.repeats)
            ue_rows.append(row)
            print(
                f"{part:11} {max_ues:7d} {row['episodes']:8d} {row['compile_s']:9.1f} {row['seconds']:8.3f} "
                f"{row['us_per_agent_step']:13.4g}",
                flush=True,
            )
    for part in (p for p in parts if p not in LLM_PARTS):
        sweep = [int(n) for n in args.episode_sweep.split(",") if n]
        for episodes in (e for e in sweep if part == "env" or e <= MAPPO_MAX_EPISODES):
            row = measure(part, 8, episodes, args.repeats)
            episode_rows.append(row)
            print(
                f"{part:11} {8:7d} {episodes:8d} {row['compile_s']:9.1f} {row['seconds']:8.3f} "
                f"{row['us_per_agent_step']:13.4g}",
                flush=True,
            )
    growth = exponents(ue_rows)
    for part in (p for p in parts if p in LLM_PARTS):
        for phase in ("rollout", "update"):
            growth[f"{part} {phase}"] = exponents(ue_rows, f"{phase}_us_per_agent_step")[part]
    print("\ngrowth exponent of the cost per agent-step in max_ues, between consecutive points:")
    for part, slopes in growth.items():
        print(f"  {part:20} " + "  ".join(f"{s:+.2f}" for s in slopes))
    result = {"device": jax.devices()[0].device_kind, "ue_sweep": ue_rows, "episode_sweep": episode_rows}
    result["growth_exponents"] = growth
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    if args.plot:
        plot(ue_rows, episode_rows, args.plot)


if __name__ == "__main__":
    main()
