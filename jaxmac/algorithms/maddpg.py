"""Sym. MADDPG (docs/SPEC.md §4; Lowe et al. 2017) as one compiled loop.

The agent's decentralised actors (``MADDPGAgent``) act by sampling their categorical
decisions; every TTI of the parallel episodes goes into a replay buffer (``flashbax``, held in
the compiled state, so checkpoints and resume carry it). One update is a rollout of
``rollout_len`` TTIs, then ``train_steps`` gradient steps, each on ``batch_size`` transitions
drawn uniformly from the buffer:

* critic: Q(s, a) on every agent's observations and every decision (one-hot; the decisions
  of padded slots are zeroed), regressed on y = r + gamma (1 - done) Q'(s', a') where a' is a
  Gumbel-softmax relaxed sample of the target actors at s' and Q' the target critic;
* actors: for every decision d, Q(s, a with decision d replaced by the current actor's
  relaxed sample), maximised through d alone (MADDPG's per-agent gradient; the others keep
  the buffer's decisions) and averaged over the active agents' 2n decisions as in Eq. 11;
* targets: Polyak averaging with rate ``tau``.

The team reward is shared by every agent, so every agent's centralised critic estimates the
same Q: they are one network (critic parameters shared across agents). Episodes that end are
not bootstrapped (the episode cut at ``episode_len`` counts as an end, as in PPO's GAE).
Learning starts after the first rollout; until the buffer holds ``batch_size`` transitions a
batch repeats some.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flashbax as fbx
import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxmac.agents import Agent, Choices, OneHots, Params, fuse
from jaxmac.agents.mappo import MLP, bs_features, feature_sizes, ue_features
from jaxmac.algorithms.base import (
    EPISODE_AXIS,
    check_counts,
    check_mesh,
    constrain_episodes,
    global_norm,
    optimizer,
    param_specs,
    reset_episodes,
    run_updates,
    specs_like,
    store_checked,
)
from jaxmac.algorithms.rollout import rollout
from jaxmac.env import EnvParams, EnvState, Observation, UDTSEnv, spaces
from jaxmac.settings import setting


@dataclasses.dataclass(frozen=True)
class MADDPGConfig:
    """Static settings (changing one recompiles); the defaults are the authors' (lr, batch,
    buffer, gamma and widths; docs/SPEC.md §4) where they gave one."""

    num_envs: int = setting(64, "parallel episodes", flag="episodes")
    rollout_len: int | None = setting(None, "TTIs per update (default episode-len)", kind=int)
    batch_size: int = setting(512, "transitions per gradient step")
    replay_size: int = setting(500_000, "replay buffer capacity in transitions")
    train_steps: int = setting(8, "gradient steps per update")
    critic_hidden: int = setting(64, "critic MLP width")
    updates: int = setting(100, "updates in total")

    def __post_init__(self) -> None:
        check_counts(self)


#: Allowed (low, high, low inclusive) of every scalar of ``MADDPGHParams``.
MADDPG_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, float("inf"), False),
    "gamma": (0.0, 1.0, True),
    "tau": (0.0, 1.0, False),
    "temperature": (0.0, float("inf"), False),
    "max_grad_norm": (0.0, float("inf"), False),
}


@struct.dataclass
class MADDPGHParams:
    """Traced hyperparameters; stack them on a leading axis to sweep."""

    lr: Any = setting(1e-3, "Adam learning rate of the actors and the critic")
    gamma: Any = setting(0.99, "discount")
    tau: Any = setting(0.01, "soft update rate of the target networks")
    temperature: Any = setting(1.0, "Gumbel-softmax temperature of the relaxed decisions")
    max_grad_norm: Any = setting(0.5, "gradient-norm clip")
    env: EnvParams = dataclasses.field(default_factory=EnvParams)

    def __post_init__(self) -> None:
        store_checked(self, MADDPG_RANGES)


class Critic(nnx.Module):
    """Q(s, a): an MLP on MAPPO's critic input (the BS's and every UE's features) and every
    decision as a one-hot vector, zeroed for padded slots."""

    def __init__(self, env: UDTSEnv, hidden: int, rngs: nnx.Rngs) -> None:
        self.env = env
        f_ue, f_bs = feature_sizes(env)
        decisions = len(spaces.UE_ACTION_WORDS) * env.ucm_vocab + env.dcm_vocab
        self.mlp = MLP((f_bs + env.max_ues * (f_ue + decisions), hidden, hidden, 1), 1.0, rngs)

    def __call__(self, obs: Observation, actions: OneHots) -> jax.Array:
        """(...,) Q of observations with leading axes ``...`` and their decisions."""
        ue_x = ue_features(obs, self.env)  # (..., M, F_ue), zero rows for padded slots
        live = obs.active[..., None]
        per_slot = jnp.concatenate([ue_x, actions.ue * live, actions.bs * live], axis=-1)
        x = jnp.concatenate([bs_features(obs, self.env), per_slot.reshape(*per_slot.shape[:-2], -1)], -1)
        return self.mlp(x)[..., 0]


@struct.dataclass
class Stored:
    """One TTI of one episode in the replay buffer; the next observation is the next TTI's."""

    obs: Observation  # integers in the buffer's compact dtype
    sample: Choices  # the decisions taken, compact too
    reward: jax.Array  # () float32 team reward
    done: jax.Array  # () bool, the TTI ended the episode


@struct.dataclass
class MADDPGState:
    """Everything a run needs to continue: what a checkpoint holds."""

    params: Params  # the actors (the agent's parameters)
    critic: Params
    target_params: Params
    target_critic: Params
    actor_opt: Any
    critic_opt: Any
    buffer: Any  # flashbax TrajectoryBufferState: experience (E, replay_size // E, ...) of Stored
    env_state: EnvState  # (E, ...)
    obs: Observation  # (E, ...)
    key: jax.Array
    update: jax.Array  # () int32, updates done


#: What every update reports (float32 scalars): the rollout's episode statistics, then means
#: over its gradient steps (``loss`` is the critic's TD loss), and the steps skipped as non-finite.
UPDATE_METRICS = (
    "episodes",
    "return",
    "throughput",
    "loss",
    "actor_loss",
    "entropy",
    "grad_norm",
    "nonfinite",
)


def _compact_dtype(env: UDTSEnv) -> Any:
    """The smallest integer dtype that holds every observation and decision value."""
    largest = max(env.buffer_size, env.max_ues, env.ucm_vocab, len(spaces.UE_ACTION_WORDS) * env.ucm_vocab)
    largest = max(largest, env.dcm_vocab, 4)
    return jnp.int8 if largest <= 127 else jnp.int16 if largest <= 32767 else jnp.int32


@dataclasses.dataclass(frozen=True, eq=False)
class MADDPG:
    """MADDPG for an actor-only agent, as an ``jaxmac.algorithms.Algorithm`` (module docstring)."""

    agent: Agent
    config: MADDPGConfig = MADDPGConfig()
    mesh: Mesh | None = None  # the host loop's device mesh (None: no sharding constraints)
    metric_names: ClassVar[tuple[str, ...]] = UPDATE_METRICS

    def __post_init__(self) -> None:
        check_mesh(self.mesh, self.config.num_envs)
        if self.rollout_len < 2:
            raise ValueError(
                f"rollout_len must be >= 2 (a transition pairs two TTIs), got {self.rollout_len}"
            )
        if self.config.replay_size < 2 * self.steps_per_update:
            raise ValueError(
                f"replay_size must hold two updates' transitions (num_envs * rollout_len * 2 = "
                f"{2 * self.steps_per_update}), got {self.config.replay_size}"
            )
        if self.config.batch_size > self.config.replay_size:
            raise ValueError(
                f"batch_size must be <= replay_size={self.config.replay_size}, got {self.config.batch_size}"
            )

    @property
    def rollout_len(self) -> int:
        return self.config.rollout_len or self.agent.env.episode_len

    @property
    def steps_per_update(self) -> int:
        return self.config.num_envs * self.rollout_len

    def buffer(self) -> Any:
        """The flashbax buffer's functions: episodes are its add-batch axis, one rollout (E, T) is
        added at once, and a sample pairs a TTI with the episode's next one."""
        return fbx.make_flat_buffer(
            max_length=self.config.replay_size,
            min_length=self.config.num_envs,  # sampling starts after the first rollout
            sample_batch_size=self.config.batch_size,
            add_sequences=True,
            add_batch_size=self.config.num_envs,
        )

    def critic(self) -> Critic:
        return nnx.eval_shape(lambda: Critic(self.agent.env, self.config.critic_hidden, nnx.Rngs(0)))

    def q(self, critic: Params, obs: Observation, actions: OneHots) -> jax.Array:
        graphdef, _ = nnx.split(self.critic())
        return nnx.merge(graphdef, critic)(obs, actions)

    def _episodes(self, tree: Any) -> Any:
        return constrain_episodes(self.mesh, tree)

    def _stored(self, obs: Observation, sample: Choices, reward: jax.Array, done: jax.Array) -> Stored:
        dtype = _compact_dtype(self.agent.env)
        compact = lambda x: x if x.dtype == jnp.bool_ else x.astype(dtype)  # noqa: E731
        return Stored(jax.tree.map(compact, obs), jax.tree.map(compact, sample), reward, done)

    def init(self, key: jax.Array, hp: MADDPGHParams) -> MADDPGState:
        env = self.agent.env
        key, actor_key, critic_key, reset_key = jax.random.split(key, 4)
        params = self.agent.init(actor_key)
        critic = nnx.to_pure_dict(nnx.split(Critic(env, self.config.critic_hidden, nnx.Rngs(critic_key)))[1])
        obs, env_state = reset_episodes(env, reset_key, self.config.num_envs, hp.env, self.mesh)
        no_choice = jnp.zeros(env.max_ues, jnp.int32)
        item = self._stored(
            jax.tree.map(lambda x: x[0], obs), Choices(no_choice, no_choice), jnp.float32(0), jnp.bool_(False)
        )
        buffer = self.buffer().init(jax.tree.map(jnp.zeros_like, item))
        buffer = buffer.replace(
            experience=self._episodes(buffer.experience),
            current_index=jnp.asarray(buffer.current_index, jnp.int32),  # not weakly typed: one
            is_full=jnp.asarray(buffer.is_full, jnp.bool_),  # compile serves a restored state too
        )
        return MADDPGState(
            params=params,
            critic=critic,
            target_params=params,
            target_critic=critic,
            actor_opt=optimizer(hp).init(params),
            critic_opt=optimizer(hp).init(critic),
            buffer=buffer,
            env_state=env_state,
            obs=obs,
            key=key,
            update=jnp.zeros((), jnp.int32),
        )

    def partition_specs(self) -> MADDPGState:
        """Buffer, environment states and observations split over the episode axis, the rest
        replicated."""
        env = self.agent.env
        abstract = jax.eval_shape(self.init, jax.random.PRNGKey(0), MADDPGHParams(env=env.default_params))
        nets = ("params", "critic", "target_params", "target_critic", "actor_opt", "critic_opt")
        return abstract.replace(
            **{name: param_specs(self.mesh, getattr(abstract, name)) for name in nets},
            buffer=abstract.buffer.replace(
                experience=specs_like(abstract.buffer.experience, P(EPISODE_AXIS)),
                current_index=P(),
                is_full=P(),
            ),
            env_state=specs_like(abstract.env_state, P(EPISODE_AXIS)),
            obs=specs_like(abstract.obs, P(EPISODE_AXIS)),
            key=P(),
            update=P(),
        )

    def policy_params(self, state: MADDPGState) -> Params:
        return state.params

    def train(self, key: jax.Array, hp: MADDPGHParams) -> tuple[MADDPGState, dict[str, jax.Array]]:
        """Init plus ``config.updates`` updates (jittable and vmappable over key and hp)."""
        return self.update_chunk(self.init(key, hp), hp, self.config.updates)

    def update_chunk(
        self, state: MADDPGState, hp: MADDPGHParams, n: int, count: Any = None
    ) -> tuple[MADDPGState, dict[str, jax.Array]]:
        """``count`` (traced, default ``n``) <= ``n`` (static) updates; metrics (n,) per name of
        ``UPDATE_METRICS``, NaN past ``count``."""
        return run_updates(lambda state: self.update(state, hp), state, n, count, self.metric_names)

    def update(self, state: MADDPGState, hp: MADDPGHParams) -> tuple[MADDPGState, dict[str, jax.Array]]:
        """A rollout into the buffer, then ``train_steps`` gradient steps."""
        (env_state, obs, key), steps, metrics = rollout(
            self.agent,
            state.params,
            hp.env,
            state.env_state,
            state.obs,
            state.key,
            self.rollout_len,
            constrain=self._episodes,
        )
        stored = self._stored(steps.obs, steps.sample, steps.reward, steps.done)
        buffer = self.buffer().add(state.buffer, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), stored))
        key, train_key = jax.random.split(key)
        nets = (state.params, state.critic, state.target_params, state.target_critic)
        opts = (state.actor_opt, state.critic_opt)

        def step(carry: tuple, step_key: jax.Array) -> tuple[tuple, dict[str, jax.Array]]:
            return self.train_step(*carry, buffer, step_key, hp)

        (nets, opts), terms = jax.lax.scan(
            step, (nets, opts), jax.random.split(train_key, self.config.train_steps)
        )
        metrics |= {name: jnp.mean(v) for name, v in terms.items() if name != "nonfinite"}
        metrics["nonfinite"] = jnp.sum(terms["nonfinite"])
        params, critic, target_params, target_critic = nets
        state = state.replace(
            params=params,
            critic=critic,
            target_params=target_params,
            target_critic=target_critic,
            actor_opt=opts[0],
            critic_opt=opts[1],
            buffer=buffer,
            env_state=env_state,
            obs=obs,
            key=key,
            update=state.update + 1,
        )
        return state, metrics

    def train_step(
        self, nets: tuple, opts: tuple, buffer: Any, key: jax.Array, hp: MADDPGHParams
    ) -> tuple[tuple, dict[str, jax.Array]]:
        """One critic step, one actors' step and the soft target update on a batch from
        ``buffer``. A step whose losses or gradients are not finite is skipped (``nonfinite``)."""
        params, critic, target_params, target_critic = nets
        sample_key, next_key, actor_key = jax.random.split(key, 3)
        pair = self.buffer().sample(buffer, sample_key).experience
        expand = lambda x: x if x.dtype == jnp.bool_ else x.astype(jnp.int32)  # noqa: E731
        obs, next_obs = jax.tree.map(expand, pair.first.obs), jax.tree.map(expand, pair.second.obs)
        policy = self.agent(params, obs).policy
        actions = policy.one_hot(jax.tree.map(expand, pair.first.sample))

        next_actions = self.agent(target_params, next_obs).policy.relaxed_sample(next_key, hp.temperature)
        live = 1.0 - pair.first.done.astype(jnp.float32)
        target = pair.first.reward + hp.gamma * live * self.q(target_critic, next_obs, next_actions)
        target = jax.lax.stop_gradient(target)

        def critic_loss(c: Params) -> jax.Array:
            return jnp.mean(jnp.square(self.q(c, obs, actions) - target))

        loss, critic_grads = jax.value_and_grad(critic_loss)(critic)
        updates, critic_opt = optimizer(hp).update(critic_grads, opts[1], critic)
        new_critic = optax.apply_updates(critic, updates)

        def actor_loss(p: Params) -> tuple[jax.Array, jax.Array]:
            mine = self.agent(p, obs).policy
            relaxed = mine.relaxed_sample(actor_key, hp.temperature)
            m = obs.active.shape[-1]
            swap = jnp.eye(2 * m)  # row d: replace decision d (UE slots, then BS targets)

            def q_with(ue_mask: jax.Array, bs_mask: jax.Array) -> jax.Array:
                mixed = OneHots(
                    ue=actions.ue + ue_mask[:, None] * (relaxed.ue - actions.ue),
                    bs=actions.bs + bs_mask[:, None] * (relaxed.bs - actions.bs),
                )
                return self.q(new_critic, obs, mixed)

            q = jax.vmap(q_with, out_axes=-1)(swap[:, :m], swap[:, m:])  # (B, 2M)
            return -jnp.mean(fuse(q, obs.active)), jnp.mean(mine.entropy())

        (a_loss, entropy), actor_grads = jax.value_and_grad(actor_loss, has_aux=True)(params)
        updates, actor_opt = optimizer(hp).update(actor_grads, opts[0], params)
        new_params = optax.apply_updates(params, updates)

        grad_norm = global_norm(critic_grads)
        ok = jnp.isfinite(loss) & jnp.isfinite(a_loss) & jnp.isfinite(grad_norm)
        ok &= jnp.isfinite(global_norm(actor_grads))
        polyak = lambda new, old: jax.tree.map(lambda a, b: b + hp.tau * (a - b), new, old)  # noqa: E731
        new = (
            (new_params, new_critic, polyak(new_params, target_params), polyak(new_critic, target_critic)),
            (actor_opt, critic_opt),
        )
        keep = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, (nets, opts))
        terms = {
            "loss": loss,
            "actor_loss": a_loss,
            "entropy": entropy,
            "grad_norm": grad_norm,
            "nonfinite": (~ok).astype(jnp.float32),
        }
        return keep, terms


def make_train(agent: Agent, config: MADDPGConfig, mesh: Mesh | None = None) -> Any:
    """``train(key, hparams) -> (MADDPGState, metrics)``, jittable and vmappable."""
    return MADDPG(agent, config, mesh).train
