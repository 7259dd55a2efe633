"""Training runs as a user runs them: the host loop, checkpoints, resume, divergence,
devices, every learner and ablation end to end, and learning itself."""

import dataclasses
import json
import os
import shutil
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
import small_runs
from processes import host_devices

from jaxmac.agents import LearnedPolicy
from jaxmac.evaluation import evaluate
from jaxmac.protocols import make_protocol
from jaxmac.training import (
    CheckpointNotWritten,
    Checkpoints,
    DamagedCheckpoint,
    Run,
    RunConfig,
    RunLock,
    RunLocked,
    TrainingDiverged,
    shared_programs,
    train_run,
)

ROOT = Path(__file__).resolve().parents[1]

SMALL = small_runs.run_config(small_runs.MAPPO)

#: A small run of every algorithm: the guarantees below hold for each.
SMALL_RUNS = {"mappo": SMALL, "maddpg": small_runs.run_config(small_runs.MADDPG)}


@pytest.mark.slow
@pytest.mark.parametrize("algo", SMALL_RUNS)
def test_resume_reaches_the_state_of_an_uninterrupted_run(algo, tmp_path):
    config = SMALL_RUNS[algo]
    shared_programs.cache_clear()  # `whole` builds its programs
    whole = train_run(config, tmp_path / "whole", log=lambda _: None)
    half = dataclasses.replace(config, algorithm={**config.algorithm, "updates": 2})
    cut = train_run(half, tmp_path / "cut", log=lambda _: None)  # "interrupted" after update 2
    resumed = train_run(config, tmp_path / "cut", resume=True, log=lambda _: None)
    assert resumed.updates == whole.updates == 4
    # a run's length is not part of its programs: `whole`'s traced and compiled chunk program
    # serves the shorter run and the resume that extends it (a cache lookup of milliseconds,
    # where `whole` compiled or reloaded it)
    for run in (cut, resumed):
        assert run.compile_s < 0.1 * whole.compile_s, (run.compile_s, whole.compile_s)
    chex.assert_trees_all_equal(resumed.state, whole.state)  # parameters, optimiser, buffer, envs
    rows = [json.loads(r) for r in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2, 3, 4]
    modes = {
        (tmp_path / "cut" / f).stat().st_mode & 0o777 for f in ("config.json", "eval.json", "metrics.jsonl")
    }
    assert len(modes) == 1, modes  # atomic files are as readable as the plainly written ones
    assert {r["policy"] for r in json.loads((tmp_path / "cut" / "eval.json").read_text())} == {"cut"}


def test_a_second_run_into_the_same_directory_is_refused(tmp_path):
    train_run(
        dataclasses.replace(SMALL, algorithm={**SMALL.algorithm, "updates": 2}),
        tmp_path / "r",
        log=lambda _: None,
    )
    with pytest.raises(FileExistsError, match="resume"):
        train_run(SMALL, tmp_path / "r", log=lambda _: None)
    shutil.rmtree(tmp_path / "r" / "checkpoints")  # an old run's records alone still hold the place
    with pytest.raises(FileExistsError, match=r"already holds a run \(its metrics.jsonl\)"):
        train_run(SMALL, tmp_path / "r", log=lambda _: None)


def test_a_second_writer_of_a_run_directory_is_refused_naming_the_holder(tmp_path):
    run, half = tmp_path / "r", dataclasses.replace(SMALL, algorithm={**SMALL.algorithm, "updates": 2})
    holder = rf"being written by another process \(pid {os.getpid()} on "
    with RunLock(run), pytest.raises(RunLocked, match=holder):  # flock conflicts between open files too
        train_run(half, run, log=lambda _: None)
    train_run(half, run, log=lambda _: None)
    with RunLock(run), pytest.raises(RunLocked):  # a --resume while the run still trains
        train_run(SMALL, run, resume=True, log=lambda _: None)
    (run / ".lock").write_text("pid 999999 on elsewhere since 2026-01-01")  # its process is gone
    said = []
    train_run(SMALL, run, resume=True, log=said.append)
    assert any("took over the lock left by a process that is gone (pid 999999" in m for m in said), said
    assert (run / ".lock").read_text() == ""  # released on exit
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2, 3, 4]


def test_a_wandb_run_id_is_kept_by_its_directory_and_not_shared_by_a_namesake(tmp_path):
    from jaxmac.training.sinks import wandb_id

    first, namesake = tmp_path / "a" / "seed0", tmp_path / "b" / "seed0"
    first.mkdir(parents=True)
    namesake.mkdir(parents=True)
    assert wandb_id(first) == wandb_id(first) != wandb_id(namesake)  # a resume continues its own


def test_resume_of_a_directory_without_a_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no run to resume"):
        train_run(SMALL, tmp_path / "typo", resume=True, log=lambda _: None)
    assert not (tmp_path / "typo").exists()


def test_a_torn_metrics_line_and_a_partial_checkpoint_are_dropped_and_the_run_resumes(tmp_path):
    run = tmp_path / "r"
    train_run(
        dataclasses.replace(SMALL, algorithm={**SMALL.algorithm, "updates": 2}), run, log=lambda _: None
    )
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"update": 3, "retu')  # a crash in the middle of an append
    partial = run / "checkpoints" / "4.orbax-checkpoint-tmp-1764600000000000"
    partial.mkdir()  # and of the next checkpoint's save
    said = []
    train_run(SMALL, run, resume=True, log=said.append)
    assert not partial.exists()  # the resumed run's writer removes it
    assert any(f"{run / 'metrics.jsonl'}: dropped line 3" in m for m in said), said
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2, 3, 4]
    assert (run / "metrics.csv").read_text().count("\n") == 5  # the header and four rows


def test_a_metric_beyond_a_stop_if_bound_stops_the_run_before_saving(tmp_path):
    """Finite divergence: the default guard stops a run whose loss passes 1e6, and a run may
    set its own bounds on any metric it reports (here an entropy floor every update crosses)."""
    collapsed = dataclasses.replace(SMALL, stop_if=("loss>1e6", "entropy<5"))
    with pytest.raises(
        TrainingDiverged, match=r"entropy < 5 \(the stop_if bound\) in updates 1-2 .* update 0"
    ):
        train_run(collapsed, tmp_path / "r", log=lambda _: None)
    assert Checkpoints(tmp_path / "r" / "checkpoints").latest() == 0
    assert not (tmp_path / "r" / "metrics.jsonl").exists()
    with pytest.raises(ValueError, match=r"stop_if names 'kl', which this run does not report"):
        train_run(dataclasses.replace(SMALL, stop_if=("kl>1",)), tmp_path / "s", log=lambda _: None)
    assert not (tmp_path / "s").exists()  # refused before any compile or file
    for bad in ("loss=1", "loss>nan", "entropy<-inf"):
        with pytest.raises(ValueError, match="stop_if entries must be NAME>VALUE or NAME<VALUE"):
            dataclasses.replace(SMALL, stop_if=(bad,))
    assert RunConfig.from_json(collapsed.to_json()) == collapsed


def test_the_best_evaluated_checkpoint_is_kept_beside_the_newest(tmp_path, capsys):
    from jaxmac.cli.main import main

    run = tmp_path / "r"
    train_run(dataclasses.replace(SMALL, eval_every=1), run, log=lambda _: None)  # evaluates at 2 and 4
    evaluated = {}
    for line in (run / "eval.jsonl").read_text().splitlines():
        row = json.loads(line)
        evaluated.setdefault(row["update"], []).append(row["throughput"])
    best = max(evaluated, key=lambda u: np.mean(evaluated[u]))
    assert sorted(evaluated) == [2, 4]
    assert json.loads((run / "best.json").read_text())["update"] == best
    assert Checkpoints(run / "best", create=False).latest() == best
    assert main(["eval", "--checkpoint", str(run), "--best", "--ues", "1", "--episodes", "4"]) == 0
    assert " r " in capsys.readouterr().out


def test_an_evaluation_cut_short_is_made_on_resume_and_an_update_evaluated_again_replaces_it(
    tmp_path, monkeypatch
):
    run, config = tmp_path / "r", dataclasses.replace(SMALL, eval_every=1)  # evaluates at 2 and 4

    def killed(*_):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(Run, "evaluate", killed)
        train_run(config, run, log=lambda _: None)  # killed in the evaluation after checkpoint 2
    assert Checkpoints(run / "checkpoints", create=False).latest() == 2
    assert not (run / "eval.jsonl").exists()

    def evaluated():
        return [
            (r["update"], r["episodes"])
            for r in map(json.loads, (run / "eval.jsonl").read_text().splitlines())
        ]

    train_run(config, run, resume=True, log=lambda _: None)
    assert evaluated() == [(2, 10), (2, 10), (4, 10), (4, 10)]  # UE counts 1 and 2 at each
    best = json.loads((run / "best.json").read_text())
    train_run(config, run, resume=True, log=lambda _: None)  # a finished run: evaluated again
    assert evaluated() == [(2, 10), (2, 10), (4, 10), (4, 10)]
    assert json.loads((run / "best.json").read_text()) == best
    said = []
    train_run(dataclasses.replace(config, eval_episodes=8), run, resume=True, log=said.append)
    assert evaluated() == [(2, 10), (2, 10), (4, 8), (4, 8)]
    assert any("the best is chosen anew at 4" in m for m in said), said
    assert json.loads((run / "best.json").read_text())["evaluation"]["episodes"] == 8
    assert Checkpoints(run / "best", create=False).latest() == 4


def test_a_damaged_newest_checkpoint_is_named_and_the_previous_one_resumes(tmp_path):
    run = tmp_path / "r"
    whole = train_run(SMALL, run, log=lambda _: None)  # checkpoints 2 and 4
    arrays = sorted((run / "checkpoints" / "4").rglob("d/*"), key=lambda f: f.stat().st_size)
    with open(arrays[-1], "r+b") as f:  # a write cut short
        f.truncate(100)
    saved = (run / "config.json").read_text()
    with pytest.raises(
        DamagedCheckpoint, match=r"checkpoint 4 in .* cannot be read .* previous checkpoint is update 2"
    ):
        train_run(dataclasses.replace(SMALL, hparams={"lr": 1e-2}), run, resume=True, log=lambda _: None)
    assert (run / "config.json").read_text() == saved  # a resume that failed changed no setting
    said = []
    resumed = train_run(SMALL, run, resume=True, previous_checkpoint=True, log=said.append)
    assert any("checkpoint 4 cannot be read: moved to" in m for m in said), said
    assert (run / "damaged-checkpoints" / "4").is_dir()
    chex.assert_trees_all_equal(resumed.state, whole.state)  # updates 3-4 again, the same


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


@pytest.mark.slow
def test_sharded_over_four_devices_equals_one_device(tmp_path):
    """Every algorithm's run in one process with 4 host devices (episodes sharded over them,
    evaluation too) trains what the same run does on this process's one device; its
    checkpoints restore here, onto one device, and evaluate to the rows it wrote."""
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        import jax
        from jaxmac.training import RunConfig, train_run
        assert jax.device_count() == 4
        for algo, data in json.loads(sys.argv[1]).items():
            result = train_run(RunConfig.from_json(data), Path(sys.argv[2]) / algo, log=lambda _: None)
            assert len(result.state.env_state.queue.sharding.device_set) == 4
            print("sharded", algo)
        """
    )
    configs = json.dumps({algo: c.to_json() for algo, c in SMALL_RUNS.items()})
    four = tmp_path / "four"
    done = subprocess.run(
        [sys.executable, "-c", script, configs, str(four)],
        env=host_devices(4),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [word for algo in SMALL_RUNS for word in ("sharded", algo)]
    for algo, config in SMALL_RUNS.items():
        # the same run on one device (its programs are the other SMALL runs' of this process)
        one = train_run(config, tmp_path / "one" / algo, log=lambda _: None)
        run = Run.build(config, four / algo)
        with Checkpoints(four / algo / "checkpoints", create=False) as checkpoints:
            sharded = run.restore(checkpoints)
        chex.assert_trees_all_close(
            run.algorithm.policy_params(sharded), run.algorithm.policy_params(one.state), rtol=2e-4, atol=2e-5
        )
        # the evaluation's episodes laid out over 4 devices give this process's rows
        written = json.loads((four / algo / "eval.json").read_text())
        assert run.evaluate(sharded).rows == written


#: A sweep of each small run: the command-line sweep tests' (their programs are these).
SMALL_SWEEPS = {"mappo": ((0, 1), {"lr": (1e-3, 3e-4)}), "maddpg": ((0,), {"tau": (0.01, 0.1)})}


@pytest.mark.slow
@pytest.mark.parametrize("algo", SMALL_RUNS)
def test_one_compile_serves_every_hyperparameter_value_and_vmapped_it_is_a_sweep(algo, tmp_path):
    """The chunk program compiles once for any traced hyperparameter values and any update count
    up to its length; a sweep (``vmap`` of init + chunk over seeds and values) trains each
    member as its own run does."""
    config = SMALL_RUNS[algo]
    seeds, grid = SMALL_SWEEPS[algo]
    sweep = Run.build(dataclasses.replace(config, seeds=seeds, grid=grid), tmp_path / "sweep")
    stacked, metrics = sweep.chunk(sweep.init(), config.chunk)
    assert metrics["loss"].shape == (len(sweep.keys), config.chunk)
    run = Run.build(config, tmp_path / "one")  # every member's values through one program
    for i in range(len(sweep.keys)):
        member = dataclasses.replace(
            run, keys=sweep.keys[i : i + 1], hparams=jax.tree.map(lambda x, i=i: x[i : i + 1], sweep.hparams)
        )
        single, _ = member.chunk(member.init(), config.chunk)
        chex.assert_trees_all_close(
            jax.tree.map(lambda x, i=i: x[i], run.algorithm.policy_params(stacked)),
            jax.tree.map(lambda x: x[0], run.algorithm.policy_params(single)),
            rtol=1e-4,
            atol=1e-5,
        )
    base = jax.tree.map(lambda x: x[0], run.hparams)
    other_env = base.env.replace(p_arrival=0.9, n_max=1)
    state = single
    for hp, count in ((base.replace(gamma=0.9), 2), (base.replace(env=other_env), 1)):
        before = int(state.update[0])
        other = dataclasses.replace(run, hparams=jax.tree.map(lambda x: x[None], hp))
        state, metrics = other.chunk(state, count)
        assert int(state.update[0]) == before + count
        assert metrics["loss"].shape == (1, count) and np.isfinite(metrics["loss"]).all()
    # the one program behind every call: it does `count` of its `chunk` updates, NaN past them
    _, metrics = run.programs.compiled_chunk(state, run.hparams, config.chunk)(state, run.hparams, 1)
    assert metrics["loss"].shape == (1, config.chunk)
    assert np.isfinite(metrics["loss"][0, 0]) and np.isnan(metrics["loss"][0, 1:]).all()
    assert len(run.programs.chunks) == 1  # one program for every value and count


#: What each learner gets to clearly beat ``random`` at 1 and 2 UEs (about 20-30 s each here).
LEARNING_RUNS = {
    "mappo": RunConfig(
        algo="mappo",
        agent={"hidden": 32},
        env={"max_ues": 2},
        env_params={"n_min": 1, "n_max": 2},
        algorithm={"num_envs": 128, "epochs": 4, "minibatches": 4, "updates": 30},
        hparams={"lr": 1e-3},
        chunk=30,
        eval_episodes=200,
    ),
    "maddpg": RunConfig(
        algo="maddpg",
        env={"max_ues": 2},
        env_params={"n_min": 1, "n_max": 2},
        algorithm={"num_envs": 64, "replay_size": 50_000, "updates": 150},
        chunk=150,
        eval_episodes=200,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("algo", LEARNING_RUNS)
def test_learner_clearly_beats_random_within_a_fixed_budget(algo, tmp_path, request):
    """Evaluated by sampling its decisions, against ``random`` on the same episodes."""
    if algo == "maddpg":  # its 150 updates' running outweighs compiling (MAPPO's does not)
        request.getfixturevalue("optimized")
    config = LEARNING_RUNS[algo]
    result = train_run(config, tmp_path / algo, log=lambda _: None)
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


@pytest.mark.slow
def test_llm4mac_no_comm_trains_evaluates_and_sends_only_null(tmp_path):
    """The language learner end to end (one run: its compile dominates the suite's time);
    the plain and Abl. SIE variants run the same code (see README / make demo)."""
    config = dataclasses.replace(LLM, no_comm=True)
    result = train_run(config, tmp_path / "run", log=lambda _: None)
    assert result.updates == 2 and np.isfinite(result.env_steps_per_s)
    assert [r["n_ues"] for r in result.evaluation.rows] == [1, 2]
    run = Run.build(config, tmp_path / "run")
    assert run.programs is shared_programs(
        config.program_key(), run.mesh
    )  # the trained run's: nothing rebuilt
    policy = LearnedPolicy(run.agent, run.member_params(result.state, 0))
    with pytest.raises(ValueError, match=r"member must be an integer in \[0, 1\) for this run, got 1"):
        run.member_params(result.state, 1)  # the compiled take would clamp it to member 0
    obs, state = jax.vmap(run.agent.env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(0), 4), config.base_hparams().env
    )
    act = jax.jit(lambda *inputs: policy(*inputs))  # one program (eagerly: one per operation)
    action = act(jax.random.PRNGKey(1), obs, state, config.base_hparams().env)
    assert not np.any(action.ucm) and not np.any(action.dcm)


@pytest.mark.parametrize("no_comm", [False, True])
def test_training_pads_bs_prompts_to_prompt_ues_and_evaluation_to_max_ues(no_comm, tmp_path):
    """Nothing is compiled: the run's programs are built, and their agents compared."""
    config = dataclasses.replace(
        LLM, no_comm=no_comm, env={"max_ues": 8, "episode_len": 3}, grid={"n_max": [3, 4]}, prompt_ues=4
    )
    run = Run.build(config, tmp_path / "run")
    trained, evaluated = run.algorithm.agent, run.agent
    if no_comm:
        trained, evaluated = trained.inner, evaluated.inner
    assert config.n_max() == 4 and trained.compiler.ues == 4 and evaluated.compiler.ues is None
    assert trained.compiler.max_len["bs"] < evaluated.compiler.max_len["bs"]
    assert trained.compiler.max_len["ue"] == evaluated.compiler.max_len["ue"]
    unbounded = Run.build(dataclasses.replace(config, prompt_ues=None), tmp_path / "unbounded")
    assert unbounded.algorithm.agent is unbounded.agent  # a configuration of before the bound
    with pytest.raises(ValueError, match=r"n_max must be <= prompt_ues=3 \(the run's prompts list at most 3"):
        Run.build(dataclasses.replace(config, prompt_ues=3), tmp_path / "short")
    with pytest.raises(ValueError, match=r"prompt_ues must be None or an integer in \[1, max_ues=8\], got 9"):
        dataclasses.replace(config, prompt_ues=9)


@flax.struct.dataclass
class _XY:
    x: jax.Array
    y: jax.Array


@flax.struct.dataclass
class _YX:  # the same names, the other order: a position-keyed checkpoint would swap them
    y: jax.Array
    x: jax.Array


@pytest.mark.slow
def test_a_later_process_calls_the_stored_chunk_program_without_tracing_it(tmp_path, monkeypatch):
    """``compile_stored``: a run stores its chunk program; a later one (new ``Programs``, as a
    new process builds) calls it without tracing the algorithm and trains to the same state; a
    damaged stored program is made again; a longer run calls the same one (another
    configuration's key differs: ``fingerprint``'s test)."""
    from jaxmac import compilation
    from jaxmac.algorithms.ppo import Trainer

    store = tmp_path / "exported"
    monkeypatch.setattr(compilation, "stored_programs_dir", lambda: store)

    def trained(config=SMALL):
        shared_programs.cache_clear()  # what a new process starts from
        run = Run.build(config, tmp_path)
        state, _ = run.chunk(run.init(), config.chunk)
        return jax.device_get(run.algorithm.policy_params(state))

    first = trained()
    [program] = store.glob("*.exported")
    with monkeypatch.context() as patched:
        patched.setattr(Trainer, "update_chunk", lambda *_: pytest.fail("the stored program was traced"))
        chex.assert_trees_all_equal(trained(), first)
        # the chunk never reads the total number of updates: a longer run, the same program
        trained(dataclasses.replace(SMALL, algorithm={**SMALL.algorithm, "updates": 6}))
    program.write_bytes(b"damaged")
    chex.assert_trees_all_equal(trained(), first)
    assert program.stat().st_size > 1000 and list(store.glob("*.exported")) == [program]
    shared_programs.cache_clear()


def test_a_fingerprint_reads_small_arrays_by_value_and_weights_by_shape():
    from jaxmac.compilation import FINGERPRINT_MAX_ELEMENTS, fingerprint

    small, large = np.zeros(3), np.zeros(FINGERPRINT_MAX_ELEMENTS + 1, np.float32)
    assert fingerprint({"a": small}) != fingerprint({"a": small + 1})
    assert fingerprint({"a": large}) == fingerprint({"a": large + 1})  # weights: programs' inputs
    assert fingerprint({"a": large}) != fingerprint({"a": large.astype(np.float16)})
    assert fingerprint(SMALL) != fingerprint(dataclasses.replace(SMALL, chunk=3))
    assert fingerprint(object()) == fingerprint(object())  # other objects: by type
    assert fingerprint(np.float32(1)) != fingerprint(np.float32(2))
    assert fingerprint(np.sin) != fingerprint(np.cos) and fingerprint(int) != fingerprint(float)
    shared, other = [1], [2]
    assert fingerprint([shared, other, shared]) != fingerprint([shared, other, other])


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


def test_a_run_configuration_of_another_version_is_an_error_naming_its_fields(tmp_path):
    (tmp_path / "config.json").write_text('{"algo": ')  # cut short
    with pytest.raises(ValueError, match=r"config.json cannot be read as a run configuration: Expecting"):
        RunConfig.load(tmp_path)
    data = SMALL.to_json()
    data["ppo"] = data.pop("algorithm")  # how run directories before the methods registry wrote it
    with pytest.raises(ValueError, match=r"fields \['ppo'\] this jaxmac does not know"):
        RunConfig.from_json(data)
    assert RunConfig.from_json(SMALL.to_json()) == SMALL


def test_a_checkpoint_that_cannot_be_written_names_the_step_and_the_intact_one(tmp_path):
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    state = {"step": jnp.ones(())}
    checkpoints.save(2, state)
    real_save = checkpoints.manager.save

    def disk_fills(step, args, force):  # orbax's report of a full disk, after a partial write
        (tmp_path / "checkpoints" / f"{step}.orbax-checkpoint-tmp").mkdir()
        raise ValueError('RESOURCE_EXHAUSTED: writing "step": No space left on device [os_error_code=28]')

    checkpoints.manager.save = disk_fills
    with pytest.raises(
        CheckpointNotWritten,
        match=r"checkpoint 4 could not be written to .* \(no space left on device\); "
        r"the checkpoint of update 2 is intact",
    ):
        checkpoints.save(4, state)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]
    checkpoints.manager.save = real_save
    checkpoints.save(4, state)
    assert checkpoints.latest() == 4
    checkpoints.close()


@pytest.mark.slow
def test_parameters_split_over_a_model_axis_give_the_unsplit_loss_and_gradient(tmp_path):
    """On 4 host devices: the T5's weights split over a model axis of 4 (tensor parallel, the
    layout of ``jaxmac.models.sharding``) give the loss and gradient of replicated weights;
    a run with ``model_shards=4`` lays its T5 weights and their Adam moments out that way."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        import jax, jax.numpy as jnp, numpy as np
        from flax import nnx
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from jaxmac.models import CONFIGS, T5
        from jaxmac.models.sharding import model_partition_specs
        from jaxmac.training import Run, RunConfig
        assert jax.device_count() == 4
        cfg = CONFIGS["tiny"]
        graphdef, state = nnx.split(T5(cfg, rngs=nnx.Rngs(0)))
        params = nnx.to_pure_dict(state)
        ids = jax.random.randint(jax.random.PRNGKey(1), (8, 12), 1, cfg.vocab_size)
        answers = jax.random.randint(jax.random.PRNGKey(2), (8, 3), 1, cfg.vocab_size)
        mask, answer_mask = ids > 0, answers > 0

        def loss(params):
            t5 = nnx.merge(graphdef, params)
            _, logits = t5.teacher_forced(answers, answer_mask, t5.encode(ids, mask), mask)
            token = jnp.take_along_axis(jax.nn.log_softmax(logits), answers[..., None], -1)
            return -jnp.mean(token)

        mesh = Mesh(np.asarray(jax.devices()).reshape(1, 4), ("episodes", "model"))
        out = []
        for shards in (1, 4):
            specs = model_partition_specs(params, shards)
            placed = jax.device_put(params, jax.tree.map(lambda s: NamedSharding(mesh, s), specs))
            value, grads = jax.jit(jax.value_and_grad(loss))(placed)
            split = [x for x in jax.tree.leaves(placed) if "model" in x.sharding.spec]
            assert (len(split) >= 6 * cfg.num_layers) == (shards == 4), len(split)
            out.append(jax.device_get((value, grads)))
        for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)  # float32 summation order
        print("same loss and gradient")
        config = RunConfig(
            algo="llm-pt",
            agent={"model": "tiny"},
            env={"max_ues": 2, "episode_len": 3},
            env_params={"n_min": 1, "n_max": 2},
            algorithm={"record_episodes": 4, "examples": 16},
        )
        state = Run.build(config, Path(sys.argv[1]), model_shards=4).state_shardings
        attention = state.params["t5"]["encoder"][0]["attention"]
        assert attention["q"]["kernel"].spec == P(None, None, "model")  # members, d_model, heads
        assert attention["o"]["kernel"].spec == P(None, "model", None)
        moments = state.opt_state[1][0].mu[("t5", "decoder", 1, "ff", "wo", "kernel")]  # Adam's
        assert moments.spec == P(None, "model", None)
        try:
            Run.build(config, Path(sys.argv[1]), model_shards=3)
        except ValueError as e:
            print(e)
        """
    )
    env = host_devices(4)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "same loss and gradient",
        "model_shards=3 must divide the 4 devices",
    ]
