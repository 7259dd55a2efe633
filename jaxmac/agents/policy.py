"""What a policy is to the learning algorithms: a joint distribution over a TTI's decisions.

An agent maps a batch of observations to an ``AgentOutput``: a ``JointPolicy`` and the team
value. The algorithms only ``sample`` (or take the ``mode``), score a sample (``log_prob``),
read the ``entropy`` and turn a sample into the environment's ``Action``; a sample is an
opaque pytree they store and hand back (PureJaxRL's distribution interface). No-Comm. asks
the policy for its ``silence``d version. A policy that is only acted with (LLM-PT's generated
answers, trained by supervision) is an ``ActingPolicy``: sample, mode and to_action.

``CandidatePolicy`` is the one for MAPPO and LLM4MAC: a categorical over a fixed candidate set
per decision (each UE's joint buffer action and UCM, the BS's DCM to each UE), fused over the
active agents' 2n decisions by the paper's Eq. 11.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp
from flax import struct

from jaxmac.env import Action
from jaxmac.sampling import categorical, gumbel


class ActingPolicy(Protocol):
    """What acting needs of a policy over every decision of a batch of TTIs (leading axes
    ``...``): evaluation uses nothing else. LLM-PT's generated answers are such a policy."""

    def sample(self, key: jax.Array) -> Any:
        """A random joint decision: an opaque pytree with leading axes ``...``."""
        ...

    def mode(self) -> Any:
        """The most likely decision of each agent (the paper's greedy test setting)."""
        ...

    def to_action(self, sample: Any) -> Action:
        """The environment's action for a sample."""
        ...


class JointPolicy(ActingPolicy, Protocol):
    """A policy reinforcement learning can train: it also scores samples and has an entropy."""

    def log_prob(self, sample: Any) -> jax.Array:
        """(...) joint log-probability of ``sample``, differentiable in the policy's inputs."""
        ...

    def entropy(self) -> jax.Array:
        """(...) joint entropy (the entropy bonus of PPO)."""
        ...

    def silence(self) -> JointPolicy:
        """No-Comm.: the policy restricted to decisions whose messages are ``null``."""
        ...


@struct.dataclass
class AgentOutput:
    """An agent's answer for a batch of observations."""

    policy: ActingPolicy  # a JointPolicy for the learners that reinforcement learning trains
    value: jax.Array | None = None  # (...,) team value (a centralised critic, or Eq. 11's fused
    # values); None for an actor-only agent (MADDPG's critics score actions and are its algorithm's)


def fuse(values: jax.Array, active: jax.Array, consensus: jax.Array | None = None) -> jax.Array:
    """Eq. 11: the weighted mean over active agents of per-decision ``values`` (..., 2M): UE
    decisions then the BS's, e.g. the chosen candidates' log-probabilities (the joint
    log-probability) or the critic values (the team value). ``active`` (..., M) masks both the
    UE decisions and the BS decisions about padded slots; ``consensus`` (..., 2M) are the
    consensus factors (default 1)."""
    weights = jnp.concatenate([active, active], axis=-1).astype(jnp.float32)
    if consensus is not None:
        weights = weights * consensus
    return jnp.sum(weights * values, axis=-1) / jnp.maximum(jnp.sum(weights, axis=-1), 1e-9)


@struct.dataclass
class Choices:
    """Chosen candidate indices of every decision: ``CandidatePolicy``'s sample."""

    ue: jax.Array  # (..., M) int32 in [0, 3 * ucm_vocab)
    bs: jax.Array  # (..., M) int32 in [0, dcm_vocab)


def choices_to_action(choices: Choices, ucm_vocab: int) -> Action:
    """UE candidate c is (buffer action c // ucm_vocab, UCM c % ucm_vocab), the order of
    ``jaxmac.language.PromptTemplate.ue_candidates``; BS candidate c is DCM c."""
    return Action(
        ue=(choices.ue // ucm_vocab).astype(jnp.int32),
        ucm=(choices.ue % ucm_vocab).astype(jnp.int32),
        dcm=choices.bs.astype(jnp.int32),
    )


@struct.dataclass
class OneHots:
    """Every decision as a (soft) one-hot vector over its candidates: what a critic of actions
    reads. ``CandidatePolicy.one_hot`` makes them of a sample, ``relaxed_sample`` of the policy."""

    ue: jax.Array  # (..., M, 3 * ucm_vocab)
    bs: jax.Array  # (..., M, dcm_vocab)


def _entropy(log_probs: jax.Array) -> jax.Array:
    """Entropy of categoricals (..., C) whose masked candidates have log-probability -inf
    (the inner ``where`` keeps their gradient finite)."""
    possible = log_probs > -jnp.inf
    safe = jnp.where(possible, log_probs, 0.0)
    return -jnp.sum(jnp.where(possible, jnp.exp(safe) * safe, 0.0), axis=-1)


def _restrict(log_probs: jax.Array, allowed: jax.Array) -> jax.Array:
    return jax.nn.log_softmax(jnp.where(allowed, log_probs, -jnp.inf), axis=-1)


@struct.dataclass
class CandidatePolicy:
    """A categorical policy per decision over a fixed candidate set, fused by Eq. 11 (consensus
    factors 1) over the active agents: its sample is ``Choices``."""

    ue_log_probs: jax.Array  # (..., M, 3 * ucm_vocab) log pi of UE candidate "{action} {ucm}"
    bs_log_probs: jax.Array  # (..., M, dcm_vocab) log pi of the BS's DCM to each UE slot
    active: jax.Array  # (..., M) bool, agents present (padded slots are ignored)
    ucm_vocab: int = struct.field(pytree_node=False)
    bs_decides: bool = struct.field(pytree_node=False, default=True)  # False once ``silence``d

    def sample(self, key: jax.Array) -> Choices:
        ue_key, bs_key = jax.random.split(key)
        return Choices(
            ue=categorical(ue_key, self.ue_log_probs),
            bs=categorical(bs_key, self.bs_log_probs),
        )

    def mode(self) -> Choices:
        return Choices(ue=jnp.argmax(self.ue_log_probs, -1), bs=jnp.argmax(self.bs_log_probs, -1))

    def log_prob(self, sample: Choices) -> jax.Array:
        """Eq. 11: the mean over active agents' 2n decisions of the chosen candidates'
        log-probabilities."""
        ue = jnp.take_along_axis(self.ue_log_probs, sample.ue[..., None], axis=-1)[..., 0]
        bs = jnp.take_along_axis(self.bs_log_probs, sample.bs[..., None], axis=-1)[..., 0]
        return self._fuse(jnp.concatenate([ue, bs], axis=-1))

    def entropy(self) -> jax.Array:
        """The same weighted mean of the per-decision entropies."""
        per_decision = [_entropy(self.ue_log_probs), _entropy(self.bs_log_probs)]
        return self._fuse(jnp.concatenate(per_decision, axis=-1))

    def _fuse(self, per_decision: jax.Array) -> jax.Array:
        """``fuse`` over the decisions the agents take: all 2n, or under No-Comm. the n UEs'
        (the BS's, fixed to ``null``, would halve the joint log-ratio and entropy)."""
        m = self.active.shape[-1]
        consensus = None if self.bs_decides else jnp.concatenate([jnp.ones(m), jnp.zeros(m)])
        return fuse(per_decision, self.active, consensus)

    def to_action(self, sample: Choices) -> Action:
        return choices_to_action(sample, self.ucm_vocab)

    def one_hot(self, sample: Choices) -> OneHots:
        """A sample's decisions as one-hot vectors."""
        return OneHots(
            ue=jax.nn.one_hot(sample.ue, self.ue_log_probs.shape[-1]),
            bs=jax.nn.one_hot(sample.bs, self.bs_log_probs.shape[-1]),
        )

    def relaxed_sample(self, key: jax.Array, temperature: Any) -> OneHots:
        """Gumbel-softmax (Jang et al. 2017): per decision softmax((log pi + g) / temperature)
        with g i.i.d. Gumbel(0, 1); differentiable in the log-probabilities, its argmax is a
        sample of the policy, and candidates the policy excludes (No-Comm.) get weight 0."""
        ue_key, bs_key = jax.random.split(key)

        def relax(k: jax.Array, log_probs: jax.Array) -> jax.Array:
            return jax.nn.softmax((log_probs + gumbel(k, log_probs.shape)) / temperature, -1)

        return OneHots(ue=relax(ue_key, self.ue_log_probs), bs=relax(bs_key, self.bs_log_probs))

    def silence(self) -> CandidatePolicy:
        """Only candidates whose message is ``null`` (index 0) remain: UE candidate c carries
        UCM ``c % ucm_vocab``; the BS keeps ``null`` alone, so it no longer decides (its
        log-probabilities are 0) and the joint log-probability and entropy are the means over
        the active UEs' decisions."""
        ue_allowed = jnp.arange(self.ue_log_probs.shape[-1]) % self.ucm_vocab == 0
        bs_allowed = jnp.arange(self.bs_log_probs.shape[-1]) == 0
        return self.replace(
            ue_log_probs=_restrict(self.ue_log_probs, ue_allowed),
            bs_log_probs=_restrict(self.bs_log_probs, bs_allowed),
            bs_decides=False,
        )
