"""PPO for every learner, as one compiled loop (PureJaxRL style; docs/SPEC.md §3, paper Eq. 4-6).

``Trainer(agent, config)`` holds the static structure; ``HParams`` holds what a sweep varies
(learning rate, entropy coefficient, clip epsilon, GAE's gamma and lambda, the environment's
parameters...), as traced values. One update is: a rollout of ``rollout_len`` TTIs of
``num_envs`` parallel episodes (``lax.scan`` over TTIs, the environment vmapped over episodes,
each drawing its UE count in [n_min, n_max] at every reset), GAE on the team reward, then
``epochs`` x ``minibatches`` clipped-PPO steps on the fused joint log-probability (Eq. 11)
with Adam and gradient-norm clipping. ``make_train(agent, config)`` returns
``train(key, hparams)``: init plus ``config.updates`` updates, one jittable function, so
``jax.vmap(train)`` over keys and stacked ``HParams`` is a sweep.

Given a device ``mesh`` (the host loop's), the episode axis is constrained to be sharded over
its ``EPISODE_AXIS``; parameters are replicated and the compiler averages the gradients across
devices. ``Trainer`` is an ``Algorithm``: it neither creates the mesh nor jits anything.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxmac.agents import Agent, Params
from jaxmac.algorithms.base import (
    EPISODE_AXIS,
    check_counts,
    check_mesh,
    constrain_episodes,
    guarded_step,
    model_shards,
    optimizer,
    param_specs,
    reset_episodes,
    run_updates,
    specs_like,
    store_checked,
)
from jaxmac.algorithms.rollout import rollout
from jaxmac.env import EnvParams, EnvState, Observation
from jaxmac.settings import setting


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Static settings: they fix shapes and loop lengths (changing one recompiles)."""

    num_envs: int = setting(1024, "parallel episodes", flag="episodes")
    rollout_len: int | None = setting(None, "TTIs per update (default episode-len)", kind=int)
    epochs: int = setting(4, "passes over each rollout")
    minibatches: int = setting(4, "minibatches per epoch (num_envs * rollout_len / minibatches transitions)")
    updates: int = setting(100, "updates in total")

    def __post_init__(self) -> None:
        check_counts(self)


@dataclasses.dataclass(frozen=True)
class LanguagePPOConfig(PPOConfig):
    """LLM4MAC's static settings: ``PPOConfig`` with 2 epochs x 2 minibatches by default (the
    ``llm4mac-cpu`` preset's). A language step costs the distinct prompts of its minibatch, and
    prompts repeat across minibatches and epochs, so epochs x minibatches multiplies the T5's
    work: on an untrained tiny model's 64-episode rollout (2-4 UEs), each quarter of it held 70-74%
    of the whole's distinct UE prompts and 53-56% of its distinct BS prompts, and one epoch of 4
    minibatches took 9.25 s against 3.16 s for one minibatch of everything (this CPU; README,
    "Compiled programs"). docs/SPEC.md §3 reports the authors' 4 epochs (minibatches of 128
    transitions) for Flan-T5-base as their setting; this default departs from it for cost."""

    epochs: int = setting(2, "passes over each rollout")
    minibatches: int = setting(2, "minibatches per epoch (num_envs * rollout_len / minibatches transitions)")


#: Allowed (low, high, low inclusive) of every scalar of ``HParams``.
HPARAM_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, float("inf"), False),
    "ent_coef": (0.0, float("inf"), True),
    "clip_eps": (0.0, float("inf"), False),
    "vf_coef": (0.0, float("inf"), True),
    "kl_coef": (0.0, float("inf"), True),
    "max_grad_norm": (0.0, float("inf"), False),
    "gamma": (0.0, 1.0, True),
    "gae_lambda": (0.0, 1.0, True),
}


@struct.dataclass
class HParams:
    """Traced hyperparameters (docs/SPEC.md §3 defaults); stack them on a leading axis to sweep."""

    lr: Any = setting(3e-4, "Adam learning rate (the authors used 1e-6 to fine-tune Flan-T5-base)")
    ent_coef: Any = setting(0.01, "entropy bonus")
    clip_eps: Any = setting(0.2, "PPO ratio clip, also the value clip")
    vf_coef: Any = setting(0.5, "value-loss weight")
    kl_coef: Any = setting(0.0, "KL penalty to the rollout policy (0: off)")
    max_grad_norm: Any = setting(0.5, "gradient-norm clip")
    gamma: Any = setting(0.99, "discount")
    gae_lambda: Any = setting(0.99, "GAE lambda")
    env: EnvParams = dataclasses.field(default_factory=EnvParams)

    def __post_init__(self) -> None:
        store_checked(self, HPARAM_RANGES)


@struct.dataclass
class RunnerState:
    """Everything a run needs to continue: what a checkpoint holds."""

    params: Params
    opt_state: Any
    env_state: EnvState  # (E, ...) one state per parallel episode
    obs: Observation  # (E, ...)
    key: jax.Array
    update: jax.Array  # () int32, updates done


@struct.dataclass
class Transition:
    """One TTI of the rollout for every episode (leading (T, E) when stacked)."""

    obs: Observation
    sample: Any  # the policy's sample (opaque to PPO: ``JointPolicy.sample``)
    log_prob: jax.Array  # joint log-probability of the sample (for LLM4MAC and MAPPO, Eq. 11)
    value: jax.Array
    reward: jax.Array
    done: jax.Array


@struct.dataclass
class Batch:
    """What one PPO step trains on (one leading axis)."""

    obs: Observation
    sample: Any  # the rollout policy's sample
    log_prob: jax.Array  # under the rollout policy
    value: jax.Array  # under the rollout critic
    advantage: jax.Array
    target: jax.Array  # GAE return: advantage + value


def gae(
    reward: jax.Array, value: jax.Array, done: jax.Array, last_value: jax.Array, gamma: Any, lam: Any
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation over (T, E) rewards. ``done[t]`` ends the episode after
    TTI t (truncation at ``episode_len`` is treated as the end: nothing is bootstrapped across
    a reset). Returns ``(advantage, target)``, target = advantage + value."""

    def back(carry: tuple[jax.Array, jax.Array], x: tuple) -> tuple[tuple, jax.Array]:
        next_advantage, next_value = carry
        r, v, d = x
        live = 1.0 - d.astype(jnp.float32)
        delta = r + gamma * next_value * live - v
        advantage = delta + gamma * lam * live * next_advantage
        return (advantage, v), advantage

    init = (jnp.zeros_like(last_value), last_value)
    _, advantage = jax.lax.scan(back, init, (reward, value, done), reverse=True)
    return advantage, advantage + value


def training_batch(transitions: Transition, last_value: jax.Array, hp: Any) -> Batch:
    """GAE on (T, E) ``transitions`` (``last_value`` (E,) bootstraps the rollout's end), then
    the ``Batch`` PPO trains on, flattened to one axis of T * E transitions."""
    advantage, target = gae(
        transitions.reward, transitions.value, transitions.done, last_value, hp.gamma, hp.gae_lambda
    )
    batch = Batch(
        obs=transitions.obs,
        sample=transitions.sample,
        log_prob=transitions.log_prob,
        value=transitions.value,
        advantage=advantage,
        target=target,
    )
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), batch)


def ppo_objective(
    log_prob: jax.Array, entropy: jax.Array, value: jax.Array, batch: Batch, hp: HParams
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The PPO loss (Eq. 4-6) from the new policy's joint log-probabilities, entropies and
    values (all (N,)); ``batch.advantage`` A is already normalised (``normalize``):

        ratio  = exp(log_prob - old_log_prob)
        L_clip = -mean(min(ratio A, clip(ratio, 1 - eps, 1 + eps) A))
        L_V    = 0.5 mean(max((V - R)^2, (old_V + clip(V - old_V, -eps, eps) - R)^2))
        KL     = mean((ratio - 1) - log ratio)       (k3 estimator of KL(old || new), >= 0)
        loss   = L_clip + vf_coef L_V - ent_coef mean(entropy) + kl_coef KL
    """
    advantage = batch.advantage
    log_ratio = log_prob - batch.log_prob
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - hp.clip_eps, 1.0 + hp.clip_eps)
    policy_loss = -jnp.mean(jnp.minimum(ratio * advantage, clipped * advantage))
    value_clipped = batch.value + jnp.clip(value - batch.value, -hp.clip_eps, hp.clip_eps)
    value_loss = 0.5 * jnp.mean(
        jnp.maximum(jnp.square(value - batch.target), jnp.square(value_clipped - batch.target))
    )
    kl = jnp.mean((ratio - 1.0) - log_ratio)
    mean_entropy = jnp.mean(entropy)
    loss = policy_loss + hp.vf_coef * value_loss - hp.ent_coef * mean_entropy + hp.kl_coef * kl
    terms = {
        "loss": loss,
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": mean_entropy,
        "approx_kl": kl,
        "clip_frac": jnp.mean((jnp.abs(ratio - 1.0) > hp.clip_eps).astype(jnp.float32)),
    }
    return loss, terms


def normalize(advantage: jax.Array) -> jax.Array:
    """Advantage normalisation over a minibatch: (A - mean A) / (std A + 1e-8)."""
    return (advantage - advantage.mean()) / (advantage.std() + 1e-8)


#: What every update reports (one float32 scalar each): the rollout's episode statistics, then
#: the means of the PPO loss terms over its steps, and the steps skipped as non-finite.
UPDATE_METRICS = (
    "episodes",
    "return",
    "throughput",
    "loss",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_frac",
    "grad_norm",
    "nonfinite",
)


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """PPO for one agent, as an ``jaxmac.algorithms.Algorithm``; see the module docstring.

    ``init(key, hp)`` builds a ``RunnerState``; ``update_chunk(state, hp, n, count)`` does
    ``count`` <= ``n`` updates and returns per-update metrics (n,); ``train(key, hp)`` does both
    for ``config.updates``. All are pure and jittable; the host loop (``jaxmac.training``) jits
    ``update_chunk`` once and calls it in chunks.
    """

    agent: Agent
    config: PPOConfig = PPOConfig()
    mesh: Mesh | None = None  # the host loop's device mesh (None: no sharding constraints)
    metric_names: ClassVar[tuple[str, ...]] = UPDATE_METRICS

    def __post_init__(self) -> None:
        check_mesh(self.mesh, self.config.num_envs)
        steps = self.config.num_envs * self.rollout_len
        if steps % self.config.minibatches:
            raise ValueError(
                f"minibatches = {self.config.minibatches} must divide num_envs * rollout_len = {steps}"
            )

    def partition_specs(self) -> RunnerState:
        """Environment states and observations split over the episode axis, parameters and
        their optimizer state over the model axis (``param_specs``), the rest replicated."""
        env = self.agent.env
        abstract = jax.eval_shape(self.init, jax.random.PRNGKey(0), HParams(env=env.default_params))
        return abstract.replace(
            params=param_specs(self.mesh, abstract.params),
            opt_state=param_specs(self.mesh, abstract.opt_state),
            env_state=specs_like(abstract.env_state, P(EPISODE_AXIS)),
            obs=specs_like(abstract.obs, P(EPISODE_AXIS)),
            key=P(),
            update=P(),
        )

    def policy_params(self, state: RunnerState) -> Params:
        return state.params

    @property
    def rollout_len(self) -> int:
        return self.config.rollout_len or self.agent.env.episode_len

    @property
    def steps_per_update(self) -> int:
        return self.config.num_envs * self.rollout_len

    def _episodes(self, tree: Any) -> Any:
        return constrain_episodes(self.mesh, tree)

    def init(self, key: jax.Array, hp: HParams) -> RunnerState:
        env = self.agent.env
        key, init_key, reset_key = jax.random.split(key, 3)
        params = self.agent.init(init_key)
        obs, env_state = reset_episodes(env, reset_key, self.config.num_envs, hp.env, self.mesh)
        return RunnerState(
            params=params,
            opt_state=optimizer(hp, flat=model_shards(self.mesh) == 1).init(params),
            env_state=env_state,
            obs=obs,
            key=key,
            update=jnp.zeros((), jnp.int32),
        )

    def train(self, key: jax.Array, hp: HParams) -> tuple[RunnerState, dict[str, jax.Array]]:
        return self.update_chunk(self.init(key, hp), hp, self.config.updates)

    def update_chunk(
        self, state: RunnerState, hp: HParams, n: int, count: Any = None
    ) -> tuple[RunnerState, dict[str, jax.Array]]:
        """Up to ``n`` updates (``n`` static: it sizes the metrics, (n,) per name of
        ``UPDATE_METRICS``). ``count`` (default ``n``; traced) says how many are done, so a
        shorter chunk (a run's last, a resume's first) runs the program compiled for ``n``
        instead of compiling another; metrics past ``count`` are NaN."""
        return run_updates(lambda state: self.update(state, hp), state, n, count, self.metric_names)

    # ------------------------------------------------------------------ one update
    def rollout(
        self, state: RunnerState, hp: HParams
    ) -> tuple[RunnerState, Transition, dict[str, jax.Array], jax.Array]:
        """A rollout of ``rollout_len`` TTIs keeping each sample's log-probability and value;
        also the value that bootstraps GAE at its end."""
        agent = self.agent
        (env_state, obs, key), steps, metrics = rollout(
            agent,
            state.params,
            hp.env,
            state.env_state,
            state.obs,
            state.key,
            self.rollout_len,
            record=lambda out, sample: (out.policy.log_prob(sample), out.value),
            constrain=self._episodes,
        )
        log_prob, value = steps.record
        transitions = Transition(
            steps.obs, steps.sample, log_prob=log_prob, value=value, reward=steps.reward, done=steps.done
        )
        if self.rollout_len % agent.env.episode_len == 0:
            # Every episode starts together (at init) and lasts episode_len TTIs, so such a rollout
            # ends on the last TTI of every episode: GAE never bootstraps, and the compiled program
            # holds one model call fewer.
            last_value = jnp.zeros(self.config.num_envs)
        else:
            last_value = agent(state.params, obs).value
        return state.replace(env_state=env_state, obs=obs, key=key), transitions, metrics, last_value

    def update(self, state: RunnerState, hp: HParams) -> tuple[RunnerState, dict[str, jax.Array]]:
        """One update: a rollout, then ``learn`` on it."""
        state, transitions, metrics, last_value = self.rollout(state, hp)
        state, terms = self.learn(state, transitions, last_value, hp)
        return state, metrics | terms

    def learn(
        self, state: RunnerState, transitions: Transition, last_value: jax.Array, hp: HParams
    ) -> tuple[RunnerState, dict[str, jax.Array]]:
        """GAE on (T, E) ``transitions``, then ``epochs`` x ``minibatches`` PPO steps; returns the
        new state and the loss terms (means over the steps; ``nonfinite`` counts skipped steps)."""
        batch = training_batch(transitions, last_value, hp)
        size = batch.log_prob.shape[0]

        def sgd_step(carry: tuple, minibatch: Batch) -> tuple[tuple, dict[str, jax.Array]]:
            params, opt_state, terms = self.ppo_step(*carry, minibatch, hp)
            return (params, opt_state), terms

        def epoch(carry: tuple, key: jax.Array) -> tuple[tuple, dict[str, jax.Array]]:
            order = jax.random.permutation(key, size)
            minibatches = jax.tree.map(
                lambda x: x[order].reshape(self.config.minibatches, -1, *x.shape[1:]), batch
            )
            return jax.lax.scan(sgd_step, carry, minibatches)

        key, epoch_key = jax.random.split(state.key)
        (params, opt_state), terms = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(epoch_key, self.config.epochs)
        )
        metrics = {name: jnp.mean(v) for name, v in terms.items() if name != "nonfinite"}
        metrics["nonfinite"] = jnp.sum(terms["nonfinite"])
        state = state.replace(params=params, opt_state=opt_state, key=key, update=state.update + 1)
        return state, metrics

    def loss(self, params: Params, minibatch: Batch, hp: HParams) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The PPO loss of a minibatch (its advantage already normalised) and its terms."""
        out = self.agent(params, minibatch.obs)
        log_prob = out.policy.log_prob(minibatch.sample)
        return ppo_objective(log_prob, out.policy.entropy(), out.value, minibatch, hp)

    def ppo_step(
        self, params: Params, opt_state: Any, minibatch: Batch, hp: HParams
    ) -> tuple[Params, Any, dict[str, jax.Array]]:
        """One clipped-PPO step on a minibatch (raw advantages): normalise the advantage, take
        the gradient, clip and apply Adam. A step with a non-finite loss or gradient is skipped
        (``nonfinite`` = 1) so one bad minibatch cannot poison the parameters."""
        minibatch = minibatch.replace(advantage=normalize(minibatch.advantage))
        (_, terms), grads = jax.value_and_grad(self.loss, has_aux=True)(params, minibatch, hp)
        params, opt_state, step = guarded_step(
            hp, terms["loss"], grads, params, opt_state, flat=model_shards(self.mesh) == 1
        )
        return params, opt_state, terms | step


def make_train(agent: Agent, config: PPOConfig, mesh: Mesh | None = None) -> Any:
    """PureJaxRL's entry point: ``train(key, hparams) -> (RunnerState, metrics)``, jittable and
    vmappable over ``key`` and ``hparams``."""
    return Trainer(agent, config, mesh).train
