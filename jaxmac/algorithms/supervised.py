"""LLM-PT's training (docs/SPEC.md §4): supervised fine-tuning of the T5 on the Baseline's
answers, as one compiled loop.

``init`` records the dataset inside jit (``record_demonstrations``: ``contention_free``
episodes under the run's environment parameters, the distinct (prompt, answer) pairs of each
agent group, a held-out share split off by hash) and holds it in the state, so checkpoints
and resume carry it. One update is ``train_steps`` gradient steps, each on ``batch_size``
training pairs of each agent group drawn uniformly (updating the agent's ``trainable``
parameters: all of them, or with LoRA its matrices alone): the loss is the teacher-forced
cross-entropy of the answer's tokens (``</s>`` included), averaged over the tokens of each
group, then over the two groups. After them the held-out pairs give ``val_loss`` and
``val_accuracy``, the share of held-out answers that greedy decoding reproduces exactly
(every token the argmax under teacher forcing: the same thing, without generating). Every
update also reports ``train_pairs``, ``heldout_pairs`` and ``distinct_pairs``: when the first
two add up to less than the third, the capacities (``examples``) dropped recorded pairs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct, traverse_util
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxmac.agents import Params
from jaxmac.algorithms.base import (
    check_counts,
    guarded_step,
    optimizer,
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
    batch_size: int = setting(64, "pairs of each agent group per gradient step")
    train_steps: int = setting(25, "gradient steps per update")
    updates: int = setting(20, "updates in total")

    def __post_init__(self) -> None:
        check_counts(self)
        if self.heldout_percent >= 100:
            raise ValueError(f"heldout_percent must be in [1, 99], got {self.heldout_percent}")


#: Allowed (low, high, low inclusive) of every scalar of ``SupervisedHParams``.
SUPERVISED_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, float("inf"), False),
    "max_grad_norm": (0.0, float("inf"), False),
}


@struct.dataclass
class SupervisedHParams:
    """Traced hyperparameters; stack them on a leading axis to sweep."""

    lr: Any = setting(1e-3, "Adam learning rate")
    max_grad_norm: Any = setting(1.0, "gradient-norm clip")
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
    while ``init`` records the dataset, so nothing is sharded: the state is replicated."""

    agent: Any  # an LLMPTAgent: compiler, candidates, graphdef, init, trainable
    config: SupervisedConfig = SupervisedConfig()
    mesh: Mesh | None = None

    @property
    def steps_per_update(self) -> int:
        """No environment steps: an update learns from the recorded pairs."""
        return 0

    def partition_specs(self) -> SupervisedState:
        abstract = jax.eval_shape(
            self.init, jax.random.PRNGKey(0), SupervisedHParams(env=self.agent.env.default_params)
        )
        return specs_like(abstract, P())

    def policy_params(self, state: SupervisedState) -> Params:
        return state.params

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
        )
        return SupervisedState(
            params=params,
            opt_state=optimizer(hp).init(self.split(params)[0]),
            data=data,
            key=key,
            update=jnp.zeros((), jnp.int32),
        )

    def train(self, key: jax.Array, hp: SupervisedHParams) -> tuple[SupervisedState, dict[str, jax.Array]]:
        return self.update_chunk(self.init(key, hp), hp, self.config.updates)

    def update_chunk(
        self, state: SupervisedState, hp: SupervisedHParams, n: int, count: Any = None
    ) -> tuple[SupervisedState, dict[str, jax.Array]]:
        return run_updates(lambda state: self.update(state, hp), state, n, count, SUPERVISED_METRICS)

    def loss(self, params: Params, data: Demonstrations, ue_rows: jax.Array, bs_rows: jax.Array) -> jax.Array:
        """The mean over the two agent groups of each group's mean token cross-entropy."""
        graphdef, candidates = self.agent.graphdef, self.agent.candidates
        ue_nll, ue_tokens, _ = answer_loss(graphdef, params["t5"], data.ue_train, ue_rows, candidates.ue)
        bs_nll, bs_tokens, _ = answer_loss(graphdef, params["t5"], data.bs_train, bs_rows, candidates.bs)
        return (ue_nll / ue_tokens + bs_nll / bs_tokens) / 2

    def update(
        self, state: SupervisedState, hp: SupervisedHParams
    ) -> tuple[SupervisedState, dict[str, jax.Array]]:
        data, batch = state.data, self.config.batch_size
        key, steps_key = jax.random.split(state.key)

        trainable, frozen = self.split(state.params)

        def step(carry: tuple, step_key: jax.Array) -> tuple[tuple, dict[str, jax.Array]]:
            trainable, opt_state = carry
            ue_key, bs_key = jax.random.split(step_key)
            ue_rows = jax.random.randint(ue_key, (batch,), 0, jnp.maximum(data.ue_train.count, 1))
            bs_rows = jax.random.randint(bs_key, (batch,), 0, jnp.maximum(data.bs_train.count, 1))
            loss_of = lambda t: self.loss(self.join(t, frozen), data, ue_rows, bs_rows)  # noqa: E731
            loss, grads = jax.value_and_grad(loss_of)(trainable)
            trainable, opt_state, terms = guarded_step(hp, loss, grads, trainable, opt_state)
            return (trainable, opt_state), {"loss": loss, **terms}

        steps_keys = jax.random.split(steps_key, self.config.train_steps)
        (trainable, opt_state), terms = jax.lax.scan(step, (trainable, state.opt_state), steps_keys)
        params = self.join(trainable, frozen)
        metrics = {"loss": jnp.mean(terms["loss"]), "grad_norm": jnp.mean(terms["grad_norm"])}
        metrics["nonfinite"] = jnp.sum(terms["nonfinite"])
        metrics |= self.validate(params, data)
        state = state.replace(params=params, opt_state=opt_state, key=key, update=state.update + 1)
        return state, metrics

    def validate(self, params: Params, data: Demonstrations) -> dict[str, jax.Array]:
        """Loss and exact-answer accuracy on every held-out pair (each group's, and both)."""
        graphdef, candidates = self.agent.graphdef, self.agent.candidates
        totals = {}
        for group, examples, group_candidates in (
            ("ue", data.ue_heldout, candidates.ue),
            ("bs", data.bs_heldout, candidates.bs),
        ):
            rows = jnp.arange(examples.answers.shape[0])
            nll, tokens, exact = answer_loss(graphdef, params["t5"], examples, rows, group_candidates)
            totals[group] = (nll, tokens, jnp.sum(exact), examples.count)
        (ue_nll, ue_tokens, ue_exact, ue_n), (bs_nll, bs_tokens, bs_exact, bs_n) = totals["ue"], totals["bs"]
        per = lambda a, b: a / jnp.maximum(b, 1)  # noqa: E731
        return {
            "val_loss": (per(ue_nll, ue_tokens) + per(bs_nll, bs_tokens)) / 2,
            "val_accuracy": per(ue_exact + bs_exact, ue_n + bs_n),
            "ue_val_accuracy": per(ue_exact, ue_n),
            "bs_val_accuracy": per(bs_exact, bs_n),
            "train_pairs": (data.ue_train.count + data.bs_train.count).astype(jnp.float32),
            "heldout_pairs": (ue_n + bs_n).astype(jnp.float32),
            "distinct_pairs": jnp.sum(data.distinct).astype(jnp.float32),
        }
