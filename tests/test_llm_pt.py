"""LLM-PT: the Baseline's answers recorded inside jit, answers parsed into actions, generation
over the distinct prompts, and the method from the command line."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmac.agents import LearnedPolicy, parse_answers
from jaxmac.algorithms import Supervised, SupervisedConfig, SupervisedHParams, supervised
from jaxmac.algorithms.demonstrations import record_demonstrations
from jaxmac.algorithms.supervised import answer_loss
from jaxmac.cli.main import main
from jaxmac.env import UDTSEnv
from jaxmac.evaluation import evaluate
from jaxmac.evaluation.runner import run_episodes
from jaxmac.models.actor import CandidateSet
from jaxmac.models.generate import generate
from jaxmac.protocols import make_protocol
from jaxmac.training import Checkpoints, Run, RunConfig, make_agent

ENV = UDTSEnv(max_ues=4)


@pytest.fixture(scope="module")
def agent():
    return make_agent("llm-pt", ENV)


def test_answers_parse_by_exact_match_and_anything_else_is_invalid():
    candidates = CandidateSet(
        ids=jnp.asarray([[5, 1, 0], [5, 6, 1], [7, 1, 0]], jnp.int32),
        mask=jnp.asarray([[1, 1, 0], [1, 1, 1], [1, 1, 0]], bool),
    )
    answers = jnp.asarray(
        [
            [5, 1, 0, 0],  # candidate 0
            [5, 6, 1, 0],  # candidate 1
            [7, 1, 0, 0],  # candidate 2
            [5, 6, 6, 1],  # too long
            [5, 0, 0, 0],  # no </s>
            [6, 1, 0, 0],  # no such answer
            [5, 6, 7, 8],  # never ended
        ],
        jnp.int32,
    )
    np.testing.assert_array_equal(parse_answers(answers, candidates), [0, 1, 2, -1, -1, -1, -1])


def test_recorded_demonstrations_are_distinct_pairs_split_without_overlap(agent):
    algorithm = Supervised(agent, SupervisedConfig(record_episodes=16, examples=512, heldout_percent=20))
    hp = SupervisedHParams(env=ENV.default_params.replace(n_min=2, n_max=4))
    data = jax.jit(algorithm.init)(jax.random.PRNGKey(0), hp).data
    totals = {}
    for group in ("ue", "bs"):
        pairs = {}
        for split in ("train", "heldout"):
            examples = getattr(data, f"{group}_{split}")
            n = int(examples.count)
            assert 0 < n < examples.answers.shape[0]
            assert not np.asarray(examples.prompts[n:]).any()  # padding rows past the count
            for prompt, answer in zip(
                np.asarray(examples.prompts[:n]), np.asarray(examples.answers[:n]), strict=True
            ):
                key = tuple(prompt)
                assert key not in pairs, "a prompt recorded twice (or in both splits)"
                pairs[key] = int(answer)
        assert len(pairs) == int(data.distinct[0 if group == "ue" else 1])
        # each pair counts the decisions it was recorded for: one per active UE and TTI (the
        # BS decides about each active UE), 2-4 UEs in each of 16 episodes of T TTIs
        totals[group] = 0
        for split in ("train", "heldout"):
            examples = getattr(data, f"{group}_{split}")
            counts, n = np.asarray(examples.occurrences), int(examples.count)
            assert (counts[:n] >= 1).all() and not counts[n:].any()
            totals[group] += int(counts.sum())
    assert totals["ue"] == totals["bs"]
    assert 2 * 16 * ENV.episode_len <= totals["ue"] <= 4 * 16 * ENV.episode_len
    # the Baseline's UEs answer "transmit null" exactly when they were granted
    template = agent.compiler.template
    transmit = template.ue_candidates.index("transmit null")
    tokenizer = agent.compiler.tokenizer
    for prompt, answer in zip(
        np.asarray(data.ue_train.prompts), np.asarray(data.ue_train.answers), strict=True
    ):
        text = tokenizer.decode([t for t in prompt if t > 1])
        if text:
            assert ("received schedule_grant" in text and "have 0 packets" not in text) == (
                answer == transmit
            )


def test_recording_with_noise_visits_more_states_and_still_records_the_baselines_answers(agent):
    algorithm = Supervised(agent, SupervisedConfig(record_episodes=16, examples=1024, heldout_percent=1))
    env_params = ENV.default_params.replace(n_min=2, n_max=4)
    record = jax.jit(
        lambda noise: (
            algorithm.init(jax.random.PRNGKey(0), SupervisedHParams(demo_noise=noise, env=env_params)).data
        )
    )
    plain, noisy = record(0.0), record(0.3)
    with pytest.raises(ValueError, match=r"noise must be finite and >= 0.0 and <= 1.0, got 1.5"):
        record_demonstrations(
            agent.compiler,
            make_protocol("contention_free", ENV),
            env_params,
            jax.random.PRNGKey(0),
            episodes=2,
            capacity=8,
            heldout_percent=10,
            noise=1.5,
        )
    assert int(noisy.distinct[0]) > int(plain.distinct[0]) and int(noisy.distinct[1]) > int(plain.distinct[1])
    # the answers are the Baseline's at every recorded state: a UE transmits exactly when granted
    template, tokenizer = agent.compiler.template, agent.compiler.tokenizer
    transmit = template.ue_candidates.index("transmit null")
    examples = noisy.ue_train
    for prompt, answer in zip(
        np.asarray(examples.prompts[: int(examples.count)]),
        np.asarray(examples.answers[: int(examples.count)]),
        strict=True,
    ):
        text = tokenizer.decode([t for t in prompt if t > 1])
        assert ("received schedule_grant" in text and "have 0 packets" not in text) == (answer == transmit)


@pytest.mark.slow
def test_the_agent_acts_with_the_moving_average_of_the_trained_parameters(agent):
    hp = SupervisedHParams(env=ENV.default_params.replace(n_min=2, n_max=3))
    small = dict(record_episodes=4, examples=64, batch_size=4, train_steps=1)
    plain = Supervised(agent, SupervisedConfig(**small))
    averaged = Supervised(agent, SupervisedConfig(**small, ema_updates=4))
    start = jax.jit(averaged.init)(jax.random.PRNGKey(0), hp)
    assert jax.eval_shape(plain.init, jax.random.PRNGKey(0), hp).average is None
    update = jax.jit(averaged.update)
    state, expected = start, averaged.split(start.params)[0]
    for _ in range(2):
        state, metrics = update(state, hp)
        trained = averaged.split(state.params)[0]
        expected = jax.tree.map(lambda a, t: 0.75 * a + 0.25 * t, expected, trained)
        chex.assert_trees_all_close(state.average, expected, rtol=1e-6)
    acting = averaged.policy_params(state)
    chex.assert_trees_all_close(averaged.split(acting)[0], expected, rtol=1e-6)
    assert not np.allclose(acting["t5"]["lm_head"]["kernel"], state.params["t5"]["lm_head"]["kernel"])
    # the held-out figures are the acting parameters'
    np.testing.assert_allclose(
        metrics["val_loss"], averaged.validate(acting, state.data)["val_loss"], rtol=1e-5
    )


def test_a_step_draws_ue_batch_size_ue_pairs_and_batch_size_bs_pairs(agent, monkeypatch):
    hp = SupervisedHParams(env=ENV.default_params.replace(n_min=2, n_max=3))
    small = dict(record_episodes=4, examples=64, batch_size=4, train_steps=1)
    drawn = []

    def counting(graphdef, params, examples, rows, candidates):
        drawn.append(rows.shape[0])
        return answer_loss(graphdef, params, examples, rows, candidates)

    monkeypatch.setattr(supervised, "answer_loss", counting)
    for ue_batch_size, expected in ((None, [4, 4]), (2, [2, 4]), (7, [7, 4])):
        algorithm = Supervised(agent, SupervisedConfig(**small, ue_batch_size=ue_batch_size))
        state = jax.eval_shape(algorithm.init, jax.random.PRNGKey(0), hp)
        drawn.clear()
        jax.eval_shape(algorithm.update, state, hp)
        assert drawn[:2] == expected  # the step's UE then BS rows (then the held-out rows)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="ue_batch_size"):
            SupervisedConfig(ue_batch_size=bad)


@pytest.mark.slow
def test_greedy_answers_of_the_distinct_prompts_equal_generation_on_every_prompt(agent):
    params = agent.init(jax.random.PRNGKey(1))
    obs, _ = jax.vmap(ENV.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(2), 6), ENV.default_params
    )
    policy = jax.jit(agent)(params, obs).policy
    answers = jax.jit(lambda p: p.mode())(policy)

    @jax.jit
    def every_prompt(params, ids, mask):
        return generate(nnx.merge(agent.graphdef, params["t5"]), ids, mask, agent.answer_len).ids

    flat = every_prompt(params, policy.ue_ids.reshape(24, -1), policy.ue_mask.reshape(24, -1))
    active = np.asarray(obs.active).reshape(-1)
    np.testing.assert_array_equal(np.asarray(answers.ue).reshape(24, -1)[active], np.asarray(flat)[active])
    counts = policy.answer_counts(answers)
    np.testing.assert_array_equal(counts["answers"], 2 * np.asarray(obs.active).sum(-1))
    assert np.all(np.asarray(counts["valid_answers"]) <= np.asarray(counts["answers"]))
    action = policy.to_action(answers)  # an untrained model's invalid answers act as "nothing null"
    invalid = np.asarray(policy.choices(answers).ue) < 0
    assert np.all(np.asarray(action.ue)[invalid] == 0) and np.all(np.asarray(action.ucm)[invalid] == 0)


@pytest.mark.slow
def test_constrained_decoding_answers_validly_and_the_evaluation_reports_it(agent):
    free = make_agent("llm-pt", ENV)
    constrained = make_agent("llm-pt", ENV, constrained=True)
    params = free.init(jax.random.PRNGKey(3))
    rows = {}
    for name, a in (("free", free), ("constrained", constrained)):
        table = evaluate(
            ENV, LearnedPolicy(a, params, greedy=True), ENV.default_params, [2], 4, name=name, chunk_size=4
        )
        rows[name] = table.rows[0]
    assert rows["constrained"]["valid_answers_pct"] == 100.0
    assert rows["free"]["valid_answers_pct"] < 100.0  # a random T5 rarely spells a candidate
    assert "valid_answers_pct" in table.format()
    # generation compiles once per configuration: other UE counts, episodes and weights reuse it
    compiled = run_episodes._cache_size()
    other = LearnedPolicy(free, free.init(jax.random.PRNGKey(9)), greedy=True)
    evaluate(ENV, other, ENV.default_params.replace(p_arrival=0.9), [3, 4], 2, chunk_size=4)
    assert run_episodes._cache_size() == compiled


@pytest.mark.slow
def test_llm_pt_trains_resumes_and_evaluates_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "pt"
    small = ["--algo", "llm-pt", "--max-ues", "4", "--ues", "2-3", "--episodes", "8", "--examples", "256"]
    small += ["--batch-size", "8", "--train-steps", "2", "--eval-ues", "2", "--eval-episodes", "2"]
    assert main(["train", *small, "--updates", "1", "--out", str(out)]) == 0
    assert main(["train", "--resume", "--updates", "2", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2]
    assert {"loss", "val_loss", "val_accuracy", "train_pairs", "distinct_pairs"} <= set(rows[0])
    assert rows[0]["train_pairs"] + rows[0]["heldout_pairs"] == rows[0]["distinct_pairs"]  # nothing dropped
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(out),
                "--ues",
                "2",
                "--episodes",
                "2",
                "--out",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    (row,) = json.loads((tmp_path / "e.json").read_text())
    assert 0.0 <= row["valid_answers_pct"] <= 100.0
    assert "valid_answers_pct" in capsys.readouterr().out
    # its T5 exported, then loaded by LLM4MAC as a checkpoint: PPO starts from the trained model
    assert main(["export", "--checkpoint", str(out), "--out", str(tmp_path / "t5")]) == 0
    run = Run.build(RunConfig.load(out), out)
    with Checkpoints(out / "checkpoints", create=False) as checkpoints:
        trained = run.member_params(run.restore(checkpoints), 0)["t5"]
    started = make_agent("llm4mac", run.agent.env, model=str(tmp_path / "t5")).init(jax.random.PRNGKey(0))
    chex.assert_trees_all_equal(started["t5"], trained)
    # PPO's exploring start: the same T5 with its LM head at 0.3 of its trained scale
    spread = make_agent("llm4mac", run.agent.env, model=str(tmp_path / "t5"), checkpoint_head_scale=0.3)
    spread_t5 = spread.init(jax.random.PRNGKey(0))["t5"]
    np.testing.assert_allclose(spread_t5["lm_head"]["kernel"], 0.3 * trained["lm_head"]["kernel"], rtol=1e-6)
    chex.assert_trees_all_equal({**spread_t5, "lm_head": trained["lm_head"]}, trained)
    for argv, message in (
        (["--checkpoint", str(out), "--out", str(tmp_path / "t5")], "exists: an export writes a new"),
        (
            ["--checkpoint", str(out), "--member", "1", "--out", str(tmp_path / "m")],
            r"--member must be in \[0, 1\)",
        ),
        (["--checkpoint", str(tmp_path), "--out", str(tmp_path / "m")], "is not a jaxmac run directory"),
    ):
        with pytest.raises(SystemExit, match=message):
            main(["export", *argv])
    mappo = tmp_path / "mappo"
    mappo.mkdir()
    (mappo / "config.json").write_text(json.dumps(RunConfig(algo="mappo").to_json()))
    with pytest.raises(SystemExit, match="is a mappo run: only a language run"):
        main(["export", "--checkpoint", str(mappo), "--out", str(tmp_path / "m")])
    with pytest.raises(SystemExit, match="answer_len must be >= "):
        main(["train", *small, "--answer-len", "2", "--out", str(tmp_path / "bad")])
    with pytest.raises(SystemExit, match="lora_scale must be a finite number, got nan"):
        main(["train", *small, "--lora-rank", "2", "--lora-scale", "nan", "--out", str(tmp_path / "bad")])


@pytest.mark.slow
def test_lora_starts_as_the_base_model_and_fine_tuning_moves_only_its_matrices(agent):
    lora = make_agent("llm-pt", ENV, lora_rank=2, lora_scale=0.5)
    params = lora.init(jax.random.PRNGKey(4))
    base = agent.init(jax.random.PRNGKey(4))  # the same draw of the T5 itself
    obs, _ = jax.vmap(ENV.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(5), 2), ENV.default_params
    )
    answers = [
        jax.jit(lambda p, a=a: a(p, obs).policy.mode().ue)(q) for a, q in ((lora, params), (agent, base))
    ]
    np.testing.assert_array_equal(*answers)
    algorithm = Supervised(
        lora, SupervisedConfig(record_episodes=4, examples=64, batch_size=4, train_steps=2)
    )
    hp = SupervisedHParams(env=ENV.default_params.replace(n_min=2, n_max=3), lr=1e-2)
    state = jax.jit(algorithm.init)(jax.random.PRNGKey(6), hp)
    after, _ = jax.jit(algorithm.update_chunk, static_argnums=2)(state, hp, 1)
    trainable, frozen = algorithm.split(state.params)
    moved, kept = algorithm.split(after.params)
    assert trainable and all("lora" in path for path in trainable)
    assert all(np.array_equal(frozen[p], kept[p]) for p in frozen)
    assert any(not np.array_equal(trainable[p], moved[p]) for p in trainable)
