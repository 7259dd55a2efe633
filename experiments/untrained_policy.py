"""How much an untrained LLM4MAC policy depends on its prompt.

Draws a tiny LLM4MAC agent per ``--head-scale`` (``LLMAgent.head_scale``: a drawn LM head is
N(0, head_scale^2 / d_model)), runs ``--episodes`` episodes of the ``random`` policy for
``--ttis`` TTIs (2-5 UEs, so the prompts show varied buffers, actions and messages) and prints,
per agent group, each candidate's probability averaged over the active agents' prompts and its
standard deviation across them. A policy whose probabilities hardly vary across prompts gives
PPO almost no state-dependent gradient to start from.

    python experiments/untrained_policy.py --head-scale 1.0 0.1 [--no-sie]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from jaxmac.env import UDTSEnv
from jaxmac.protocols import make_protocol
from jaxmac.training import make_agent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--head-scale", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--ttis", type=int, default=6)
    parser.add_argument("--no-sie", action="store_true", help="the Abl. SIE prompts (bare numbers)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("episodes", "ttis"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be an integer >= 1, got {getattr(args, name)}")

    env = UDTSEnv()
    params = env.default_params.replace(n_min=2, n_max=5)
    behaviour = make_protocol("random", env)

    def episode(key: jax.Array) -> object:
        obs, state = env.reset(key, params)
        for t in range(args.ttis):
            action = behaviour(jax.random.fold_in(key, 2 * t), obs, state, params)
            obs, state, *_ = env.step(jax.random.fold_in(key, 2 * t + 1), state, action, params)
        return obs

    obs = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(args.seed), args.episodes))
    for scale in args.head_scale:
        agent = make_agent("llm4mac", env, value_hidden=16, head_scale=scale, sie=not args.no_sie)
        policy = jax.jit(agent)(jax.jit(agent.init)(jax.random.PRNGKey(args.seed)), obs).policy
        for group, log_probs, texts in (
            ("ue", policy.ue_log_probs, agent.compiler.template.ue_candidates),
            ("bs", policy.bs_log_probs, agent.compiler.template.bs_candidates),
        ):
            probs = jnp.exp(log_probs)[obs.active]  # (active prompts, C)
            print(f"head_scale {scale}, {group} prompts ({probs.shape[0]} active):")
            for text, mean, std in zip(texts, probs.mean(0), probs.std(0), strict=True):
                print(f"  {text:28s} mean {float(mean):.3f}  std across prompts {float(std):.4f}")


if __name__ == "__main__":
    main()
