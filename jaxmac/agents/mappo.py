"""Sym. MAPPO (docs/SPEC.md §4): MLP actors on the symbolic observations, a centralised critic.

* UE actor: one MLP shared by every UE; its input is the UE's own observation history plus
  its identity as one-hot vectors (its slot, and the active-UE count, the same facts the SIE
  prompt's Role gives the language model). Output: logits over the 3 * ucm_vocab candidates.
* BS actors: one MLP per target UE slot (parameters stacked on a leading axis), each on the
  BS observation, with logits over the dcm_vocab DCMs to that UE.
* Critic: an MLP on the BS observation and every UE's observation (padded slots are all-zero
  rows and the ``active`` mask is an input), giving the team value.

Decisions about padded slots are computed and then masked out by the fusion (Eq. 11).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmac.agents.base import Params, with_defaults
from jaxmac.agents.policy import AgentOutput, CandidatePolicy
from jaxmac.env import Observation, UDTSEnv, spaces
from jaxmac.settings import setting


def _one_hot(x: jax.Array, n: int) -> jax.Array:
    return jax.nn.one_hot(x, n, dtype=jnp.float32)


def ue_features(obs: Observation, env: UDTSEnv) -> jax.Array:
    """(..., M, F_ue): per UE, its k-step history and its identity (slot, active count)."""
    ue = obs.ue
    m = env.max_ues
    history = jnp.concatenate(
        [
            (ue.buffer / env.buffer_size)[..., None],
            _one_hot(ue.action, len(spaces.UE_ACTION_WORDS)),
            _one_hot(ue.ucm, env.ucm_vocab),
            _one_hot(ue.dcm, env.dcm_vocab),
        ],
        axis=-1,
    )  # (..., M, k, f)
    history = history.reshape(*history.shape[:-2], -1)
    count = jnp.sum(obs.active, axis=-1, dtype=jnp.int32)  # (...)
    slot = jnp.broadcast_to(jnp.eye(m, dtype=jnp.float32), (*obs.active.shape, m))
    n = jnp.broadcast_to(_one_hot(count, m + 1)[..., None, :], (*obs.active.shape, m + 1))
    return jnp.where(obs.active[..., None], jnp.concatenate([history, slot, n], axis=-1), 0.0)


def bs_features(obs: Observation, env: UDTSEnv) -> jax.Array:
    """(..., F_bs): channel outcomes, senders, every slot's UCM/DCM history and ``active``."""
    bs = obs.bs
    lead = obs.active.shape[:-1]
    parts = [
        _one_hot(bs.channel, 4),  # (..., k, 4)
        _one_hot(bs.sender + 1, env.max_ues + 1),  # (..., k, M + 1): 0 = no lone sender
        _one_hot(bs.ucm, env.ucm_vocab),  # (..., M, k, U)
        _one_hot(bs.dcm, env.dcm_vocab),  # (..., M, k, D)
        obs.active.astype(jnp.float32),
    ]
    return jnp.concatenate([p.reshape(*lead, -1) for p in parts], axis=-1)


class MLP(nnx.Module):
    """tanh MLP; the output layer starts small (``out_scale``) as in PureJaxRL's actors."""

    def __init__(self, sizes: tuple[int, ...], out_scale: float, rngs: nnx.Rngs) -> None:
        init = nnx.initializers.orthogonal
        self.layers = nnx.List(
            [
                nnx.Linear(
                    a, b, kernel_init=init(out_scale if i == len(sizes) - 2 else jnp.sqrt(2)), rngs=rngs
                )
                for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
            ]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            x = jnp.tanh(layer(x))
        return self.layers[-1](x)


def feature_sizes(env: UDTSEnv) -> tuple[int, int]:
    """(F_ue, F_bs): the widths of ``ue_features`` and ``bs_features``."""
    m = env.max_ues
    f_ue = env.history * (1 + len(spaces.UE_ACTION_WORDS) + env.ucm_vocab + env.dcm_vocab) + 2 * m + 1
    f_bs = env.history * (4 + m + 1 + m * (env.ucm_vocab + env.dcm_vocab)) + m
    return f_ue, f_bs


class SymbolicActors(nnx.Module):
    """The decentralised actors on the symbolic observations: the UE actor shared by every UE
    (identity in its input) and one BS actor per target UE slot (parameters stacked (M, ...))."""

    def __init__(self, env: UDTSEnv, hidden: int, rngs: nnx.Rngs) -> None:
        self.env = env
        f_ue, f_bs = feature_sizes(env)
        n_ue = len(spaces.UE_ACTION_WORDS) * env.ucm_vocab
        self.ue_actor = MLP((f_ue, hidden, hidden, n_ue), 0.01, rngs)

        @nnx.split_rngs(splits=env.max_ues)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def bs_actors(rngs: nnx.Rngs) -> MLP:
            return MLP((f_bs, hidden, hidden, env.dcm_vocab), 0.01, rngs)

        self.bs_actors = bs_actors(rngs)

    def policy(self, obs: Observation, ue_x: jax.Array, bs_x: jax.Array) -> CandidatePolicy:
        """The joint policy from the features ``ue_x`` (E, M, F_ue) and ``bs_x`` (E, F_bs)."""

        @nnx.vmap(in_axes=(0, None), out_axes=-2)
        def per_target(actor: MLP, x: jax.Array) -> jax.Array:
            return actor(x)

        return CandidatePolicy(
            ue_log_probs=jax.nn.log_softmax(self.ue_actor(ue_x), -1),
            bs_log_probs=jax.nn.log_softmax(per_target(self.bs_actors, bs_x), -1),  # (E, M, D)
            active=obs.active,
            ucm_vocab=self.env.ucm_vocab,
        )

    def __call__(self, obs: Observation) -> AgentOutput:
        """The policy alone (no value: an actor-only agent's critic is its algorithm's)."""
        return AgentOutput(policy=self.policy(obs, ue_features(obs, self.env), bs_features(obs, self.env)))


class MAPPONetworks(SymbolicActors):
    """The actors and MAPPO's centralised critic."""

    def __init__(self, env: UDTSEnv, hidden: int, rngs: nnx.Rngs) -> None:
        super().__init__(env, hidden, rngs)
        f_ue, f_bs = feature_sizes(env)
        self.critic = MLP((f_bs + env.max_ues * f_ue, hidden, hidden, 1), 1.0, rngs)

    def __call__(self, obs: Observation) -> AgentOutput:
        ue_x = ue_features(obs, self.env)  # (E, M, F_ue)
        bs_x = bs_features(obs, self.env)  # (E, F_bs)
        value = self.critic(jnp.concatenate([bs_x, ue_x.reshape(*ue_x.shape[:-2], -1)], -1))[..., 0]
        return AgentOutput(policy=self.policy(obs, ue_x, bs_x), value=value)


@dataclasses.dataclass(frozen=True, eq=False)
class MAPPOAgent:
    """Sym. MAPPO's networks behind the ``Agent`` interface (``MAPPOAgent.build(env, hidden)``)."""

    env: UDTSEnv
    hidden: int = setting(128, "MLP width")
    graphdef: nnx.GraphDef = dataclasses.field(kw_only=True, repr=False)  # the networks' graph
    networks: ClassVar[type[SymbolicActors]] = MAPPONetworks  # the module ``build`` shapes

    @classmethod
    def build(cls, env: UDTSEnv, **options: Any) -> MAPPOAgent:
        """Check the options (``hidden``, default as declared) and shape the networks (no
        parameters are drawn here)."""
        hidden = with_defaults(cls, options)["hidden"]
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden (the MLP width) must be an integer >= 1, got {hidden!r}")
        graphdef, _ = nnx.split(nnx.eval_shape(lambda: cls.networks(env, hidden, nnx.Rngs(0))))
        return cls(env, hidden, graphdef=graphdef)

    def init(self, key: jax.Array) -> Params:
        return nnx.to_pure_dict(nnx.split(self.networks(self.env, self.hidden, nnx.Rngs(key)))[1])

    def bounded(self, n_max: int) -> MAPPOAgent:
        """Itself: the networks read every slot whatever ``n_max``."""
        del n_max
        return self

    def __call__(self, params: Params, obs: Observation) -> AgentOutput:
        return nnx.merge(self.graphdef, params)(obs)
