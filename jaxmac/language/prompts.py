"""SIE prompts (docs/SPEC.md §2, paper Eq. 7-8) as finite templates.

A prompt is a sequence of segments; each segment shows one string out of a small table
(a fixed text has a table of one). ``PromptTemplate.rows`` computes, with jnp inside jit
or eagerly on concrete observations, which string every segment of every prompt shows
(-1 = the segment is absent). ``render_prompt`` joins those strings with single spaces for
people, and ``PromptCompiler`` assembles the same prompts as token ids from tables that were
tokenized once at start-up: the two agree by construction, given a tokenizer that splits on
whitespace before anything else (T5's SentencePiece and the built-in word tokenizer do;
the tests check equality under hypothesis).

One TTI has 2M prompts (M = max_ues): row p < M is UE p's own decision (its buffer action and
UCM); row M + p is the BS's decision of the DCM to UE p. Agents are named by rank among the
active UEs ("UE 2 of 5" is the second active slot), so identities stay 1..n under churn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxmac.env import Observation, UDTSEnv
from jaxmac.env.spaces import CHANNEL_WORDS, COLLISION, FAILURE, IDLE, SUCCESS, UE_ACTION_WORDS

AGENTS = ("ue", "bs")
#: Where the BS's prompts name the UE a decision is about: ``prompt`` (the paper's: one BS
#: prompt per target UE) or ``decoder`` (one BS prompt per TTI, the target named on the
#: decoder side before the answer: ``"UE 3"`` then ``"acknowledge"``).
BS_TARGETS = ("prompt", "decoder")


@dataclasses.dataclass(frozen=True)
class PromptContext:
    """What the segment index functions read: the observation and the agents' identities."""

    obs: Observation
    rank: jax.Array  # (M,) int32, 1-based rank of each active slot among active slots (0 if padded)
    n: jax.Array  # () int32, active UEs


def active_rank(active: jax.Array) -> jax.Array:
    """(..., M) bool -> (..., M) int32: each active slot's 1-based rank among the active slots
    (0 if padded): the identity "UE r" a prompt names."""
    return jnp.where(active, jnp.cumsum(active, axis=-1), 0).astype(jnp.int32)


Index = Callable[[PromptContext], jax.Array]  # -> (M,) int32 row of the table per prompt, -1 = absent


class PromptTemplate:
    """The UE and BS prompt templates of one environment configuration.

    ``sie=True`` is the paper's structured identity embedding: Role, Target, Observation and
    Action-candidate parts naming the agent and, for the BS, the target UE. ``sie=False`` is the
    authors' ablation: the observation vector as bare numbers followed by ``Answer:``.

    ``bs_target`` (``BS_TARGETS``): with ``decoder`` the BS prompt leaves the target out, so
    the M BS prompts of a TTI are one text, and ``bs_prefixes[r - 1]`` (``"UE r"``) names the
    target in front of each candidate answer instead. A BS prompt lists every UE, so per-target
    prompts cost M encodings of a text that grows with M; this costs one.
    """

    def __init__(self, env: UDTSEnv, sie: bool = True, bs_target: str = "prompt") -> None:
        if bs_target not in BS_TARGETS:
            raise ValueError(f"bs_target must be one of {BS_TARGETS}, got {bs_target!r}")
        if bs_target == "decoder" and not sie:
            raise ValueError(
                "bs_target='decoder' needs the SIE prompts (sie=True): the bare-number prompts name no target"
            )
        self.env, self.sie, self.bs_target = env, sie, bs_target
        self.tables: list[tuple[str, ...]] = []
        self.segments: dict[str, list[tuple[int, Index]]] = {agent: [] for agent in AGENTS}
        # per agent and segment: the UE slot whose sentence it belongs to (-1: every prompt shows it)
        self.segment_slots: dict[str, list[int]] = {agent: [] for agent in AGENTS}
        self.ue_candidates = tuple(f"{a} {u}" for a in UE_ACTION_WORDS for u in env.ucm_words)
        self.bs_candidates = tuple(env.dcm_words)
        self.bs_prefixes = (
            tuple(f"UE {r}" for r in range(1, env.max_ues + 1)) if bs_target == "decoder" else ()
        )
        if sie:
            self._build_sie()
        else:
            self._build_numeric()

    # ------------------------------------------------------------------ building
    def _add(
        self, agent: str, strings: tuple[str, ...] | str, index: Index | None = None, slot: int = -1
    ) -> None:
        """Append a segment showing one of ``strings`` (row ``index(ctx)``, default 0); ``slot``:
        the UE slot whose sentence the segment belongs to (absent unless that slot is active),
        -1 for a segment of every prompt."""
        strings = (strings,) if isinstance(strings, str) else strings
        if strings not in self.tables:
            self.tables.append(strings)
        m = self.env.max_ues
        self.segments[agent].append(
            (self.tables.index(strings), index or (lambda c: jnp.zeros(m, jnp.int32)))
        )
        self.segment_slots[agent].append(slot)

    def _build_sie(self) -> None:
        env, m, k = self.env, self.env.max_ues, self.env.history
        counts = tuple(str(i) for i in range(1, m + 1))
        numbers = tuple(str(i) for i in range(env.buffer_size + 1))
        per_ue = lambda c, x: jnp.broadcast_to(x, (m,))  # noqa: E731
        pick = lambda c, s, v: per_ue(c, jnp.where(c.obs.active[s], v, -1))  # noqa: E731  (absent if s padded)
        # --- UE p: its own decision
        self._add("ue", "<Role> You are UE")
        self._add("ue", counts, lambda c: jnp.maximum(c.rank - 1, 0))
        self._add("ue", "of")
        self._add("ue", counts, lambda c: per_ue(c, jnp.maximum(c.n - 1, 0)))
        self._add(
            "ue",
            "in a wireless network. <Target> Goal: choose your buffer action and uplink signal to "
            "deliver as many packets as possible. <Observation> You have",
        )
        self._add("ue", numbers, lambda c: c.obs.ue.buffer[:, 0])
        self._add("ue", "packets in buffer.")
        for j in range(k):
            if j == 0:
                self._add("ue", "Last time you chose")
            else:
                self._add("ue", f"{j + 1} TTIs ago you had")
                self._add("ue", numbers, lambda c, j=j: c.obs.ue.buffer[:, j])
                self._add("ue", "packets, chose")
            self._add("ue", tuple(w + "," for w in UE_ACTION_WORDS), lambda c, j=j: c.obs.ue.action[:, j])
            self._add("ue", "sent")
            self._add("ue", env.ucm_words, lambda c, j=j: c.obs.ue.ucm[:, j])
            self._add("ue", "and received")
            self._add("ue", tuple(w + "." for w in env.dcm_words), lambda c, j=j: c.obs.ue.dcm[:, j])
        self._add("ue", "<Action candidate> Candidates: " + ", ".join(self.ue_candidates) + ". Answer:")
        # --- BS, deciding the DCM to UE p
        self._add("bs", "<Role> You are the base station of a wireless network with")
        self._add("bs", counts, lambda c: per_ue(c, jnp.maximum(c.n - 1, 0)))
        if self.bs_target == "prompt":
            self._add("bs", "UEs. <Target> Goal: choose the downlink signal to UE")
            self._add("bs", counts, lambda c: jnp.maximum(c.rank - 1, 0))
            self._add("bs", "to deliver as many packets as possible. <Observation>")
        else:  # the same text for every target: the decoder names it (``bs_prefixes``)
            self._add(
                "bs",
                "UEs. <Target> Goal: choose the downlink signal to deliver as many packets as possible. "
                "<Observation>",
            )
        outcomes = (
            "idle.",
            "a collision.",
            *(f"a success of UE {r}." for r in counts),
            *(f"a failure of UE {r}." for r in counts),
            "a success of a departed UE.",
            "a failure of a departed UE.",
        )
        for j in range(k):
            self._add("bs", ("Last time" if j == 0 else f"{j + 1} TTIs ago") + " the channel was")
            self._add("bs", outcomes, lambda c, j=j: per_ue(c, _outcome_index(c, j, m)))
            for s in range(m):  # one sentence per active UE
                self._add(
                    "bs",
                    tuple(f"UE {r} sent" for r in counts),
                    lambda c, s=s: pick(c, s, c.rank[s] - 1),
                    slot=s,
                )
                self._add("bs", env.ucm_words, lambda c, s=s, j=j: pick(c, s, c.obs.bs.ucm[s, j]), slot=s)
                self._add("bs", "and you sent", lambda c, s=s: pick(c, s, 0), slot=s)
                self._add(
                    "bs",
                    tuple(w + "." for w in env.dcm_words),
                    lambda c, s=s, j=j: pick(c, s, c.obs.bs.dcm[s, j]),
                    slot=s,
                )
        self._add("bs", "<Action candidate> Candidates: " + ", ".join(self.bs_candidates) + ". Answer:")

    def _build_numeric(self) -> None:
        env, m, k = self.env, self.env.max_ues, self.env.history
        top = max(env.buffer_size, m, env.ucm_vocab, env.dcm_vocab, len(CHANNEL_WORDS))
        numbers = tuple(str(i) for i in range(-1, top + 1))  # row v + 1 shows v
        per_ue = lambda c, x: jnp.broadcast_to(x, (m,)) + 1  # noqa: E731
        for j in range(k):
            for field in ("buffer", "action", "ucm", "dcm"):
                self._add("ue", numbers, lambda c, f=field, j=j: getattr(c.obs.ue, f)[:, j] + 1)
        self._add("ue", "Answer:")
        for j in range(k):
            self._add("bs", numbers, lambda c, j=j: per_ue(c, c.obs.bs.channel[j]))
            self._add("bs", numbers, lambda c, j=j: per_ue(c, c.obs.bs.sender[j]))
            for s in range(m):
                self._add("bs", numbers, lambda c, s=s, j=j: per_ue(c, c.obs.bs.ucm[s, j]))
                self._add("bs", numbers, lambda c, s=s, j=j: per_ue(c, c.obs.bs.dcm[s, j]))
        self._add("bs", "Answer:")

    # ------------------------------------------------------------------ using
    def context(self, obs: Observation) -> PromptContext:
        active = jnp.asarray(obs.active)
        return PromptContext(obs=obs, rank=active_rank(active), n=jnp.sum(active).astype(jnp.int32))

    def rows(self, obs: Observation, agent: str) -> jax.Array:
        """(M, S) int32: the table row each of the S segments shows in each prompt; -1 = absent."""
        if agent not in AGENTS:
            raise ValueError(f"agent must be one of {AGENTS}, got {agent!r}")
        ctx = self.context(obs)
        return jnp.stack([index(ctx).astype(jnp.int32) for _, index in self.segments[agent]], axis=1)

    def table_ids(self, agent: str) -> tuple[int, ...]:
        return tuple(table for table, _ in self.segments[agent])

    def texts(self) -> list[str]:
        """Every string any prompt segment or candidate can show (a tokenizer's vocabulary source)."""
        answers = self.ue_candidates + self.bs_candidates + self.bs_prefixes
        return [s for table in self.tables for s in table] + list(answers)


def _outcome_index(c: PromptContext, j: int, m: int) -> jax.Array:
    """Row of the BS outcome table for history entry j (see ``outcomes`` above)."""
    channel, sender = c.obs.bs.channel[j], c.obs.bs.sender[j]
    sender_rank = c.rank[jnp.maximum(sender, 0)]
    departed = sender_rank == 0
    decoded = jnp.where(departed, 2 + 2 * m, 2 + sender_rank - 1)
    failed = jnp.where(departed, 3 + 2 * m, 2 + m + sender_rank - 1)
    return jnp.select(
        [channel == IDLE, channel == COLLISION, channel == SUCCESS, channel == FAILURE],
        [0, 1, decoded, failed],
        0,
    )


def render_prompts(template: PromptTemplate, obs: Observation, agent: str) -> list[str]:
    """The texts of all M prompts of ``agent``: UE p's own (``"ue"``) or the BS's about UE p (``"bs"``)."""
    rows = np.asarray(template.rows(obs, agent))
    tables = template.table_ids(agent)
    return [
        " ".join(template.tables[t][r] for t, r in zip(tables, row, strict=True) if r >= 0) for row in rows
    ]


def render_prompt(template: PromptTemplate, obs: Observation, agent: str, ue: int) -> str:
    """The text of one prompt: UE ``ue``'s own (``agent="ue"``) or the BS's about UE ``ue``."""
    if not 0 <= ue < template.env.max_ues:
        raise ValueError(f"ue must be a slot in [0, {template.env.max_ues}), got {ue}")
    return render_prompts(template, obs, agent)[ue]
