"""The LLM actor-critic of LLM4MAC (paper Eq. 9-10).

Every prompt is encoded once; each of its candidates is scored by teacher-forcing the
candidate's tokens through the decoder, all candidates of a prompt in one decoder pass over
their prefix tree (``CandidateTrie``: shared prefixes computed once, the same states as one
sequence per candidate); a candidate's score is the sum of its token log-probabilities (Eq. 9;
``raw_logits=True`` sums raw logits, as the authors' code did); the policy is the softmax over
the candidates (Eq. 10). The critic is an MLP on the decoder's state at the root (the decoder
start token). With ``TargetedCandidates`` one prompt decides for several targets: each
candidate is teacher-forced behind the target's prefix, only its own tokens are scored, and
the critic reads the state after the prefix. Fusing the decisions into a joint policy
(Eq. 11) is the agent's business (``jaxmac.agents.policy``).

One call scores the prompts of several agent groups (the UEs' own prompts and the BS's),
each row with its group's candidates: the model, and so its compiled program, appears once
per call site, not once per group.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxmac.models.dedup import check_chunk, deduplicated, distinct_keys
from jaxmac.models.t5 import T5


@struct.dataclass
class CandidateSet:
    """Token ids of one agent group's candidate answers."""

    ids: jax.Array  # (C, Lc) int32, the tokenizer's ids of each candidate string (with </s>), padded
    mask: jax.Array  # (C, Lc) bool, real tokens

    @classmethod
    def build(cls, texts: Sequence[str], tokenizer: object) -> CandidateSet:
        rows = [tokenizer(t)["input_ids"] for t in texts]
        length = max(len(r) for r in rows)
        ids = [r + [tokenizer.pad_token_id] * (length - len(r)) for r in rows]
        mask = [[True] * len(r) + [False] * (length - len(r)) for r in rows]
        return cls(ids=jnp.asarray(ids, jnp.int32), mask=jnp.asarray(mask, bool))


@struct.dataclass
class TargetedCandidates:
    """One prompt deciding for T targets: each candidate answer behind each target's prefix on
    the decoder side (``"UE 3"`` then ``"acknowledge"``). Only the answer's tokens are scored."""

    ids: jax.Array  # (T, C, Lt) int32, target t's prefix then candidate c's ids (with </s>), padded
    mask: jax.Array  # (T, C, Lt) bool, real tokens
    scored: jax.Array  # (T, C, Lt) bool, the candidate's tokens (not the prefix's)
    value_at: jax.Array  # (T,) int32, the decoder position the critic reads: the prefix's length

    @classmethod
    def build(cls, prefixes: Sequence[str], texts: Sequence[str], tokenizer: object) -> TargetedCandidates:
        heads = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prefixes]
        answers = [tokenizer(t)["input_ids"] for t in texts]
        length = max(len(h) for h in heads) + max(len(a) for a in answers)
        ids = np.full((len(heads), len(answers), length), tokenizer.pad_token_id, np.int32)
        mask = np.zeros(ids.shape, bool)
        scored = np.zeros(ids.shape, bool)
        for t, head in enumerate(heads):
            for c, answer in enumerate(answers):
                ids[t, c, : len(head) + len(answer)] = head + answer
                mask[t, c, : len(head) + len(answer)] = True
                scored[t, c, len(head) : len(head) + len(answer)] = True
        value_at = np.asarray([len(h) for h in heads], np.int32)
        return cls(*(jnp.asarray(a) for a in (ids, mask, scored, value_at)))

    @classmethod
    def untargeted(cls, candidates: CandidateSet) -> TargetedCandidates:
        """A ``CandidateSet`` as one target with no prefix (the critic reads the start position)."""
        mask = candidates.mask[None]
        return cls(ids=candidates.ids[None], mask=mask, scored=mask, value_at=jnp.zeros(1, jnp.int32))


@struct.dataclass
class Candidates:
    """The UEs' candidates (``"{action} {ucm}"``) and the BS's (``"{dcm}"``, behind ``"UE r"``
    when the prompt template names the BS's target on the decoder side), in the template's order."""

    ue: CandidateSet
    bs: CandidateSet | TargetedCandidates

    @classmethod
    def build(
        cls,
        ue_texts: Sequence[str],
        bs_texts: Sequence[str],
        tokenizer: object,
        bs_prefixes: Sequence[str] = (),
    ) -> Candidates:
        bs = (
            TargetedCandidates.build(bs_prefixes, bs_texts, tokenizer)
            if bs_prefixes
            else CandidateSet.build(bs_texts, tokenizer)
        )
        return cls(ue=CandidateSet.build(ue_texts, tokenizer), bs=bs)


#: A padded candidate's score: below any real one, and finite, so that its probability is
#: exactly 0 and no NaN reaches a gradient through its entropy term.
_ABSENT = -1e9


@struct.dataclass
class CandidateTrie:
    """The candidate answers of G agent groups as prefix trees of decoder positions, for scoring
    every candidate of a prompt in one decoder pass (``T5.decode_tree``): a node is a prefix of
    some candidate's teacher-forced tokens (the root: the empty prefix, fed the decoder start
    token), and its logits score the token that follows it. Candidates that share a prefix
    share its nodes: a UE's six ``"{action} {ucm}</s>"`` answers need 10 nodes instead of 18
    teacher-forced positions, a BS's three ``"{dcm}</s>"`` 4 instead of 6. Groups are padded
    to the largest's nodes (N), targets (T), candidates (C) and scored tokens (K)."""

    node_ids: jax.Array  # (G, N) int32, each node's decoder input: its prefix's last token (the root: start)
    visible: jax.Array  # (G, N, N) bool, [g, query, key]: key is query or one of its ancestors
    depth: jax.Array  # (G, N) int32, the node's prefix length (its decoder position)
    token_node: jax.Array  # (G, T, C, K) int32, the node whose logits score token k of candidate c
    token_id: jax.Array  # (G, T, C, K) int32, that token
    token_scored: jax.Array  # (G, T, C, K) bool, a scored token (not padding, not a target's prefix)
    candidate: jax.Array  # (G, T, C) bool, a real candidate of a real target
    value_node: jax.Array  # (G, T) int32, the node the critic reads: the end of the target's prefix

    @classmethod
    def build(cls, groups: Sequence[CandidateSet | TargetedCandidates], start: int) -> CandidateTrie:
        """The trees of ``groups`` (concrete arrays), group g at index g; ``start``: the T5's
        decoder start token id."""
        trees = [_tree(_targeted(g), start) for g in groups]
        stacked = {}
        for name in trees[0]:
            arrays = [tree[name] for tree in trees]
            shape = np.max([a.shape for a in arrays], axis=0)
            pads = ([(0, size - now) for size, now in zip(shape, a.shape, strict=True)] for a in arrays)
            stacked[name] = np.stack([np.pad(a, pad) for a, pad in zip(arrays, pads, strict=True)])
        stacked["visible"] |= np.eye(stacked["visible"].shape[-1], dtype=bool)  # padding sees itself
        return cls(**{name: jnp.asarray(a) for name, a in stacked.items()})


def _targeted(group: CandidateSet | TargetedCandidates) -> tuple[np.ndarray, ...]:
    """A group's (T, C, Lt) ids, mask and scored tokens and (T,) prefix lengths."""
    if isinstance(group, TargetedCandidates):
        return tuple(np.asarray(a) for a in (group.ids, group.mask, group.scored, group.value_at))
    mask = np.asarray(group.mask)[None]
    return np.asarray(group.ids)[None], mask, mask, np.zeros(1, np.int32)


def _tree(candidates: tuple[np.ndarray, ...], start: int) -> dict[str, np.ndarray]:
    """One group's prefix tree: ``CandidateTrie``'s fields without the group axis."""
    ids, mask, scored, value_at = candidates
    node_of: dict[tuple[int, ...], int] = {}
    node_ids, depth, parent = [], [], []

    def node(prefix: tuple[int, ...]) -> int:
        if prefix not in node_of:
            up = node(prefix[:-1]) if prefix else -1
            node_of[prefix] = len(node_ids)
            node_ids.append(prefix[-1] if prefix else start)
            depth.append(len(prefix))
            parent.append(up)
        return node_of[prefix]

    targets, count, _ = ids.shape
    paths = [[[int(x) for x in ids[t, c][mask[t, c]]] for c in range(count)] for t in range(targets)]
    scored_at = [[np.flatnonzero(scored[t, c]) for c in range(count)] for t in range(targets)]
    k = max(len(s) for row in scored_at for s in row)
    token_node, token_id = np.zeros((targets, count, k), np.int32), np.zeros((targets, count, k), np.int32)
    token_scored = np.zeros((targets, count, k), bool)
    for t in range(targets):
        for c in range(count):
            for j, position in enumerate(scored_at[t][c]):
                token_node[t, c, j] = node(tuple(paths[t][c][:position]))
                token_id[t, c, j] = paths[t][c][position]
                token_scored[t, c, j] = True
    value_node = np.asarray([node(tuple(paths[t][0][: value_at[t]])) for t in range(targets)], np.int32)
    visible = np.eye(len(node_ids), dtype=bool)
    for i in range(len(node_ids)):
        up = parent[i]
        while up >= 0:
            visible[i, up], up = True, parent[up]
    return {
        "node_ids": np.asarray(node_ids, np.int32),
        "visible": visible,
        "depth": np.asarray(depth, np.int32),
        "token_node": token_node,
        "token_id": token_id,
        "token_scored": token_scored,
        "candidate": np.ones((targets, count), bool),
        "value_node": value_node,
    }


def prompt_groups(group: jax.Array | None, count: int, trie: CandidateTrie) -> jax.Array:
    """Each of ``count`` prompts' group in ``trie`` as a (count,) array: ``group``, or group 0
    for all when None. A concrete ``group`` of another shape or with an index outside the
    trie's groups is an error naming it (indexing the trie would clamp such an index to the
    last group); a traced one is the caller's to get right."""
    if group is None:
        return jnp.zeros(count, jnp.int32)
    if not isinstance(group, jax.core.Tracer):
        values, groups = np.asarray(group), trie.node_ids.shape[0]
        if values.shape != (count,) or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"group must be ({count},) integers, got {values.dtype} {values.shape}")
        if np.any((values < 0) | (values >= groups)):
            raise ValueError(f"group must be in [0, {groups}) (the trie's groups), got {values}")
    return group


@struct.dataclass
class ActorOutput:
    """Per prompt and target of its group's trie (a (P, T) leading shape; T = 1 for a group
    that decides for one target); candidates past a group's own are padding."""

    log_probs: jax.Array  # (P, T, C) float32 log pi(candidate | prompt); padding: about -1e9
    entropy: jax.Array  # (P, T) float32 entropy of each decision
    value: jax.Array  # (P, T) float32 critic value of each prompt and target


class ValueHead(nnx.Module):
    """GLAM's critic head: Linear(d, h) - Sigmoid - Linear(h, h) - Sigmoid - Linear(h, 1)."""

    def __init__(self, d_model: int, hidden: int, rngs: nnx.Rngs) -> None:
        self.layers = nnx.List(
            [
                nnx.Linear(d_model, hidden, rngs=rngs),
                nnx.Linear(hidden, hidden, rngs=rngs),
                nnx.Linear(hidden, 1, rngs=rngs),
            ]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)
        for layer in self.layers[:-1]:
            x = jax.nn.sigmoid(layer(x))
        return self.layers[-1](x)[..., 0]


class LanguageActorCritic(nnx.Module):
    """A T5 that scores candidate answers plus a value head; see the module docstring.
    ``detach_value``: the head reads the decoder state through ``stop_gradient``, so the value
    loss trains the head alone and the T5 follows the policy's gradient only (MAPPO's separate
    critic, in effect); False is the paper's shared critic."""

    def __init__(
        self, t5: T5, *, value_hidden: int = 1024, detach_value: bool = False, rngs: nnx.Rngs
    ) -> None:
        self.t5 = t5
        self.value_head = ValueHead(t5.cfg.d_model, value_hidden, rngs)
        self.detach_value = detach_value

    def __call__(
        self,
        prompt_ids: jax.Array,
        prompt_mask: jax.Array,
        trie: CandidateTrie,
        group: jax.Array | None = None,
        raw_logits: bool = False,
    ) -> ActorOutput:
        """prompt_ids, prompt_mask: (P, L) prompts; group: (P,) int32, each prompt's agent group
        in ``trie`` (None: all of group 0). Every prompt is encoded once and all its candidates
        are scored in one decoder pass over its group's tree."""
        g = prompt_groups(group, prompt_ids.shape[0], trie)
        encoded = self.t5.encode(prompt_ids, prompt_mask)
        hidden = self.t5.decode_tree(trie.node_ids[g], trie.visible[g], trie.depth[g], encoded, prompt_mask)
        logits = self.t5.lm_logits(hidden)  # (P, N, V)
        if not raw_logits:
            logits = jax.nn.log_softmax(logits, axis=-1)  # log p(token | prompt, prefix)
        index = trie.token_node[g] * logits.shape[-1] + trie.token_id[g]  # into (N * V) per prompt
        token = jnp.take_along_axis(logits.reshape(len(g), -1), index.reshape(len(g), -1), axis=1)
        token = jnp.where(trie.token_scored[g], token.reshape(index.shape), 0.0)
        candidate = trie.candidate[g]
        score = jnp.where(candidate, jnp.sum(token, axis=-1), _ABSENT)  # Eq. 9, (P, T, C)
        log_probs = jax.nn.log_softmax(score, axis=-1)  # Eq. 10
        entropy = -jnp.sum(jnp.where(candidate, jnp.exp(log_probs) * log_probs, 0.0), axis=-1)
        state = jnp.take_along_axis(hidden, trie.value_node[g][..., None], axis=1)  # (P, T, d)
        if self.detach_value:
            state = jax.lax.stop_gradient(state)
        return ActorOutput(log_probs=log_probs, entropy=entropy, value=self.value_head(state))


def act(
    model: LanguageActorCritic,
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    trie: CandidateTrie,
    *,
    group: jax.Array | None = None,
    dedup_chunk: int | None = None,
    valid: jax.Array | None = None,
    raw_logits: bool = False,
) -> ActorOutput:
    """``model(...)`` on P prompts, or, with ``dedup_chunk``, on its distinct prompts only,
    ``dedup_chunk`` at a time (``jaxmac.models.dedup``): work and memory follow the distinct
    prompts, forward and backward, and the outputs and gradients equal those without dedup.
    ``valid`` (P,) bool marks the prompts whose outputs matter (active agents); the others
    share one representative, so their outputs are those of some invalid prompt."""
    if dedup_chunk is None:
        return model(prompt_ids, prompt_mask, trie, group, raw_logits)
    graphdef, params = nnx.split(model)
    return act_distinct(
        graphdef,
        params,
        prompt_ids,
        prompt_mask,
        trie,
        dedup_chunk,
        group=group,
        valid=valid,
        raw_logits=raw_logits,
    )


def act_distinct(
    graphdef: nnx.GraphDef,
    params: Any,
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    trie: CandidateTrie,
    dedup_chunk: int,
    *,
    group: jax.Array | None = None,
    valid: jax.Array | None = None,
    raw_logits: bool = False,
) -> ActorOutput:
    """``act(nnx.merge(graphdef, params), ..., dedup_chunk=dedup_chunk)`` for a model held as
    its graph and parameters (an ``nnx.State`` or a pure dict of it), as inside a jitted
    training step: no module is built around the parameters to be taken apart again."""
    check_chunk(dedup_chunk)
    run = functools.partial(_score_chunk, graphdef, raw_logits)
    g = prompt_groups(group, prompt_ids.shape[0], trie)
    # the group in every token's key (one elementwise pass, no wider copy of the batch)
    keys = distinct_keys(prompt_ids * trie.node_ids.shape[0] + g[:, None], prompt_mask, valid)
    chunk = min(dedup_chunk, prompt_ids.shape[0])
    return deduplicated(run, chunk, params, trie, keys, prompt_ids, prompt_mask, g)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _score_chunk(
    graphdef: nnx.GraphDef,
    raw_logits: bool,
    params: Any,
    trie: CandidateTrie,
    ids: jax.Array,
    mask: jax.Array,
    group: jax.Array,
) -> ActorOutput:
    """The model on one chunk of prompts. A jitted function of its own, so that its trace is
    made once per chunk shape and reused by every call site of a program (the rollout, the
    loss, the backward pass): this cuts the Python tracing and lowering of a training program,
    not the work it compiles to."""
    return nnx.merge(graphdef, params)(ids, mask, trie, group, raw_logits)
