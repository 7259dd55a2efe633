"""The LLM actor-critic of LLM4MAC (paper Eq. 9-10).

Every prompt is encoded once; each of its candidates is scored by teacher-forcing the
candidate's tokens through the decoder (all candidates of all prompts in one batched pass,
sharing the encoder states); a candidate's score is the sum of its token log-probabilities
(Eq. 9; ``raw_logits=True`` sums raw logits, as the authors' code did); the policy is the
softmax over the candidates (Eq. 10). The critic is an MLP on the decoder's final state at
the first decoder position. With ``TargetedCandidates`` one prompt decides for several targets:
each candidate is teacher-forced behind the target's prefix, only its own tokens are scored,
and the critic reads the state after the prefix. Fusing the decisions into a joint policy
(Eq. 11) is the agent's business (``jaxmac.agents.policy``).

The model is called once per agent group (the UEs' own prompts, the BS's prompts), each with
its own candidates and static prompt length: P prompts of one group at a time.
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


@struct.dataclass
class ActorOutput:
    """Per prompt, or, for ``TargetedCandidates``, per prompt and target (a (P, T) leading shape)."""

    log_probs: jax.Array  # (P, C) float32 log pi(candidate | prompt)
    entropy: jax.Array  # (P,) float32 entropy of each decision
    value: jax.Array  # (P,) float32 critic value of each prompt


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
        candidates: CandidateSet | TargetedCandidates,
        raw_logits: bool = False,
    ) -> ActorOutput:
        """prompt_ids, prompt_mask: (P, L) prompts of one agent group."""
        targeted = candidates if isinstance(candidates, TargetedCandidates) else None
        answers = targeted or TargetedCandidates.untargeted(candidates)
        p, (t, c, length) = prompt_ids.shape[0], answers.ids.shape
        ids = jnp.broadcast_to(answers.ids.reshape(t * c, length), (p, t * c, length))
        mask = jnp.broadcast_to(answers.mask.reshape(t * c, length), ids.shape)
        encoded = self.t5.encode(prompt_ids, prompt_mask)
        hidden, logits = self.t5.teacher_forced(ids, mask, encoded, prompt_mask)  # (P, T*C, Lt, d | V)
        token = jnp.take_along_axis(logits, ids[..., None], axis=-1)[..., 0]
        if not raw_logits:
            token = token - jax.nn.logsumexp(logits, axis=-1)  # log p(token | prompt, prefix)
        scored = answers.scored.reshape(t * c, length)
        score = jnp.sum(jnp.where(scored, token, 0.0), axis=-1).reshape(p, t, c)  # Eq. 9
        log_probs = jax.nn.log_softmax(score, axis=-1)  # Eq. 10
        entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)
        # the state before the answer's first token (the same for every candidate of a target)
        before = hidden.reshape(p, t, c, length, -1)[:, :, 0]  # (P, T, Lt, d)
        state = jnp.take_along_axis(before, answers.value_at[None, :, None, None], axis=2)[:, :, 0]
        if self.detach_value:
            state = jax.lax.stop_gradient(state)
        out = ActorOutput(log_probs=log_probs, entropy=entropy, value=self.value_head(state))
        return out if targeted else jax.tree.map(lambda x: x[:, 0], out)


def act(
    model: LanguageActorCritic,
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    candidates: CandidateSet | TargetedCandidates,
    *,
    dedup_chunk: int | None = None,
    valid: jax.Array | None = None,
    raw_logits: bool = False,
) -> ActorOutput:
    """``model(...)`` on P prompts of one agent group, or, with ``dedup_chunk``, on its distinct
    prompts only, ``dedup_chunk`` at a time (``jaxmac.models.dedup``): work and memory follow the
    distinct prompts, forward and backward, and the outputs and gradients equal those without
    dedup. ``valid`` (P,) bool marks the prompts whose outputs matter (active agents); the
    others share one representative, so their outputs are those of some invalid prompt."""
    if dedup_chunk is None:
        return model(prompt_ids, prompt_mask, candidates, raw_logits)
    graphdef, params = nnx.split(model)
    return act_distinct(
        graphdef, params, prompt_ids, prompt_mask, candidates, dedup_chunk, valid=valid, raw_logits=raw_logits
    )


def act_distinct(
    graphdef: nnx.GraphDef,
    params: Any,
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    candidates: CandidateSet | TargetedCandidates,
    dedup_chunk: int,
    *,
    valid: jax.Array | None = None,
    raw_logits: bool = False,
) -> ActorOutput:
    """``act(nnx.merge(graphdef, params), ..., dedup_chunk=dedup_chunk)`` for a model held as
    its graph and parameters (an ``nnx.State`` or a pure dict of it), as inside a jitted
    training step: no module is built around the parameters to be taken apart again."""
    check_chunk(dedup_chunk)
    run = functools.partial(_score_chunk, graphdef, raw_logits)
    keys = distinct_keys(prompt_ids, prompt_mask, valid)
    chunk = min(dedup_chunk, prompt_ids.shape[0])
    return deduplicated(run, chunk, params, candidates, keys, prompt_ids, prompt_mask)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _score_chunk(
    graphdef: nnx.GraphDef,
    raw_logits: bool,
    params: Any,
    candidates: CandidateSet | TargetedCandidates,
    ids: jax.Array,
    mask: jax.Array,
) -> ActorOutput:
    """The model on one chunk of prompts. A jitted function of its own, so that its trace is
    made once per chunk shape and reused by every call site of a program (the rollout, the
    loss, the backward pass of each agent group): this cuts the Python tracing and lowering
    of a training program, not the work it compiles to."""
    return nnx.merge(graphdef, params)(ids, mask, candidates, raw_logits)
