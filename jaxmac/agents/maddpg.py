"""Sym. MADDPG's agent (docs/SPEC.md §4): the decentralised actors alone.

The actors are MAPPO's (``SymbolicActors``: the UE actor shared by every UE with its identity
in the input, one BS actor per target UE slot), on the symbolic observations; they act by
sampling their categorical decisions. MADDPG's centralised critic scores observations *and*
actions, so it is not part of the agent but of the algorithm (``jaxmac.algorithms.maddpg``),
which trains the actors through Gumbel-softmax relaxed samples of this policy.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from jaxmac.agents.mappo import MAPPOAgent, SymbolicActors
from jaxmac.settings import setting


@dataclasses.dataclass(frozen=True, eq=False)
class MADDPGAgent(MAPPOAgent):
    """The MAPPO agent's actors without its critic (``MADDPGAgent.build(env, hidden)``); the
    policy's ``AgentOutput`` has no value."""

    hidden: int = setting(64, "actor MLP width")
    networks: ClassVar[type[SymbolicActors]] = SymbolicActors
