"""Prompt token ids assembled inside jit from tables tokenized once (SPEC section 2).

At start-up every string of every template table is tokenized once with the model's own
tokenizer (no special tokens). Inside jit, a prompt's ids are the gathered rows of its
segments, concatenated, then compacted to the left of a static maximum length, followed by
the tokenizer's closing special tokens (T5: ``</s>``) and padding. This equals
``tokenizer(render_prompt(...))`` for tokenizers that split on whitespace first.

UE and BS prompts are kept apart, each padded to its own static length (a UE's prompt is a
third of the length of the BS's, which lists every UE), so neither pays for the other's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxmac.env import Observation
from jaxmac.language.prompts import AGENTS, PromptTemplate


@struct.dataclass
class Prompts:
    """All 2M prompts of one TTI: row p of ``ue_*`` is UE p's own, row p of ``bs_*`` the BS's about UE p."""

    ue_ids: jax.Array  # (M, L_ue) int32 token ids, left-aligned, pad_token_id after the end
    ue_mask: jax.Array  # (M, L_ue) bool, True on real tokens
    bs_ids: jax.Array  # (M, L_bs) int32
    bs_mask: jax.Array  # (M, L_bs) bool


def _pad_rows(rows: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(1, *(len(r) for r in rows))
    ids = np.full((len(rows), width), pad, np.int32)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return ids, np.array([len(r) for r in rows], np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class PromptCompiler:
    """``compiler(obs) -> Prompts``: every prompt of a TTI as token ids, jittable and vmappable."""

    template: PromptTemplate
    tokenizer: Any  # a transformers tokenizer
    tables: tuple[tuple[np.ndarray, np.ndarray], ...] = dataclasses.field(
        init=False
    )  # (ids (n, w), lengths (n,))
    suffix: tuple[int, ...] = dataclasses.field(init=False)
    max_len: dict[str, int] = dataclasses.field(init=False)  # static prompt length per agent

    def __post_init__(self) -> None:
        tok = self.tokenizer
        pad = tok.pad_token_id
        if pad is None:
            raise ValueError("tokenizer must define a pad token (pad_token_id is None)")
        tables = tuple(
            _pad_rows([tok(s, add_special_tokens=False)["input_ids"] for s in table], pad)
            for table in self.template.tables
        )
        suffix = tuple(tok("")["input_ids"])
        widths = {
            a: sum(tables[t][0].shape[1] for t in self.template.table_ids(a)) + len(suffix) for a in AGENTS
        }
        object.__setattr__(self, "tables", tables)
        object.__setattr__(self, "suffix", suffix)
        object.__setattr__(self, "max_len", widths)

    def assemble(self, rows: jax.Array, agent: str) -> tuple[jax.Array, jax.Array]:
        """(P, S) table rows of P prompts -> ids (P, L) and mask (P, L)."""
        pieces, valid = [], []
        for s, table in enumerate(self.template.table_ids(agent)):
            ids, lengths = (jnp.asarray(a) for a in self.tables[table])
            row = rows[:, s]
            pieces.append(ids[jnp.maximum(row, 0)])
            length = jnp.where(row >= 0, lengths[jnp.maximum(row, 0)], 0)
            valid.append(jnp.arange(ids.shape[1])[None, :] < length[:, None])
        p = rows.shape[0]
        suffix = jnp.broadcast_to(jnp.asarray(self.suffix, jnp.int32), (p, len(self.suffix)))
        tokens = jnp.concatenate([*pieces, suffix], axis=1)
        keep = jnp.concatenate([*valid, jnp.ones_like(suffix, bool)], axis=1)
        length = self.max_len[agent]
        position = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, length)  # out of range: dropped
        prompt = jnp.arange(p)[:, None]
        ids = jnp.full((p, length), self.tokenizer.pad_token_id, jnp.int32)
        ids = ids.at[prompt, position].set(tokens, mode="drop")
        mask = jnp.zeros((p, length), bool).at[prompt, position].set(True, mode="drop")
        return ids, mask

    def __call__(self, obs: Observation) -> Prompts:
        (ue_ids, ue_mask), (bs_ids, bs_mask) = (self.assemble(self.template.rows(obs, a), a) for a in AGENTS)
        return Prompts(ue_ids=ue_ids, ue_mask=ue_mask, bs_ids=bs_ids, bs_mask=bs_mask)
