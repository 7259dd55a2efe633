"""LLM-PT's training (docs/SPEC.md §4): supervised fine-tuning of the T5 on the Baseline's
answers, as one compiled loop.

``init`` records the dataset inside jit (``record_demonstrations``: ``contention_free`` episodes
under the run's environment parameters, ``demo_noise`` of their decisions taken at random, the
distinct (prompt, answer) pairs of each agent group, a held-out share split off by hash) and
holds it in the state, so checkpoints and resume carry it. One update is ``train_steps``
gradient steps, each on ``batch_size`` training pairs of the BS and ``ue_batch_size`` (default
``batch_size``) of the UEs, drawn with probability proportional to the number of times each pair
was recorded to the power ``frequency_power`` (0, the default: uniformly over the distinct
pairs). A step updates the agent's ``trainable`` parameters (all of them, or with LoRA its
matrices alone); the loss is the teacher-forced cross-entropy of the answer's tokens (``</s>``
included), averaged over the tokens of each group, then over the two groups. With
``ema_updates`` H > 1 the agent acts (evaluation, export, validation) with an exponential moving
average of the trainable parameters, each update's weighted 1/H (``policy_params``). After the
steps the held-out pairs give ``val_loss`` and ``val_accuracy``, the share of held-out answers
that greedy decoding reproduces exactly (every token the argmax under teacher forcing: the same
thing, without generating), and ``val_accuracy_weighted``, that share with each pair counted as
often as it was recorded (the share of the recorded held-out decisions reproduced).
``demo_noise``, ``ema_updates`` and ``ue_batch_size`` are jaxmac's, off by default: docs/SPEC.md
§4 records the Baseline's own episodes (``demo_noise`` > 0 adds states they never reach, still
answered by the Baseline) and says nothing of averaging or of each group's share of a batch.
Every update also reports ``train_pairs``, ``heldout_pairs`` and ``distinct_pairs``: when the
first two add up to less than the third, the capacities (``examples``) dropped recorded pairs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx, struct, traverse_util
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxmac.agents import Params
from jaxmac.algorithms.base import (
    check_counts,
    guarded_step,
    model_shards,
    optimizer,
    param_specs,
    run_updates,
    specs_like,
    store_checked,
)
from jaxmac.algorithms.demonstrations import Demonstrations, Examples, record_demonstrations
from jaxmac.env import EnvParams
from jaxmac.models.actor import CandidateSet
from jaxmac.protocols import make_protocol
from jaxmac.settings import setting

#: The metrics of every update.
SUPERVISED_METRICS = (
    "loss",
    "grad_norm",
    "nonfinite",
    "val_loss",
    "val_accuracy",
    "val_accuracy_weighted",
    "ue_val_accuracy",
    "bs_val_accuracy",
    "train_pairs",
    "heldout_pairs",
    "distinct_pairs",
)


@dataclasses.dataclass(frozen=True)
class SupervisedConfig:
    """Static settings (changing one recompiles)."""

    record_episodes: int = setting(256, "Baseline episodes recorded for the dataset", flag="episodes")
    examples: int = setting(4096, "training pairs kept per agent group (capacity)")
    heldout_percent: int = setting(10, "percent of the distinct pairs held out for validation")
    batch_size: int = setting(64, "pairs of each agent group per gradient step (with ue_batch_size: the BS)")
    ue_batch_size: int | None = setting(
        None,
        "pairs of the UE group per gradient step (default batch_size): the UEs' answers are "
        "learned long before the BS's, so fewer UE pairs leave a step's compute to the BS",
        kind=int,
    )
    train_steps: int = setting(25, "gradient steps per update")
    ema_updates: int = setting(
        1,
        "act with an exponential moving average of the trained parameters over about this many "
        "updates (1: the trained parameters themselves)",
    )
    updates: int = setting(20, "updates in total")

    def __post_init__(self) -> None:
        check_counts(self)
        if self.heldout_percent >= 100:
            raise ValueError(f"heldout_percent must be in [1, 99], got {self.heldout_percent}")


#: Allowed (low, high, low inclusive) of every scalar of ``SupervisedHParams``.
SUPERVISED_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, float("inf"), False),
    "max_grad_norm": (0.0, float("inf"), False),
    "frequency_power": (0.0, float("inf"), True),
    "demo_noise": (0.0, 1.0, True),
}


@struct.dataclass
class SupervisedHParams:
    """Traced hyperparameters; stack them on a leading axis to sweep."""

    lr: Any = setting(1e-3, "Adam learning rate")
    max_grad_norm: Any = setting(1.0, "gradient-norm clip")
    frequency_power: Any = setting(
        0.0,
        "draw training pairs with probability proportional to occurrences**this "
        "(0: uniform over distinct pairs, 1: as often as recorded)",
    )
    demo_noise: Any = setting(
        0.0,
        "while recording (at the run's start), each decision taken is a random one with this "
        "probability (the answer recorded stays the Baseline's), so the dataset holds states a "
        "learner's mistakes lead to",
    )
    env: EnvParams = dataclasses.field(default_factory=EnvParams)

    def __post_init__(self) -> None:
        store_checked(self, SUPERVISED_RANGES)


@struct.dataclass
class SupervisedState:
    params: Params
    opt_state: Any
    data: Demonstrations
    key: jax.Array
    update: jax.Array  # () int32 updates done
    # the trainable parameters' moving average (``SupervisedConfig.ema_updates``), or None at 1
    average: Any = None


def answer_loss(
    graphdef: nnx.GraphDef, params: Params, examples: Examples, rows: jax.Array, candidates: CandidateSet
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Teacher-forced cross-entropy of the answers of ``examples``' ``rows`` (B,), counting the
    rows below ``examples.count`` only -> (summed negative log-likelihood of their answer
    tokens, the number of those tokens, (B,) bool: the row counts and greedy decoding gives its
    answer exactly)."""
    t5 = nnx.merge(graphdef, params)
    prompts, answers = examples.prompts[rows], examples.answers[rows]
    mask = prompts != t5.cfg.pad_token_id
    target, target_mask = candidates.ids[answers], candidates.mask[answers]
    _, logits = t5.teacher_forced(target, target_mask, t5.encode(prompts, mask), mask)
    token = jnp.take_along_axis(jax.nn.log_softmax(logits), target[..., None], axis=-1)[..., 0]
    counted = target_mask & (rows < examples.count)[:, None]
    exact = jnp.all((jnp.argmax(logits, -1) == target) | ~target_mask, axis=-1) & (rows < examples.count)
    return -jnp.sum(jnp.where(counted, token, 0.0)), jnp.sum(counted), exact


@dataclasses.dataclass(frozen=True)
class Supervised:
    """Supervised fine-tuning of a generating agent (``LLMPTAgent``) as an
    ``jaxmac.algorithms.Algorithm``; see the module docstring. The parallel episodes exist only
    while ``init`` records the dataset, so only the parameters and their optimizer state are
    sharded (over the mesh's model axis, if it has one); the rest is replicated."""

    agent: Any  # an LLMPTAgent: compiler, candidates, graphdef, init, trainable
    config: SupervisedConfig = SupervisedConfig()
    mesh: Mesh | None = None
    metric_names: ClassVar[tuple[str, ...]] = SUPERVISED_METRICS

    @property
    def steps_per_update(self) -> int:
        """No environment steps: an update learns from the recorded pairs."""
        return 0

    def partition_specs(self) -> SupervisedState:
        abstract = jax.eval_shape(
            self.init, jax.random.PRNGKey(0), SupervisedHParams(env=self.agent.env.default_params)
        )
        replicated = specs_like(abstract, P())
        return replicated.replace(
            params=param_specs(self.mesh, abstract.params),
            opt_state=param_specs(self.mesh, abstract.opt_state),
            average=param_specs(self.mesh, abstract.average),
        )

    def policy_params(self, state: SupervisedState) -> Params:
        """The parameters the agent acts with: the trained ones, or with ``ema_updates`` > 1
        their moving average (the frozen rest as it is)."""
        if state.average is None:
            return state.params
        return self.join(state.average, self.split(state.params)[1])

    def split(self, params: Params) -> tuple[dict, dict]:
        """(the parameters fine-tuning updates, the frozen rest), flat dicts by path (with LoRA,
        the LoRA matrices are the first; otherwise every parameter is)."""
        flat = traverse_util.flatten_dict(params)
        trainable = {path: leaf for path, leaf in flat.items() if self.agent.trainable(path)}
        return trainable, {path: leaf for path, leaf in flat.items() if path not in trainable}

    @staticmethod
    def join(trainable: dict, frozen: dict) -> Params:
        return traverse_util.unflatten_dict(trainable | frozen)

    def init(self, key: jax.Array, hp: SupervisedHParams) -> SupervisedState:
        key, init_key, record_key = jax.random.split(key, 3)
        params = self.agent.init(init_key)
        data = record_demonstrations(
            self.agent.compiler,
            make_protocol("contention_free", self.agent.env),
            hp.env,
            record_key,
            episodes=self.config.record_episodes,
            capacity=self.config.examples,
            heldout_percent=self.config.heldout_percent,
            noise=hp.demo_noise,
        )
        trainable = self.split(params)[0]
        return SupervisedState(
            params=params,
            opt_state=optimizer(hp, flat=model_shards(self.mesh) == 1).init(trainable),
            data=data,
            key=key,
            update=jnp.zeros((), jnp.int32),
            average=trainable if self.config.ema_updates > 1 else None,
        )

    def train(self, key: jax.Array, hp: SupervisedHParams) -> tuple[SupervisedState, dict[str, jax.Array]]:
        return self.update_chunk(self.init(key, hp), hp, self.config.updates)

    def update_chunk(
        self, state: SupervisedState, hp: SupervisedHParams, n: int, count: Any = None
    ) -> tuple[SupervisedState, dict[str, jax.Array]]:
        return run_updates(lambda state: self.update(state, hp), state, n, count, self.metric_names)

    def loss(self, params: Params, data: Demonstrations, ue_rows: jax.Array, bs_rows: jax.Array) -> jax.Array:
        """The mean over the two agent groups of each group's mean token cross-entropy."""
        graphdef, candidates = self.agent.graphdef, self.agent.candidates
        ue_nll, ue_tokens, _ = answer_loss(graphdef, params["t5"], data.ue_train, ue_rows, candidates.ue)
        bs_nll, bs_tokens, _ = answer_loss(graphdef, params["t5"], data.bs_train, bs_rows, candidates.bs)
        return (ue_nll / ue_tokens + bs_nll / bs_tokens) / 2

    def update(
        self, state: SupervisedState, hp: SupervisedHParams
    ) -> tuple[SupervisedState, dict[str, jax.Array]]:
        data = state.data
        ue_batch = self.config.ue_batch_size or self.config.batch_size
        key, steps_key = jax.random.split(state.key)

        trainable, frozen = self.split(state.params)

        def draw(key: jax.Array, examples: Examples, batch: int) -> jax.Array:
            """``batch`` row indices below ``examples.count``, each with probability proportional
            to its occurrences ** ``frequency_power`` (row 0, masked by the loss, when empty)."""
            live = jnp.arange(examples.answers.shape[0]) < examples.count
            logits = hp.frequency_power * jnp.log(jnp.maximum(examples.occurrences, 1).astype(jnp.float32))
            return jax.random.categorical(key, jnp.where(live, logits, -jnp.inf), shape=(batch,))

        def step(carry: tuple, step_key: jax.Array) -> tuple[tuple, dict[str, jax.Array]]:
            trainable, opt_state = carry
            ue_key, bs_key = jax.random.split(step_key)
            ue_rows = draw(ue_key, data.ue_train, ue_batch)
            bs_rows = draw(bs_key, data.bs_train, self.config.batch_size)
            loss_of = lambda t: self.loss(self.join(t, frozen), data, ue_rows, bs_rows)  # noqa: E731
            loss, grads = jax.value_and_grad(loss_of)(trainable)
            trainable, opt_state, terms = guarded_step(
                hp, loss, grads, trainable, opt_state, flat=model_shards(self.mesh) == 1
            )
            return (trainable, opt_state), {"loss": loss, **terms}

        steps_keys = jax.random.split(steps_key, self.config.train_steps)
        (trainable, opt_state), terms = jax.lax.scan(step, (trainable, state.opt_state), steps_keys)
        average = state.average
        if average is not None:  # after each update, a weight of 1 / ema_updates on the new parameters
            keep = 1.0 - 1.0 / self.config.ema_updates
            average = jax.tree.map(lambda a, t: keep * a + (1.0 - keep) * t, average, trainable)
        state = state.replace(
            params=self.join(trainable, frozen),
            opt_state=opt_state,
            key=key,
            update=state.update + 1,
            average=average,
        )
        metrics = {"loss": jnp.mean(terms["loss"]), "grad_norm": jnp.mean(terms["grad_norm"])}
        metrics["nonfinite"] = jnp.sum(terms["nonfinite"])
        metrics |= self.validate(self.policy_params(state), data)
        return state, metrics

    def validate(self, params: Params, data: Demonstrations) -> dict[str, jax.Array]:
        """Loss and exact-answer accuracy on every held-out pair (each group's, and both), of the
        parameters the agent acts with (``policy_params``)."""
        graphdef, candidates = self.agent.graphdef, self.agent.candidates
        totals = {}
        for group, examples, group_candidates in (
            ("ue", data.ue_heldout, candidates.ue),
            ("bs", data.bs_heldout, candidates.bs),
        ):
            rows = jnp.arange(examples.answers.shape[0])
            nll, tokens, exact = answer_loss(graphdef, params["t5"], examples, rows, group_candidates)
            recorded = jnp.sum(examples.occurrences), jnp.sum(jnp.where(exact, examples.occurrences, 0))
            totals[group] = (nll, tokens, jnp.sum(exact), examples.count, *recorded)
        (ue_nll, ue_tokens, ue_exact, ue_n, ue_rec, ue_rec_exact) = totals["ue"]
        (bs_nll, bs_tokens, bs_exact, bs_n, bs_rec, bs_rec_exact) = totals["bs"]
        per = lambda a, b: a / jnp.maximum(b, 1)  # noqa: E731
        return {
            "val_loss": (per(ue_nll, ue_tokens) + per(bs_nll, bs_tokens)) / 2,
            "val_accuracy": per(ue_exact + bs_exact, ue_n + bs_n),
            "val_accuracy_weighted": per(ue_rec_exact + bs_rec_exact, ue_rec + bs_rec),
            "ue_val_accuracy": per(ue_exact, ue_n),
            "bs_val_accuracy": per(bs_exact, bs_n),
            "train_pairs": (data.ue_train.count + data.bs_train.count).astype(jnp.float32),
            "heldout_pairs": (ue_n + bs_n).astype(jnp.float32),
            "distinct_pairs": jnp.sum(data.distinct).astype(jnp.float32),
        }
