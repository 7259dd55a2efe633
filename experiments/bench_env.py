"""Environment throughput: the jitted, vmapped JAX env against the NumPy reference.

Measures environment steps (TTIs of one episode) per second and active-UE steps per
second for ``random`` and ``contention_free`` at several numbers of parallel episodes
and ``max_ues``, with the UE count drawn uniformly in [1, max_ues] at every reset.
The JAX side runs ``--ttis`` TTIs per episode in one ``lax.scan`` (the policy inside
the compiled program, auto-resets included); compile time is reported apart. The
reference is ``tests/reference_env.py`` (a per-episode Python loop) stepping the same
configuration with uniform random actions; its rate does not depend on the number of
parallel episodes, so it runs ``--ref-episodes`` episodes, best of 3, right before each
JAX measurement (this machine's speed drifts by 2x over minutes, so the two sides of
each ratio are measured side by side). Ratios are JAX env-steps/s over reference
env-steps/s.

On CPU the script exposes every core as a JAX device (``--xla_force_host_platform_device_count``,
unless XLA_FLAGS already sets it) and reports each configuration on one device and with
the episode axis sharded over all of them: XLA runs one device's program per core.

    python experiments/bench_env.py --out results/bench_env.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={os.cpu_count()}"
    )

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from env_rollout import make_rollout  # noqa: E402
from reference_env import ReferenceUDTS  # noqa: E402

from jaxmac.env import EnvParams, UDTSEnv  # noqa: E402


def bench_jax(env: UDTSEnv, policy_name: str, episodes: int, ttis: int, repeats: int, devices: int) -> dict:
    mesh = Mesh(np.array(jax.devices()[:devices]), ("episodes",))
    keys = jax.device_put(
        jax.random.split(jax.random.PRNGKey(0), episodes), NamedSharding(mesh, PartitionSpec("episodes"))
    )
    t0 = time.perf_counter()
    compiled = make_rollout(env, policy_name, ttis).lower(keys).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(keys))  # warm-up
    times, active = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        active = int(jax.block_until_ready(compiled(keys))[0])
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {
        "compile_s": compile_s,
        "run_s": best,
        "env_steps_per_s": episodes * ttis / best,
        "ue_steps_per_s": active / best,
    }


def bench_reference(env: UDTSEnv, episodes: int) -> dict:
    cfg = {f: getattr(env, f) for f in ("max_ues", "buffer_size", "episode_len", "history")}
    p = {f.name: f.default for f in dataclasses.fields(EnvParams)}
    p["n_min"], p["n_max"] = 1, env.max_ues
    ref, rng, m = ReferenceUDTS(cfg, p), np.random.default_rng(0), env.max_ues
    steps = active = 0
    t0 = time.perf_counter()
    for _ in range(episodes):
        ref.reset(rng.random())
        done = False
        while not done:
            draws = {
                "leave": rng.random(m),
                "join": rng.random(m),
                "arrive": rng.random(m),
                "decode": rng.random(),
            }
            _, done, events = ref.step(
                draws,
                rng.integers(0, 3, m),
                rng.integers(0, env.ucm_vocab, m),
                rng.integers(0, env.dcm_vocab, m),
            )
            steps += 1
            active += events["active_ues"]
    elapsed = time.perf_counter() - t0
    return {"run_s": elapsed, "env_steps_per_s": steps / elapsed, "ue_steps_per_s": active / elapsed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--max-ues", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--policies", nargs="+", default=["random", "contention_free"])
    parser.add_argument("--ttis", type=int, default=96, help="TTIs per parallel episode (4 episodes of 24)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is kept")
    parser.add_argument("--ref-episodes", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("results/bench_env.json"))
    args = parser.parse_args(argv)

    rows = []
    header = (
        f"{'policy':>16} {'max_ues':>7} {'episodes':>8} {'devices':>7} {'compile s':>9} {'env-steps/s':>12} "
        f"{'UE-steps/s':>12} {'ref env-steps/s':>15} {'JAX/ref':>8}"
    )
    print(
        f"jax {jax.__version__} on {len(jax.devices())} {jax.devices()[0].platform} device(s), "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    )
    print(header)
    for max_ues in args.max_ues:
        env = UDTSEnv(max_ues=max_ues)
        for policy in args.policies:
            for episodes, devices in ((e, d) for e in args.episodes for d in sorted({1, len(jax.devices())})):
                ref = max(
                    (bench_reference(env, args.ref_episodes) for _ in range(3)),
                    key=lambda r: r["env_steps_per_s"],
                )
                res = bench_jax(env, policy, episodes, args.ttis, args.repeats, devices)
                ratio = res["env_steps_per_s"] / ref["env_steps_per_s"]
                rows.append(
                    {
                        "policy": policy,
                        "max_ues": max_ues,
                        "episodes": episodes,
                        "devices": devices,
                        "ttis": args.ttis,
                        **res,
                        "reference_env_steps_per_s": ref["env_steps_per_s"],
                        "reference_ue_steps_per_s": ref["ue_steps_per_s"],
                        "speedup": ratio,
                    }
                )
                print(
                    f"{policy:>16} {max_ues:>7} {episodes:>8} {devices:>7} {res['compile_s']:>9.2f} "
                    f"{res['env_steps_per_s']:>12.3g} {res['ue_steps_per_s']:>12.3g} "
                    f"{ref['env_steps_per_s']:>15.3g} {ratio:>8.0f}"
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "jax": jax.__version__,
        "backend": jax.devices()[0].platform,
        "devices": len(jax.devices()),
        "cores": os.cpu_count(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(meta, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
