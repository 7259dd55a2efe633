"""Scripted protocols, each a ``Policy`` run inside the same compiled loop as learned ones."""

from __future__ import annotations

from collections.abc import Callable

from jaxmac.env import UDTSEnv
from jaxmac.protocols.aloha import Aloha
from jaxmac.protocols.base import Policy, require_named_messages
from jaxmac.protocols.contention_free import ContentionFree
from jaxmac.protocols.oracle import Oracle
from jaxmac.protocols.uniform import UniformRandom


def _contention_free(env: UDTSEnv) -> Policy:
    require_named_messages(env, "contention_free")
    return ContentionFree()


def _aloha(env: UDTSEnv, q: float | None = None) -> Policy:
    require_named_messages(env, "aloha")
    return Aloha(q=q)


#: name -> factory(env, **options) building the policy for that environment.
PROTOCOLS: dict[str, Callable[..., Policy]] = {
    "contention_free": _contention_free,
    "aloha": _aloha,
    "random": lambda env: UniformRandom(ucm_vocab=env.ucm_vocab, dcm_vocab=env.dcm_vocab),
    "oracle": lambda env: Oracle(),
}


def make_protocol(name: str, env: UDTSEnv, **options: float | None) -> Policy:
    """The scripted protocol ``name`` for ``env``; ``options`` go to its factory (``aloha``: ``q``)."""
    if name not in PROTOCOLS:
        raise ValueError(f"policy must be one of {sorted(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name](env, **options)


__all__ = ["PROTOCOLS", "Aloha", "ContentionFree", "Oracle", "Policy", "UniformRandom", "make_protocol"]
