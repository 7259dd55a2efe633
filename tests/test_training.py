"""Training runs as a user runs them: the host loop, checkpoints, resume, divergence,
devices, every learner and ablation end to end, and learning itself."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmac.agents import LearnedPolicy
from jaxmac.evaluation import evaluate
from jaxmac.protocols import make_protocol
from jaxmac.training import Checkpoints, Run, RunConfig, TrainingDiverged, train_run

ROOT = Path(__file__).resolve().parents[1]

SMALL = RunConfig(
    algo="mappo",
    agent={"hidden": 16},
    env={"max_ues": 2, "episode_len": 6},
    env_params={"n_min": 1, "n_max": 2},
    algorithm={"num_envs": 16, "epochs": 2, "minibatches": 2, "updates": 4},
    chunk=2,
    eval_episodes=20,
)


def test_resume_reaches_the_parameters_of_an_uninterrupted_run(tmp_path):
    whole = train_run(SMALL, tmp_path / "whole", log=lambda _: None)
    half = dataclasses.replace(SMALL, algorithm={**SMALL.algorithm, "updates": 2})
    train_run(half, tmp_path / "cut", log=lambda _: None)  # "interrupted" after update 2
    resumed = train_run(SMALL, tmp_path / "cut", resume=True, log=lambda _: None)
    assert resumed.updates == whole.updates == 4
    chex.assert_trees_all_equal(resumed.state.params, whole.state.params)
    chex.assert_trees_all_equal(resumed.state.opt_state, whole.state.opt_state)
    rows = [json.loads(r) for r in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2, 3, 4]
    assert {r["policy"] for r in json.loads((tmp_path / "cut" / "eval.json").read_text())} == {"cut"}


def test_a_second_run_into_the_same_directory_is_refused(tmp_path):
    train_run(
        dataclasses.replace(SMALL, algorithm={**SMALL.algorithm, "updates": 2}),
        tmp_path / "r",
        log=lambda _: None,
    )
    with pytest.raises(FileExistsError, match="resume"):
        train_run(SMALL, tmp_path / "r", log=lambda _: None)


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    good = train_run(
        dataclasses.replace(SMALL, algorithm={**SMALL.algorithm, "updates": 2}),
        tmp_path / "r",
        log=lambda _: None,
    )
    exploding = dataclasses.replace(SMALL, hparams={"lr": 1e30, "max_grad_norm": 1e30})
    with pytest.raises(TrainingDiverged, match="last good checkpoint is update 2"):
        train_run(exploding, tmp_path / "r", resume=True, log=lambda _: None)
    run = Run.build(SMALL, tmp_path / "r")
    checkpoints = Checkpoints(tmp_path / "r" / "checkpoints")
    assert checkpoints.latest() == 2
    chex.assert_trees_all_equal(run.restore(checkpoints).params, good.state.params)
    rows = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["update"] for r in rows] == [1, 2]


def test_sharded_over_four_devices_equals_one_device(tmp_path):
    script = textwrap.dedent(
        """
        import jax, numpy as np
        from jax.sharding import Mesh
        from jaxmac.training import make_agent
        from jaxmac.algorithms import HParams, PPOConfig, Trainer
        from jaxmac.env import UDTSEnv
        assert jax.device_count() == 4
        env = UDTSEnv(max_ues=2, episode_len=6)
        agent = make_agent("mappo", env, hidden=16)
        hp = HParams(env=env.default_params.replace(n_min=1, n_max=2))
        config = PPOConfig(num_envs=16, epochs=2, minibatches=2, updates=3)
        out = []
        for devices in (jax.devices()[:1], jax.devices()):
            trainer = Trainer(agent, config, Mesh(devices, ("episodes",)))
            state = jax.jit(trainer.init)(jax.random.PRNGKey(0), hp)
            state, metrics = jax.jit(trainer.update_chunk, static_argnums=2)(state, hp, 3)
            assert len(state.env_state.queue.sharding.device_set) == len(devices)
            out.append(jax.device_get((state.params, metrics["loss"])))
        for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1])):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
        print("same")
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "same" in done.stdout


def test_mappo_clearly_beats_random_within_a_fixed_budget(tmp_path):
    config = RunConfig(
        algo="mappo",
        agent={"hidden": 32},
        env={"max_ues": 2},
        env_params={"n_min": 1, "n_max": 2},
        algorithm={"num_envs": 128, "epochs": 4, "minibatches": 4, "updates": 30},
        hparams={"lr": 1e-3},
        chunk=30,
        eval_episodes=200,
    )
    result = train_run(config, tmp_path / "mappo", log=lambda _: None)
    learned = {r["n_ues"]: r for r in result.evaluation.rows}
    env = config.build_env()
    random_rows = evaluate(env, make_protocol("random", env), config.base_hparams().env, [1, 2], 200).rows
    for row in random_rows:
        mine = learned[row["n_ues"]]
        margin = 2 * (mine["throughput_ci95"] + row["throughput_ci95"])
        assert mine["throughput"] > row["throughput"] + max(margin, 0.05), (mine, row)


LLM = dataclasses.replace(
    SMALL,
    algo="llm4mac",
    agent={"model": "tiny", "value_hidden": 32},
    env={"max_ues": 2, "episode_len": 3},
    algorithm={"num_envs": 4, "epochs": 1, "minibatches": 2, "updates": 2},
    eval_episodes=4,
)


def test_llm4mac_no_comm_trains_evaluates_and_sends_only_null(tmp_path):
    """The language learner end to end (one run: its compile dominates the suite's time);
    the plain and Abl. SIE variants run the same code (see README / make demo)."""
    no_comm = True
    config = dataclasses.replace(LLM, no_comm=no_comm)
    result = train_run(config, tmp_path / "run", log=lambda _: None)
    assert result.updates == 2 and np.isfinite(result.env_steps_per_s)
    assert [r["n_ues"] for r in result.evaluation.rows] == [1, 2]
    if no_comm:
        run = Run.build(config, tmp_path / "run")
        policy = LearnedPolicy(run.agent, run.member_params(result.state, 0))
        obs, state = jax.vmap(run.agent.env.reset, in_axes=(0, None))(
            jax.random.split(jax.random.PRNGKey(0), 4), config.base_hparams().env
        )
        action = policy(jax.random.PRNGKey(1), obs, state, config.base_hparams().env)
        assert not np.any(action.ucm) and not np.any(action.dcm)


@flax.struct.dataclass
class _XY:
    x: jax.Array
    y: jax.Array


@flax.struct.dataclass
class _YX:  # the same names, the other order: a position-keyed checkpoint would swap them
    y: jax.Array
    x: jax.Array


def test_checkpoints_restore_leaves_by_name_and_name_the_ones_that_differ(tmp_path):
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    checkpoints.save(3, {"params": _XY(x=jnp.zeros(2), y=jnp.ones(2)), "step": jnp.ones(())})
    restored = checkpoints.restore(3, {"params": _YX(y=jnp.zeros(2), x=jnp.zeros(2)), "step": jnp.zeros(())})
    np.testing.assert_array_equal(restored["params"].x, np.zeros(2))
    np.testing.assert_array_equal(restored["params"].y, np.ones(2))
    renamed = {"params": {"x": jnp.zeros(2), "z": jnp.ones(2)}, "step": jnp.zeros(())}
    with pytest.raises(ValueError, match=r"checkpoint 3 in .* lacks \['params.z'\] and holds \['params.y'\]"):
        checkpoints.restore(3, renamed)
    checkpoints.close()


def test_a_chunk_longer_than_the_compiled_one_is_an_error_naming_n(tmp_path):
    run = Run.build(SMALL, tmp_path / "r")
    state = run.init()
    for n in (0, SMALL.chunk + 1):
        with pytest.raises(ValueError, match=rf"n must be an integer in \[1, chunk={SMALL.chunk}\], got {n}"):
            run.chunk(state, n)


def test_a_run_configuration_of_another_version_is_an_error_naming_its_fields():
    data = SMALL.to_json()
    data["ppo"] = data.pop("algorithm")  # how run directories before the methods registry wrote it
    with pytest.raises(ValueError, match=r"fields \['ppo'\] this jaxmac does not know"):
        RunConfig.from_json(data)
    assert RunConfig.from_json(SMALL.to_json()) == SMALL
