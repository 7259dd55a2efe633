"""Decisions per second of the jaxmac actor against transformers' PyTorch T5 scoring Lamorel's way.

A decision is one prompt with all its candidates scored (a UE: 6 candidates, the BS: 3).
The workload is a rollout: 1000 episodes with n = 5 active UEs (max_ues 8) playing
contention_free for 24 TTIs, 10 decisions per episode and TTI; every TTI's prompts are two
batches of 5,000 (the UEs' own, the BS's), each with its own static length and candidates.
Both models get the same random weights (a transformers T5 of the named shape, saved and
loaded into jaxmac) and the same token ids (the built-in word tokenizer).

* PyTorch (the reference): Lamorel's scoring (``torch_ppo.torch_scores``): encode each prompt
  once, repeat the encoder states per candidate, run the decoder over the candidates, sum their
  token log-probs; no gradients, minibatches of ``--torch-batch`` prompts padded to their
  longest prompt.
* jaxmac without dedup: one jitted call per batch over prompts padded to the static length.
* jaxmac with dedup: the same call computing only the distinct prompts (``dedup_chunk``).

Without dedup the cost of a decision does not depend on the batch's content, so PyTorch and
jaxmac-without-dedup are timed on ``--subset`` prompts drawn from all TTIs; jaxmac with
dedup is timed on all 24 batches of the rollout, the very thing the dedup is for.

    python experiments/bench_actor.py --out results/bench_actor.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers
from flax import nnx
from torch_ppo import torch_scores

from jaxmac.env import UDTSEnv
from jaxmac.language import AGENTS, PromptCompiler, Prompts, PromptTemplate, prompt_tokenizer
from jaxmac.models import (
    CONFIGS,
    Candidates,
    CandidateTrie,
    LanguageActorCritic,
    act,
    load_pretrained_t5,
    tiny_config,
)
from jaxmac.protocols import make_protocol

N_UES, EPISODES, TTIS = 5, 1000, 24


def rollout_prompts(env: UDTSEnv, compiler: PromptCompiler) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per agent group: ids and masks (TTIS, EPISODES * n, L) of the active agents' prompts."""
    params = env.default_params.replace(n_min=N_UES, n_max=N_UES)
    policy = make_protocol("contention_free", env)

    def episode(key: jax.Array) -> Prompts:
        obs, state = env.reset(key, params)

        def tti(carry: tuple, k: jax.Array) -> tuple[tuple, Prompts]:
            obs, state = carry
            prompts = compiler(obs)
            obs, state, *_ = env.step(k, state, policy(k, obs, state, params), params)
            return (obs, state), prompts

        return jax.lax.scan(tti, (obs, state), jax.random.split(key, TTIS))[1]

    prompts = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(0), EPISODES))  # (E, T, M, L)
    group = lambda x: np.asarray(x)[:, :, :N_UES].transpose(1, 0, 2, 3).reshape(TTIS, -1, x.shape[-1])  # noqa: E731
    return {a: (group(getattr(prompts, f"{a}_ids")), group(getattr(prompts, f"{a}_mask"))) for a in AGENTS}


def best_time(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench(name: str, args: argparse.Namespace) -> dict:
    env = UDTSEnv()
    tokenizer = prompt_tokenizer(env)
    template = PromptTemplate(env)
    compiler = PromptCompiler(template, tokenizer)
    candidates = Candidates.build(template.ue_candidates, template.bs_candidates, tokenizer)
    cfg = tiny_config(tokenizer) if name == "tiny" else CONFIGS[name]
    torch.manual_seed(0)
    reference = transformers.T5ForConditionalGeneration(transformers.T5Config(**cfg.hf_kwargs())).eval()
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(tmp)
        model = LanguageActorCritic(load_pretrained_t5(Path(tmp)), rngs=nnx.Rngs(0))

    groups = rollout_prompts(env, compiler)
    rng = np.random.default_rng(0)
    graph, state = nnx.split(model)
    plain = jax.jit(lambda s, i, m, c: act(nnx.merge(graph, s), i, m, c).log_probs)
    torch.set_num_threads(os.cpu_count())
    torch_s = plain_s = dedup_s = compile_s = 0.0
    total = 0
    for agent, (ids, mask) in groups.items():
        cands = getattr(candidates, agent)
        trie = CandidateTrie.build([cands], start=model.t5.cfg.decoder_start_token_id)
        pick = rng.choice(ids.shape[0] * ids.shape[1], args.subset // 2, replace=False)
        sub_ids, sub_mask = (x.reshape(-1, x.shape[-1])[pick] for x in (ids, mask))
        pair = (np.asarray(cands.ids), np.asarray(cands.mask))
        torch_s += best_time(
            lambda: torch_scores(reference, sub_ids, sub_mask, pair, args.torch_batch),  # noqa: B023
            args.repeats,
        )
        sub = (state, jnp.asarray(sub_ids), jnp.asarray(sub_mask), trie)
        plain(*sub).block_until_ready()
        plain_s += best_time(lambda: plain(*sub).block_until_ready(), args.repeats)  # noqa: B023

        dedup = jax.jit(
            lambda s, i, m, c: act(nnx.merge(graph, s), i, m, c, dedup_chunk=args.chunk).log_probs
        )
        t0 = time.perf_counter()
        dedup(state, jnp.asarray(ids[0]), jnp.asarray(mask[0]), trie).block_until_ready()
        compile_s += time.perf_counter() - t0

        def rollout() -> None:
            for t in range(TTIS):
                dedup(state, jnp.asarray(ids[t]), jnp.asarray(mask[t]), trie).block_until_ready()  # noqa: B023

        dedup_s += best_time(rollout, args.repeats)
        total += ids.shape[0] * ids.shape[1]
    lengths = {a: int(ids.shape[-1]) for a, (ids, _) in groups.items()}
    row = {
        "model": name,
        "static_prompt_len": lengths,
        "torch_decisions_per_s": (args.subset // 2 * 2) / torch_s,
        "jax_decisions_per_s": (args.subset // 2 * 2) / plain_s,
        "jax_dedup_decisions_per_s": total / dedup_s,
        "dedup_compile_s": compile_s,
        "dedup_chunk": args.chunk,
    }
    row["jax_vs_torch"] = row["jax_decisions_per_s"] / row["torch_decisions_per_s"]
    row["jax_dedup_vs_torch"] = row["jax_dedup_decisions_per_s"] / row["torch_decisions_per_s"]
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["tiny", "flan-t5-small"])
    parser.add_argument("--subset", type=int, default=256, help="prompts timed without dedup")
    parser.add_argument("--torch-batch", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=32, help="distinct prompts per step of the dedup loop")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/bench_actor.json"))
    args = parser.parse_args(argv)
    cores = os.cpu_count()
    print(f"jax {jax.__version__}, torch {torch.__version__}, {cores} cores; decisions/s (higher is better)")
    print(f"{'model':>14} {'torch':>9} {'jax':>9} {'jax+dedup':>10} {'jax/torch':>9} {'dedup/torch':>11}")
    rows = []
    for name in args.models:
        r = bench(name, args)
        rows.append(r)
        print(
            f"{name:>14} {r['torch_decisions_per_s']:>9.1f} {r['jax_decisions_per_s']:>9.1f} "
            f"{r['jax_dedup_decisions_per_s']:>10.1f} {r['jax_vs_torch']:>9.2f} "
            f"{r['jax_dedup_vs_torch']:>11.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"jax": jax.__version__, "torch": torch.__version__, "rows": rows}, indent=1)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
