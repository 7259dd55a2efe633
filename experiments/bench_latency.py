"""Time per decision of LLM4MAC's candidate scoring against LLM-PT's answer generation (paper Fig. 5).

A decision is one UE prompt (a real one, from a ``contention_free`` rollout with 5 UEs):
LLM4MAC scores its 6 candidate answers in one pass (encoder once, the candidates teacher-forced
through the decoder together: ``jaxmac.models.act`` without dedup); LLM-PT generates its
answer greedily (encoder once, then the decoder token by token over its key/value cache, up
to ``answer_len`` tokens, stopping when every answer has ended: ``jaxmac.models.generate``).
Both run the same T5 (random weights of the named shape, the built-in word tokenizer's ids),
computing in the agents' default dtype (``auto``: bfloat16 on a GPU or TPU, float32 on a CPU).

* single: one decision per call, what a base station would do within a TTI; p50 and p99 of
  ``--repeats`` calls.
* batched: ``--batch`` decisions per call; the call's p50 and p99 divided by the batch.

Every call is compiled before it is timed (compilation excluded) and waited for
(``block_until_ready``). It runs on JAX's default device: on a GPU machine the same command
measures the GPU.

    python experiments/bench_latency.py --out results/bench_latency.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmac.env import UDTSEnv
from jaxmac.models.config import compute_dtype
from jaxmac.models.generate import generate
from jaxmac.protocols import make_protocol
from jaxmac.training import make_agent

N_UES = 5


def ue_prompts(agent: object, count: int) -> tuple[jax.Array, jax.Array]:
    """``count`` UE prompts (ids, mask) of a ``contention_free`` rollout, cycling over its TTIs."""
    env = agent.env
    params = env.default_params.replace(n_min=N_UES, n_max=N_UES)
    policy = make_protocol("contention_free", env)
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    ids, mask = [], []
    for t in range(env.episode_len):
        prompts = agent.compiler(obs)
        ids.append(prompts.ue_ids[:N_UES])
        mask.append(prompts.ue_mask[:N_UES])
        key = jax.random.PRNGKey(t + 1)
        obs, state, *_ = env.step(key, state, policy(key, obs, state, params), params)
    ids, mask = jnp.concatenate(ids), jnp.concatenate(mask)
    rows = np.arange(count) % ids.shape[0]
    return ids[rows], mask[rows]


def timed(fn: object, args: tuple, repeats: int) -> np.ndarray:
    """Seconds of ``repeats`` calls of ``fn(*args)`` after one compiling call."""
    jax.block_until_ready(fn(*args))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        seconds.append(time.perf_counter() - start)
    return np.asarray(seconds)


def measure(model: str, batch: int, repeats: int) -> list[dict[str, object]]:
    env = UDTSEnv()
    scorer = make_agent("llm4mac", env, model=model, pretrained=False)
    generator = make_agent("llm-pt", env, model=model, pretrained=False)
    t5_params = generator.init(jax.random.PRNGKey(0))["t5"]
    actor = nnx.merge(scorer.graphdef, scorer.init(jax.random.PRNGKey(0)))
    actor.t5 = nnx.merge(generator.graphdef, t5_params)  # both methods run the same T5
    graphdef, state = nnx.split(actor)

    @jax.jit
    def score(state: nnx.State, ids: jax.Array, mask: jax.Array) -> jax.Array:  # UE prompts: trie group 0
        return nnx.merge(graphdef, state)(ids, mask, scorer.trie).log_probs[:, 0]

    @jax.jit
    def answer(params: dict, ids: jax.Array, mask: jax.Array) -> jax.Array:
        return generate(nnx.merge(generator.graphdef, params), ids, mask, generator.answer_len).ids

    rows = []
    for mode, size, n in (("single", 1, repeats), ("batched", batch, max(3, repeats // 10))):
        ids, mask = ue_prompts(scorer, size)
        for method, fn, params in (
            ("LLM4MAC scoring", score, state),
            ("LLM-PT generation", answer, t5_params),
        ):
            seconds = timed(fn, (params, ids, mask), n) / size
            rows.append(
                {
                    "model": model,
                    "method": method,
                    "mode": mode,
                    "decisions_per_call": size,
                    "calls": n,
                    "p50_ms": float(np.percentile(seconds, 50) * 1e3),
                    "p99_ms": float(np.percentile(seconds, 99) * 1e3),
                }
            )
    return rows


def plot(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']}\n{r['mode']}" for r in rows if r["method"] == "LLM4MAC scoring"]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, method in enumerate(("LLM4MAC scoring", "LLM-PT generation")):
        p50 = [r["p50_ms"] for r in rows if r["method"] == method]
        p99 = [r["p99_ms"] for r in rows if r["method"] == method]
        ax.bar(x + (i - 0.5) * 0.4, p50, 0.4, label=f"{method} (p50; bar to p99)")
        ax.errorbar(
            x + (i - 0.5) * 0.4, p50, yerr=[np.zeros(len(p50)), np.subtract(p99, p50)], fmt="none", c="k"
        )
    ax.set_xticks(x, labels)
    ax.set_yscale("log")
    ax.set_ylabel("ms per decision")
    ax.set_title(f"Time per decision on {jax.devices()[0].device_kind}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["tiny", "flan-t5-small"])
    parser.add_argument("--batch", type=int, default=64, help="decisions per batched call")
    parser.add_argument("--repeats", type=int, default=30, help="timed single-decision calls")
    parser.add_argument("--out", type=Path, default=Path("results/bench_latency.json"))
    args = parser.parse_args()
    device = jax.devices()[0].device_kind
    meta = {"device": device, "dtype": jnp.dtype(compute_dtype("auto")).name}  # the agents' default
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    for model in args.models:  # the JSON is rewritten per model: a run stopped at a limit keeps them
        rows += measure(model, args.batch, args.repeats)
        args.out.write_text(json.dumps({**meta, "rows": rows}, indent=1))
    print(f"device: {device}")
    print(f"{'model':>14} {'mode':>8} {'method':>18} {'p50 ms':>9} {'p99 ms':>9}")
    for r in rows:
        print(f"{r['model']:>14} {r['mode']:>8} {r['method']:>18} {r['p50_ms']:9.3f} {r['p99_ms']:9.3f}")
    for model in args.models:
        for mode in ("single", "batched"):
            score, gen = (
                next(r for r in rows if (r["model"], r["mode"], r["method"]) == (model, mode, m))
                for m in ("LLM4MAC scoring", "LLM-PT generation")
            )
            print(f"{model} {mode}: generation / scoring = {gen['p50_ms'] / score['p50_ms']:.2f}x (p50)")
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
