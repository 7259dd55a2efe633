"""The interface every decision rule shares, scripted or learned."""

from __future__ import annotations

from typing import Protocol

import jax

from jaxmac.env import Action, EnvParams, EnvState, Observation, UDTSEnv


class Policy(Protocol):
    """``act(key, obs, state, params) -> Action`` for one episode (vmap for many).

    Policies are pytrees: scripted ones are frozen dataclasses registered as static pytrees
    (no leaves, hashed by value, so two equal policies share one compiled program); learned
    ones (``jaxmac.agents.LearnedPolicy``) carry their parameters as leaves. A policy with
    a true class attribute ``batched`` acts on a whole batch of episodes at once instead
    (obs and state with a leading episode axis, one key). Only the ``oracle`` reads
    ``state``; every other policy decides from ``obs`` alone. A batched policy may return
    ``(action, counts)``, ``counts`` a dict of (E,) per-TTI counts that ``jaxmac.evaluate``
    sums over each episode (LLM-PT's ``answers`` and ``valid_answers``).
    """

    def __call__(self, key: jax.Array, obs: Observation, state: EnvState, params: EnvParams) -> Action: ...


def require_named_messages(env: UDTSEnv, protocol: str) -> None:
    """Raise if ``env``'s vocabularies lack the named messages a hand-written protocol uses."""
    if env.ucm_vocab != 2 or env.dcm_vocab != 3:
        raise ValueError(
            f"{protocol} needs the named messages (ucm_vocab=2: null, schedule_request; "
            f"dcm_vocab=3: null, schedule_grant, acknowledge), got ucm_vocab={env.ucm_vocab}, "
            f"dcm_vocab={env.dcm_vocab}"
        )
