"""The LLM actor-critic of LLM4MAC (SPEC section 3, paper Eq. 9-11).

Every prompt is encoded once; each of its candidates is scored by teacher-forcing the
candidate's tokens through the decoder (all candidates of all prompts in one batched pass,
sharing the encoder states); a candidate's score is the sum of its token log-probabilities
(Eq. 9; ``raw_logits=True`` sums raw logits, as the authors' code did); the policy is the
softmax over the valid candidates (Eq. 10). The critic is an MLP on the decoder's final
state at the first decoder position. ``fuse`` is the policy fusion of Eq. 11.

Prompts come flattened: P = episodes x 2M rows, ``agent`` (P,) saying 0 (UE) or 1 (BS).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx, struct

from jaxmac.env import Action
from jaxmac.language.prompts import PromptTemplate
from jaxmac.models.dedup import deduplicated
from jaxmac.models.t5 import T5

UE, BS = 0, 1


@struct.dataclass
class Candidates:
    """Token ids of every candidate answer; row 0 the UE's, row 1 the BS's, padded to C."""

    ids: jax.Array  # (2, C, Lc) int32, the tokenizer's ids of each candidate string (with </s>)
    mask: jax.Array  # (2, C, Lc) bool, real tokens
    valid: jax.Array  # (2, C) bool, real candidates (the BS has fewer than the UE)

    @classmethod
    def build(cls, template: PromptTemplate, tokenizer: object) -> Candidates:
        lists = [
            [tokenizer(c)["input_ids"] for c in cands]
            for cands in (template.ue_candidates, template.bs_candidates)
        ]
        n_cand = max(len(x) for x in lists)
        length = max(len(t) for x in lists for t in x)
        ids = jnp.full((2, n_cand, length), tokenizer.pad_token_id, jnp.int32)
        mask = jnp.zeros((2, n_cand, length), bool)
        for a, cands in enumerate(lists):
            for c, toks in enumerate(cands):
                ids = ids.at[a, c, : len(toks)].set(jnp.asarray(toks, jnp.int32))
                mask = mask.at[a, c, : len(toks)].set(True)
        valid = jnp.arange(n_cand)[None, :] < jnp.asarray([len(x) for x in lists])[:, None]
        return cls(ids=ids, mask=mask, valid=valid)


@struct.dataclass
class ActorOutput:
    log_probs: jax.Array  # (P, C) float32 log pi(candidate | prompt), -inf on invalid candidates
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
    """A T5 that scores candidate answers plus a value head; see the module docstring."""

    def __init__(self, t5: T5, *, value_hidden: int = 1024, rngs: nnx.Rngs) -> None:
        self.t5 = t5
        self.value_head = ValueHead(t5.cfg.d_model, value_hidden, rngs)

    def __call__(
        self,
        prompt_ids: jax.Array,
        prompt_mask: jax.Array,
        agent: jax.Array,
        candidates: Candidates,
        raw_logits: bool = False,
    ) -> ActorOutput:
        """prompt_ids, prompt_mask: (P, L); agent: (P,) 0 UE / 1 BS."""
        ids, mask, valid = (
            candidates.ids[agent],
            candidates.mask[agent],
            candidates.valid[agent],
        )  # (P, C, Lc)
        encoded = self.t5.encode(prompt_ids, prompt_mask)
        start = jnp.full(ids.shape[:2] + (1,), self.t5.cfg.decoder_start_token_id, jnp.int32)
        decoder_ids = jnp.concatenate([start, ids[..., :-1]], axis=-1)  # teacher forcing
        decoder_mask = jnp.concatenate([jnp.ones_like(start, bool), mask[..., :-1]], axis=-1)
        hidden = self.t5.decode(decoder_ids, encoded, prompt_mask, decoder_mask)  # (P, C, Lc, d)
        logits = self.t5.lm_logits(hidden)  # (P, C, Lc, V)
        token = jnp.take_along_axis(logits, ids[..., None], axis=-1)[..., 0]
        if not raw_logits:
            token = token - jax.nn.logsumexp(logits, axis=-1)  # log p(token | prompt, prefix)
        score = jnp.sum(jnp.where(mask, token, 0.0), axis=-1)  # Eq. 9
        log_probs = jax.nn.log_softmax(jnp.where(valid, score, -jnp.inf), axis=-1)  # Eq. 10
        probs = jnp.exp(log_probs)
        entropy = -jnp.sum(jnp.where(valid, probs * log_probs, 0.0), axis=-1)
        value = self.value_head(hidden[:, 0, 0])  # first decoder position (same for every candidate)
        return ActorOutput(log_probs=log_probs, entropy=entropy, value=value)


def act(
    model: LanguageActorCritic,
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    agent: jax.Array,
    candidates: Candidates,
    *,
    dedup_capacity: int | None = None,
    raw_logits: bool = False,
) -> ActorOutput:
    """``model(...)`` on a flattened batch of P prompts, run on the distinct (prompt, agent) rows
    only when ``dedup_capacity`` is set (falling back to all rows if there are more)."""

    def run(ids: jax.Array, mask: jax.Array, agent: jax.Array) -> ActorOutput:
        return model(ids, mask, agent, candidates, raw_logits)

    if dedup_capacity is None:
        return run(prompt_ids, prompt_mask, agent)
    keys = jnp.concatenate([agent[:, None], prompt_ids * 2 + prompt_mask], axis=1)
    return deduplicated(run, dedup_capacity, keys, prompt_ids, prompt_mask, agent)


def fuse(values: jax.Array, active: jax.Array, consensus: jax.Array | None = None) -> jax.Array:
    """Eq. 11: the weighted mean over active agents of per-decision ``values`` (..., 2M), e.g. the
    chosen candidates' log-probabilities (joint log-probability) or the critic values (team
    value). ``active`` (..., M) masks both the UE decisions and the BS decisions about padded
    slots; ``consensus`` (..., 2M) are the consensus factors (default 1)."""
    weights = jnp.concatenate([active, active], axis=-1).astype(jnp.float32)
    if consensus is not None:
        weights = weights * consensus
    return jnp.sum(weights * values, axis=-1) / jnp.maximum(jnp.sum(weights, axis=-1), 1e-9)


def choices_to_action(choice: jax.Array, ucm_vocab: int) -> Action:
    """(..., 2M) chosen candidate indices -> Action (..., M): UE candidate c is
    (action c // ucm_vocab, UCM c % ucm_vocab), as ``PromptTemplate.ue_candidates`` orders them."""
    m = choice.shape[-1] // 2
    ue, bs = choice[..., :m], choice[..., m:]
    return Action(
        ue=(ue // ucm_vocab).astype(jnp.int32),
        ucm=(ue % ucm_vocab).astype(jnp.int32),
        dcm=bs.astype(jnp.int32),
    )


def sample(key: jax.Array, log_probs: jax.Array) -> jax.Array:
    """(..., C) log-probabilities -> (...) sampled candidate indices."""
    return jax.random.categorical(key, log_probs, axis=-1)


def greedy(log_probs: jax.Array) -> jax.Array:
    """(..., C) log-probabilities -> (...) most likely candidate indices."""
    return jnp.argmax(log_probs, axis=-1)
