"""Training speed of jaxmac's compiled PPO loop, and its PPO update against PyTorch.

Environment: the default ``UDTSEnv`` (max_ues 8, 24-TTI episodes), UE counts drawn in 2-5.

Part 1, end to end (``--episodes``, default 256 1024 4096): one PPO update (``Trainer.rollout``
of one episode per parallel episode, then ``Trainer.learn``: GAE and ``--epochs`` x
``--minibatches`` PPO steps) of ``mappo`` and of ``llm4mac`` (``--e2e-model``, untrained),
each jitted on its own, and one Sym. MADDPG update (``MADDPG.update``: the rollout into its
replay buffer, then its 8 gradient steps of 512 transitions): compile time apart (the
rollout's and the update's; the init program's is ``init_compile_s`` in the JSON), then the
best of ``--repeats`` updates. env-steps/s = episodes x 24 / (rollout + update seconds).
``distinct`` is the fraction of the active agents' prompts of one PPO minibatch that are
distinct (UE / BS), i.e. the share of prompts the deduplicated update computes.

Part 2, the update against PyTorch (``--models``, default tiny flan-t5-small): batches of
``--batch-episodes`` (1024) episodes collected by two behaviour policies,

* ``untrained``: the untrained tiny LLM4MAC policy (``Trainer.rollout``);
* ``near-deterministic``: ``contention_free``'s decisions (what a policy that imitates the
  Baseline sees and chooses; their log-probabilities and values come from the model),

one PPO minibatch of ``--sample`` transitions drawn from the batch (default: the real
minibatch, episodes x 24 / minibatches; smaller for the larger shape, ``--small-sample``), on
which jaxmac takes one PPO step (``Trainer.ppo_step``: dedup forward and backward) and PyTorch
takes the same step written the way the authors' Lamorel code does it (``torch_ppo.TorchPPO``:
transformers' T5 with the same weights, active agents only, encode once, decode each candidate,
passes of 8 transitions padded to their longest prompt) on the first ``--torch-sample``
transitions of the same minibatch (PyTorch's cost per transition does not depend on the
minibatch). Cost per transition = step seconds / transitions. ``jax/torch`` is the speed-up.

Part 3, cost that follows distinct prompts: ``Trainer.learn`` (``--epochs`` x ``--minibatches``)
of the tiny model on near-deterministic batches of each ``--episodes`` count, as seconds per
transition and epoch.

    python experiments/bench_train.py --out results/bench_train.json            # this CPU
    python experiments/bench_train.py --device --out results/bench_train_gpu.json  # a GPU

``--device`` selects the accelerator settings: flan-t5-base (random weights of its shape,
computing in bfloat16) in parts 1 and 3 at 1024 and 4096 episodes; part 2 (PyTorch on the CPU)
is skipped. Costs are per PPO epoch (``--epochs``, default 1): more epochs multiply the update.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmac.agents import Choices, LLMAgent
from jaxmac.algorithms import (
    MADDPG,
    Batch,
    HParams,
    MADDPGConfig,
    MADDPGHParams,
    PPOConfig,
    Trainer,
    Transition,
    optimizer,
    training_batch,
)
from jaxmac.algorithms.rollout import rollout
from jaxmac.env import UDTSEnv
from jaxmac.models.dedup import distinct_keys, group_rows
from jaxmac.protocols import make_protocol
from jaxmac.training import make_agent

ENV = UDTSEnv()
T = ENV.episode_len


def hparams() -> HParams:
    return HParams(env=ENV.default_params.replace(n_min=2, n_max=5))


def trainer(
    algo: str, model: str, episodes: int, epochs: int, minibatches: int, dtype: str = "float32"
) -> Trainer:
    llm = {"model": model, "pretrained": False, "dtype": dtype}
    options = llm if algo == "llm4mac" else {"hidden": 128}
    agent = make_agent(algo, ENV, **options)
    return Trainer(agent, PPOConfig(num_envs=episodes, epochs=epochs, minibatches=minibatches))


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def compiled(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = jax.jit(fn).lower(*args).compile()
    return out, time.perf_counter() - start


def minibatch(batch: Batch, size: int, seed: int = 0) -> Batch:
    """``size`` transitions drawn without replacement (a PPO minibatch)."""
    pick = np.random.default_rng(seed).permutation(len(batch.log_prob))[:size]
    return jax.tree.map(lambda x: x[pick], batch)


def distinct_fraction(agent: Any, batch: Batch) -> dict[str, float]:
    """Distinct / active prompts of each agent group in ``batch`` (padded slots excluded)."""
    prompts = jax.jit(jax.vmap(agent.compiler))(batch.obs)
    valid = batch.obs.active.reshape(-1)
    active = int(valid.sum())
    out = {}
    for group in ("ue", "bs"):
        ids, mask = getattr(prompts, f"{group}_ids"), getattr(prompts, f"{group}_mask")
        keys = distinct_keys(ids.reshape(-1, ids.shape[-1]), mask.reshape(-1, mask.shape[-1]), valid)
        groups = int(jax.jit(group_rows)(keys)[2]) - int(active < valid.size)  # minus the padded group
        out[group] = groups / max(active, 1)
    return out


def scripted_transitions(tr: Trainer, params: Any, hp: HParams, key: jax.Array) -> Transition:
    """One rollout of ``contention_free`` over ``tr``'s episodes: its observations and choices,
    their joint log-probabilities and values under ``tr``'s agent and ``params``."""
    env, e = tr.agent.env, tr.config.num_envs
    policy = jax.vmap(make_protocol("contention_free", env), in_axes=(0, 0, 0, None))

    def run(params: Any, key: jax.Array) -> Transition:
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, e), hp.env)

        def tti(carry: tuple, key: jax.Array) -> tuple[tuple, tuple]:
            obs, state = carry
            act_key, step_key = jax.random.split(key)
            action = policy(jax.random.split(act_key, e), obs, state, hp.env)
            next_obs, state, reward, done, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(step_key, e), state, action, hp.env
            )
            choices = Choices(ue=action.ue * env.ucm_vocab + action.ucm, bs=action.dcm)
            return (next_obs, state), (obs, choices, reward, done)

        _, (obs, choices, reward, done) = jax.lax.scan(tti, (obs, state), jax.random.split(key, T))
        flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), (obs, choices))
        out = tr.agent(params, flat[0])
        log_prob = out.policy.log_prob(flat[1]).reshape(T, e)
        return Transition(
            obs=obs,
            sample=choices,
            log_prob=log_prob,
            value=out.value.reshape(T, e),
            reward=reward,
            done=done,
        )

    return jax.jit(run)(params, key)


def untrained_transitions(tr: Trainer, hp: HParams, key: jax.Array) -> tuple[Transition, Any]:
    state = jax.jit(tr.init)(key, hp)
    _, transitions, _, last_value = jax.jit(tr.rollout)(state, hp)
    return transitions, last_value


# ------------------------------------------------------------------------------------ part 1
class Setup:
    """One trainer with its compiled rollout and learn (shared by parts 1 and 3)."""

    def __init__(self, algo: str, model: str, episodes: int, args: argparse.Namespace) -> None:
        self.trainer = trainer(algo, model, episodes, args.epochs, args.minibatches, args.dtype)
        self.hp = hparams()
        key = jax.random.PRNGKey(0)
        init, self.init_compile_s = compiled(self.trainer.init, key, self.hp)
        self.state = init(key, self.hp)
        self.rollout, rollout_s = compiled(self.trainer.rollout, self.state, self.hp)
        _, transitions, _, last_value = self.rollout(self.state, self.hp)
        self.learn, learn_s = compiled(self.trainer.learn, self.state, transitions, last_value, self.hp)
        self.compile_s = rollout_s + learn_s


def end_to_end(setup: Setup, args: argparse.Namespace) -> dict:
    tr, hp, state = setup.trainer, setup.hp, setup.state
    rollout_s, update_s = [], []
    for _ in range(args.repeats):
        (state, transitions, _, last_value), seconds = timed(setup.rollout, state, hp)
        rollout_s.append(seconds)
        (state, _), seconds = timed(setup.learn, state, transitions, last_value, hp)
        update_s.append(seconds)
    episodes = tr.config.num_envs
    llm = isinstance(tr.agent, LLMAgent)
    row = {
        "part": "end_to_end",
        "algo": "llm4mac" if llm else "mappo",
        "model": tr.agent.model if llm else "mlp-128",
        "dtype": args.dtype if llm else "float32",
        "episodes": episodes,
        "epochs": args.epochs,
        "minibatches": args.minibatches,
        "init_compile_s": setup.init_compile_s,
        "compile_s": setup.compile_s,
        "rollout_s": min(rollout_s),
        "update_s": min(update_s),
    }
    row["env_steps_per_s"] = episodes * T / (row["rollout_s"] + row["update_s"])
    if llm:
        batch = training_batch(transitions, last_value, hp)
        row["distinct"] = distinct_fraction(
            tr.agent, minibatch(batch, len(batch.log_prob) // args.minibatches)
        )
    return row


def maddpg_end_to_end(episodes: int, args: argparse.Namespace) -> dict:
    """Sym. MADDPG with its defaults (hidden 64, 8 gradient steps of 512 transitions per update,
    a 500k-transition buffer): one update is a rollout into the buffer and the gradient steps.
    ``update_s`` is the whole update's best time less the rollout's (timed apart)."""
    agent = make_agent("maddpg", ENV)
    algorithm = MADDPG(agent, MADDPGConfig(num_envs=episodes))
    hp = MADDPGHParams(env=hparams().env)
    state = jax.jit(algorithm.init)(jax.random.PRNGKey(0), hp)

    def collect(state: Any) -> Any:
        return rollout(agent, state.params, hp.env, state.env_state, state.obs, state.key, T)

    collect_fn, collect_s = compiled(collect, state)
    update, update_s = compiled(algorithm.update, state, hp)
    rollout_s, whole_s = [], []
    for _ in range(args.repeats + 1):  # the first fills the buffer past one rollout
        rollout_s.append(timed(collect_fn, state)[1])
        (state, _), seconds = timed(update, state, hp)
        whole_s.append(seconds)
    row = {
        "part": "end_to_end",
        "algo": "maddpg",
        "model": f"mlp-{agent.hidden}",
        "dtype": "float32",
        "episodes": episodes,
        "train_steps": algorithm.config.train_steps,
        "batch_size": algorithm.config.batch_size,
        "compile_s": collect_s + update_s,
        "rollout_s": min(rollout_s[1:]),
        "update_s": min(whole_s[1:]) - min(rollout_s[1:]),
    }
    row["env_steps_per_s"] = episodes * T / min(whole_s[1:])
    return row


# ------------------------------------------------------------------------------------ part 2
def behaviour_batches(args: argparse.Namespace) -> dict[str, Batch]:
    """The two behaviour policies' flattened batches of ``--batch-episodes`` episodes (tiny model)."""
    tr = trainer("llm4mac", "tiny", args.batch_episodes, 1, 1)
    hp = hparams()
    params = tr.agent.init(jax.random.PRNGKey(0))
    untrained, last_value = untrained_transitions(tr, hp, jax.random.PRNGKey(0))
    scripted = scripted_transitions(tr, params, hp, jax.random.PRNGKey(1))
    zeros = jnp.zeros(args.batch_episodes)
    return {
        "untrained": training_batch(untrained, last_value, hp),
        "near-deterministic": training_batch(scripted, zeros, hp),
    }


def update_vs_torch(
    model: str, policy: str, batch: Batch, sample: int, args: argparse.Namespace, steps: dict
) -> dict:
    """``steps`` memoises the compiled jaxmac step per (model, sample)."""
    import torch
    from torch_ppo import TorchBatch, TorchPPO, build_torch

    tr = trainer("llm4mac", model, 8, 1, 1)
    hp = hparams()
    params = tr.agent.init(jax.random.PRNGKey(0))
    opt_state = optimizer(hp).init(params)
    mb = minibatch(batch, sample)
    if (model, sample) not in steps:
        steps[(model, sample)] = compiled(tr.ppo_step, params, opt_state, mb, hp)
    step, compile_s = steps[(model, sample)]
    jax_s = min(timed(step, params, opt_state, mb, hp)[1] for _ in range(args.repeats))

    torch.set_num_threads(os.cpu_count() or 1)
    t5, head = build_torch(tr.agent.cfg, jax.device_get(params))
    candidates = {
        g: (np.asarray(getattr(tr.agent.candidates, g).ids), np.asarray(getattr(tr.agent.candidates, g).mask))
        for g in ("ue", "bs")
    }
    reference = TorchPPO(
        t5,
        head,
        candidates,
        *(float(getattr(hp, n)) for n in ("lr", "clip_eps", "vf_coef", "ent_coef")),
        float(hp.kl_coef),
        float(hp.max_grad_norm),
    )
    n_torch = min(args.torch_sample if model == "tiny" else args.torch_small_sample, sample)
    head_mb = jax.tree.map(lambda x: x[:n_torch], mb)
    torch_batch = TorchBatch.from_jaxmac(head_mb, jax.jit(jax.vmap(tr.agent.compiler))(head_mb.obs))
    reference.update(torch_batch)  # warm-up
    torch_s = min(timed(reference.update, torch_batch)[1] for _ in range(args.repeats))
    row = {
        "part": "update_vs_torch",
        "model": model,
        "policy": policy,
        "transitions": sample,
        "torch_transitions": n_torch,
        "distinct": distinct_fraction(tr.agent, mb),
        "jax_compile_s": compile_s,
        "jax_ms_per_transition": 1e3 * jax_s / sample,
        "torch_ms_per_transition": 1e3 * torch_s / n_torch,
    }
    row["jax_vs_torch"] = row["torch_ms_per_transition"] / row["jax_ms_per_transition"]
    return row


# ------------------------------------------------------------------------------------ part 3
def cost_per_transition(setup: Setup, args: argparse.Namespace) -> dict:
    tr, hp, state = setup.trainer, setup.hp, setup.state
    episodes = tr.config.num_envs
    transitions = scripted_transitions(tr, state.params, hp, jax.random.PRNGKey(1))
    zeros = jnp.zeros(episodes)
    seconds = min(timed(setup.learn, state, transitions, zeros, hp)[1] for _ in range(args.repeats))
    steps = episodes * T
    mb = minibatch(training_batch(transitions, zeros, hp), steps // args.minibatches)
    return {
        "part": "cost_per_transition",
        "model": args.e2e_model,
        "policy": "near-deterministic",
        "episodes": episodes,
        "epochs": args.epochs,
        "minibatches": args.minibatches,
        "update_s": seconds,
        "us_per_transition_epoch": 1e6 * seconds / (steps * args.epochs),
        "distinct": distinct_fraction(tr.agent, mb),
    }


def _pct(d: dict[str, float]) -> str:
    return f"{100 * d['ue']:.1f}% / {100 * d['bs']:.1f}%"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", action="store_true", help="accelerator settings (see above)")
    parser.add_argument("--episodes", type=int, nargs="+", default=None)
    parser.add_argument("--e2e-model", default=None, help="llm4mac model of part 1 (CPU: tiny)")
    parser.add_argument("--models", nargs="+", default=["tiny", "flan-t5-small"], help="part 2 shapes")
    parser.add_argument("--epochs", type=int, default=1, help="PPO epochs of parts 1 and 3")
    parser.add_argument(
        "--dtype", default=None, help="T5 compute dtype of parts 1 and 3 (CPU float32, --device bfloat16)"
    )
    parser.add_argument("--minibatches", type=int, default=4)
    parser.add_argument("--batch-episodes", type=int, default=1024)
    parser.add_argument("--small-sample", type=int, default=128, help="part 2 minibatch of flan-t5 shapes")
    parser.add_argument(
        "--policies", nargs="+", default=["untrained", "near-deterministic"], help="part 2 behaviour policies"
    )
    parser.add_argument("--torch-sample", type=int, default=256, help="PyTorch's transitions, tiny")
    parser.add_argument("--torch-small-sample", type=int, default=16, help="PyTorch's transitions, larger")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs after the compile (best is kept)")
    parser.add_argument("--parts", nargs="+", default=None, help="CPU: 1 2 3, --device: 1 3 (no PyTorch)")
    parser.add_argument(
        "--algos", nargs="+", default=["mappo", "maddpg", "llm4mac"], help="part 1's learners"
    )
    parser.add_argument("--out", type=Path, default=Path("results/bench_train.json"))
    args = parser.parse_args(argv)
    args.episodes = args.episodes or ([1024, 4096] if args.device else [256, 1024, 4096])
    args.e2e_model = args.e2e_model or ("flan-t5-base" if args.device else "tiny")
    args.dtype = args.dtype or ("bfloat16" if args.device else "float32")
    args.parts = args.parts or (["1", "3"] if args.device else ["1", "2", "3"])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    device = jax.devices()[0]
    print(f"jax {jax.__version__}, {device.device_kind} x{jax.device_count()}, {os.cpu_count()} cores")
    meta = {"jax": jax.__version__, "device": device.device_kind, "cores": os.cpu_count()}
    rows: list[dict] = []
    setups: dict[tuple[str, int], Setup] = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def keep(row: dict) -> None:
        """Adds a row and rewrites the JSON, so a run stopped at a time limit keeps what it measured."""
        rows.append(row)
        args.out.write_text(
            json.dumps({**meta, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1)
        )

    if "1" in args.parts:
        print(f"\nend to end: one update (rollout + {args.epochs} epoch(s) x {args.minibatches} minibatches)")
        print(
            f"{'algo':>8} {'model':>13} {'episodes':>8} {'compile s':>9} {'rollout s':>9} "
            f"{'update s':>8} {'env-steps/s':>11}  distinct UE / BS"
        )
        for episodes in args.episodes:
            for algo in args.algos:
                if algo == "maddpg":
                    r = maddpg_end_to_end(episodes, args)
                else:
                    setup = setups[(algo, episodes)] = Setup(algo, args.e2e_model, episodes, args)
                    r = end_to_end(setup, args)
                keep(r)
                distinct = _pct(r["distinct"]) if "distinct" in r else ""
                print(
                    f"{r['algo']:>8} {r['model']:>13} {episodes:>8} {r['compile_s']:>9.1f} "
                    f"{r['rollout_s']:>9.2f} {r['update_s']:>8.2f} {r['env_steps_per_s']:>11.0f}  {distinct}",
                    flush=True,
                )

    if "2" in args.parts:
        print(f"\nPPO step vs PyTorch (Lamorel's way), batches of {args.batch_episodes} episodes")
        print(
            f"{'model':>13} {'policy':>18} {'minibatch':>9} {'torch n':>7} {'distinct UE / BS':>17} "
            f"{'jax ms/tr':>9} {'torch ms/tr':>11} {'jax/torch':>9}"
        )
        batches = behaviour_batches(args)
        steps: dict = {}
        real = args.batch_episodes * T // args.minibatches
        for model in args.models:
            for policy, batch in ((p, batches[p]) for p in args.policies):
                sample = real if model == "tiny" else min(args.small_sample, real)
                r = update_vs_torch(model, policy, batch, sample, args, steps)
                keep(r)
                print(
                    f"{model:>13} {policy:>18} {sample:>9} {r['torch_transitions']:>7} "
                    f"{_pct(r['distinct']):>17} {r['jax_ms_per_transition']:>9.3f} "
                    f"{r['torch_ms_per_transition']:>11.2f} {r['jax_vs_torch']:>9.1f}",
                    flush=True,
                )

    if "3" in args.parts:
        print(f"\nupdate cost per transition, near-deterministic batches ({args.epochs} epoch(s))")
        print(f"{'episodes':>8} {'update s':>8} {'us/transition':>13}  distinct UE / BS")
        for episodes in args.episodes:
            key = ("llm4mac", episodes)
            setup = setups[key] if key in setups else Setup("llm4mac", args.e2e_model, episodes, args)
            r = cost_per_transition(setup, args)
            keep(r)
            print(
                f"{episodes:>8} {r['update_s']:>8.2f} {r['us_per_transition_epoch']:>13.1f}  "
                f"{_pct(r['distinct'])}",
                flush=True,
            )

    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
