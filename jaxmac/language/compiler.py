"""Prompt token ids assembled inside jit from tables tokenized once (docs/SPEC.md §2).

At start-up every string of every template table is tokenized once with the model's own
tokenizer (no special tokens). Inside jit, a prompt's ids are the gathered rows of its
segments, concatenated, then compacted to the left of a static maximum length, followed by
the tokenizer's closing special tokens (T5: ``</s>``) and padding. This equals
``tokenizer(render_prompt(...))`` for tokenizers that split on whitespace first.

UE and BS prompts are kept apart, each padded to its own static length (a UE's prompt is a
third of the length of the BS's, which lists every UE), so neither pays for the other's. A BS
prompt's length grows with the UEs it lists: ``ues`` bounds them (``bounded``), so a trainer
whose episodes hold at most ``n_max`` UEs pads to n_max UEs' sentences, not to ``max_ues``'.
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
class SegmentLayout:
    """Where one agent's S prompt segments read from the raveled tables, and the W columns
    (the sum of the segments' table widths) their tokens fill before compaction."""

    id_offset: np.ndarray  # (S,) int32, start of the segment's table in the raveled token ids
    width: np.ndarray  # (S,) int32, token width of the segment's table (its longest string)
    length_offset: np.ndarray  # (S,) int32, start of the segment's table in the raveled lengths
    column_segment: np.ndarray  # (W,) int32, the segment each column belongs to
    column_position: np.ndarray  # (W,) int32, the column's token position within its segment


@dataclasses.dataclass(frozen=True, eq=False)
class PromptCompiler:
    """``compiler(obs) -> Prompts``: every prompt of a TTI as token ids, jittable and vmappable."""

    template: PromptTemplate
    tokenizer: Any  # a transformers tokenizer
    # the most active UEs a prompt lists, all in slots below it (None: the environment's
    # max_ues); the sentences of slots at or past it leave the static length (see ``bounded``)
    ues: int | None = None
    # every table's padded token ids (n_t, w_t) raveled and concatenated, and its lengths (n_t,)
    flat: tuple[np.ndarray, np.ndarray] = dataclasses.field(init=False)
    layout: dict[str, SegmentLayout] = dataclasses.field(init=False)  # per agent
    suffix: tuple[int, ...] = dataclasses.field(init=False)
    max_len: dict[str, int] = dataclasses.field(init=False)  # static prompt length per agent

    def __post_init__(self) -> None:
        tok = self.tokenizer
        pad = tok.pad_token_id
        if pad is None:
            raise ValueError("tokenizer must define a pad token (pad_token_id is None)")
        tables = [
            _pad_rows([tok(s, add_special_tokens=False)["input_ids"] for s in table], pad)
            for table in self.template.tables
        ]
        id_offsets = np.cumsum([0] + [ids.size for ids, _ in tables])
        length_offsets = np.cumsum([0] + [len(lengths) for _, lengths in tables])
        layout = {}
        for agent in AGENTS:
            segments = np.asarray(self.template.table_ids(agent))
            width = np.asarray([tables[t][0].shape[1] for t in segments], np.int32)
            layout[agent] = SegmentLayout(
                id_offset=id_offsets[segments].astype(np.int32),
                width=width,
                length_offset=length_offsets[segments].astype(np.int32),
                column_segment=np.repeat(np.arange(len(segments)), width).astype(np.int32),
                column_position=np.concatenate([np.arange(w) for w in width]).astype(np.int32),
            )
        suffix = tuple(tok("")["input_ids"])
        flat = (
            np.concatenate([ids.ravel() for ids, _ in tables]),
            np.concatenate([lengths for _, lengths in tables]),
        )
        object.__setattr__(self, "flat", flat)
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "suffix", suffix)
        m = self.template.env.max_ues
        ues = m if self.ues is None else self.ues
        if isinstance(ues, bool) or not isinstance(ues, int) or not 1 <= ues <= m:
            raise ValueError(f"ues must be an integer in [1, max_ues={m}], got {ues!r}")
        max_len = {}
        for agent in AGENTS:
            shown = np.asarray(self.template.segment_slots[agent]) < ues  # -1: every prompt's
            max_len[agent] = int(layout[agent].width[shown].sum()) + len(suffix)
        object.__setattr__(self, "max_len", max_len)

    def bounded(self, ues: int) -> PromptCompiler:
        """This compiler for observations whose active UEs all sit in the first ``ues`` slots
        (``EnvParams.n_max <= ues``: the environment draws and joins UEs below n_max): the same
        prompts, with the BS's padded to ``ues`` UEs' sentences. A prompt listing more would be
        cut short, so evaluation at other counts keeps the unbounded compiler."""
        return dataclasses.replace(self, ues=ues)

    def assemble(self, rows: jax.Array, agent: str) -> tuple[jax.Array, jax.Array]:
        """(P, S) table rows of P prompts -> ids (P, L) and mask (P, L).

        One gather reads every segment's tokens from all tables raveled into one array, so the
        compiled program holds a handful of operations whatever the number of segments (a BS
        prompt has 40 at 8 UEs), not a few per segment."""
        layout = self.layout[agent]
        tokens_flat, lengths_flat = (jnp.asarray(a) for a in self.flat)
        row = jnp.maximum(rows, 0)
        start = jnp.asarray(layout.id_offset) + row * jnp.asarray(layout.width)  # (P, S)
        column_segment = jnp.asarray(layout.column_segment)
        column_position = jnp.asarray(layout.column_position)
        tokens = tokens_flat[start[:, column_segment] + column_position]  # (P, W)
        length = jnp.where(rows >= 0, lengths_flat[jnp.asarray(layout.length_offset) + row], 0)  # (P, S)
        keep = column_position < length[:, column_segment]
        p = rows.shape[0]
        suffix = jnp.broadcast_to(jnp.asarray(self.suffix, jnp.int32), (p, len(self.suffix)))
        tokens = jnp.concatenate([tokens, suffix], axis=1)
        keep = jnp.concatenate([keep, jnp.ones_like(suffix, bool)], axis=1)
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
