"""Prompt token ids assembled inside jit from tables tokenized once (SPEC section 2).

At start-up every string of every template table is tokenized once with the model's own
tokenizer (no special tokens). Inside jit, a prompt's ids are the gathered rows of its
segments, concatenated, then compacted to the left of a static maximum length, followed by
the tokenizer's closing special tokens (T5: ``</s>``) and padding. This equals
``tokenizer(render_prompt(...))`` for tokenizers that split on whitespace first.
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
    """All 2M prompts of one TTI: rows 0..M-1 are the UEs' own, rows M..2M-1 the BS's about each UE."""

    ids: jax.Array  # (2M, L) int32 token ids, left-aligned, pad_token_id after the end
    mask: jax.Array  # (2M, L) bool, True on real tokens


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
    max_len: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        tok = self.tokenizer
        pad = tok.pad_token_id
        tables = tuple(
            _pad_rows([tok(s, add_special_tokens=False)["input_ids"] for s in table], pad)
            for table in self.template.tables
        )
        suffix = tuple(tok("")["input_ids"])
        widths = [sum(tables[t][0].shape[1] for t in self.template.table_ids(a)) for a in AGENTS]
        object.__setattr__(self, "tables", tables)
        object.__setattr__(self, "suffix", suffix)
        object.__setattr__(self, "max_len", max(widths) + len(suffix))

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
        position = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, self.max_len)  # out of range: dropped
        prompt = jnp.arange(p)[:, None]
        ids = jnp.full((p, self.max_len), self.tokenizer.pad_token_id, jnp.int32)
        ids = ids.at[prompt, position].set(tokens, mode="drop")
        mask = jnp.zeros((p, self.max_len), bool).at[prompt, position].set(True, mode="drop")
        return ids, mask

    def __call__(self, obs: Observation) -> Prompts:
        parts = [self.assemble(self.template.rows(obs, agent), agent) for agent in AGENTS]
        return Prompts(
            ids=jnp.concatenate([p[0] for p in parts]), mask=jnp.concatenate([p[1] for p in parts])
        )
