"""LLM-PT (docs/SPEC.md §4, paper Fig. 5): the Flan-T5 acting by free text generation.

Every decision's prompt (LLM4MAC's SIE prompts) is answered by generating text inside jit
(``jaxmac.models.generate``: encoder once, then the decoder over a key/value cache), and the
answer is parsed into the decision by exact match against the candidate answers' token ids
(``transmit schedule_request``, ``acknowledge``, ...). An answer that matches none is
**invalid**: counted, and replaced by ``nothing null`` (the BS's: ``null``). The T5 is trained
by supervision on the Baseline's answers (``jaxmac.algorithms.supervised``), not by rewards.
Where docs/SPEC.md is silent: one T5 answers for the UEs and the BS (the prompt names the
role, as LLM4MAC's does), where the authors fine-tuned one adapter for each; the answer is
parsed by exact token match, the authors' string parser being unspecified.

The most likely answers (``mode``, greedy decoding) depend on the prompt alone, so they are
generated for the distinct prompts of a batch only (``jaxmac.models.dedup``); sampled answers
(``sample``, at ``temperature``) are generated for every prompt.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct

from jaxmac.agents.base import Params, with_defaults
from jaxmac.agents.llm import LanguageAgent, LanguageModel, check_count, check_number, t5_init
from jaxmac.agents.policy import AgentOutput, Choices, choices_to_action
from jaxmac.env import Action, Observation, UDTSEnv
from jaxmac.models.actor import Candidates, CandidateSet
from jaxmac.models.dedup import deduplicated, distinct_keys
from jaxmac.models.generate import generate
from jaxmac.models.lora import add_lora, is_lora, merge_lora
from jaxmac.models.t5 import T5
from jaxmac.settings import setting


@struct.dataclass
class Answers:
    """Generated answers of every decision: ``AnswerPolicy``'s sample."""

    ue: jax.Array  # (..., M, T) int32 token ids of each UE's answer (</s>, then pad)
    bs: jax.Array  # (..., M, T) int32 token ids of the BS's answer about each UE slot


def parse_answers(ids: jax.Array, candidates: CandidateSet) -> jax.Array:
    """(..., T) generated ids -> (...) int32 index of the candidate they spell exactly, -1 if none.
    Both sides end in ``</s>`` followed by the pad token, so equal rows are equal answers."""
    length = max(ids.shape[-1], candidates.ids.shape[1])
    ids = jnp.pad(ids, [(0, 0)] * (ids.ndim - 1) + [(0, length - ids.shape[-1])])
    pad = ((0, 0), (0, length - candidates.ids.shape[1]))
    table = jnp.pad(jnp.where(candidates.mask, candidates.ids, 0), pad)  # (C, length)
    match = jnp.all(ids[..., None, :] == table, axis=-1)  # (..., C)
    return jnp.where(jnp.any(match, axis=-1), jnp.argmax(match, axis=-1), -1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _greedy_chunk(
    graphdef: nnx.GraphDef,
    length: int,
    params: Params,
    allowed: jax.Array | None,
    ids: jax.Array,
    mask: jax.Array,
) -> jax.Array:
    """Greedy answers (P, T) to a chunk of prompts; jitted on its own so every call site of a
    program shares one trace per chunk shape."""
    return generate(nnx.merge(graphdef, params), ids, mask, length, allowed=allowed).ids


@struct.dataclass
class AnswerPolicy:
    """Answers generated for every decision of a batch of TTIs (leading axis E): an
    ``ActingPolicy`` whose sample is ``Answers``."""

    params: Params  # the T5's
    ue_ids: jax.Array  # (E, M, L_ue) prompts and their masks (``jaxmac.language.Prompts``)
    ue_mask: jax.Array
    bs_ids: jax.Array  # (E, M, L_bs)
    bs_mask: jax.Array
    active: jax.Array  # (E, M) bool
    candidates: Candidates
    temperature: jax.Array  # () float32, of ``sample``
    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    answer_len: int = struct.field(pytree_node=False)
    constrained: bool = struct.field(pytree_node=False)
    dedup_chunk: int = struct.field(pytree_node=False)
    ucm_vocab: int = struct.field(pytree_node=False)

    def _answers(self, key: jax.Array | None) -> Answers:
        valid = self.active.reshape(-1)

        def group(
            ids: jax.Array, mask: jax.Array, candidates: CandidateSet, k: jax.Array | None
        ) -> jax.Array:
            e, m, length = ids.shape
            flat_ids, flat_mask = ids.reshape(e * m, length), mask.reshape(e * m, length)
            allowed = candidates.ids if self.constrained else None
            if k is None:
                run = functools.partial(_greedy_chunk, self.graphdef, self.answer_len)
                keys = distinct_keys(flat_ids, flat_mask, valid)
                chunk = min(self.dedup_chunk, e * m)
                out = deduplicated(run, chunk, self.params, allowed, keys, flat_ids, flat_mask)
            else:
                t5 = nnx.merge(self.graphdef, self.params)
                out = generate(
                    t5,
                    flat_ids,
                    flat_mask,
                    self.answer_len,
                    key=k,
                    temperature=self.temperature,
                    allowed=allowed,
                ).ids
            return out.reshape(e, m, self.answer_len)

        ue_key, bs_key = (None, None) if key is None else jax.random.split(key)
        return Answers(
            ue=group(self.ue_ids, self.ue_mask, self.candidates.ue, ue_key),
            bs=group(self.bs_ids, self.bs_mask, self.candidates.bs, bs_key),
        )

    def sample(self, key: jax.Array) -> Answers:
        """Answers sampled token by token at ``temperature``."""
        return self._answers(key)

    def mode(self) -> Answers:
        """Greedy answers (the most likely token at every step)."""
        return self._answers(None)

    def choices(self, answers: Answers) -> Choices:
        """The candidate each answer spells (-1: invalid)."""
        return Choices(
            ue=parse_answers(answers.ue, self.candidates.ue), bs=parse_answers(answers.bs, self.candidates.bs)
        )

    def to_action(self, answers: Answers) -> Action:
        """The parsed decisions; an invalid answer acts as candidate 0 (``nothing null``, ``null``)."""
        choices = self.choices(answers)
        return choices_to_action(jax.tree.map(lambda c: jnp.maximum(c, 0), choices), self.ucm_vocab)

    def answer_counts(self, answers: Answers) -> dict[str, jax.Array]:
        """(E,) per TTI: ``answers``, the active agents' 2n decisions, and ``valid_answers``, those
        whose answer parsed to a candidate."""
        choices = self.choices(answers)
        valid = jnp.sum(self.active & (choices.ue >= 0), -1) + jnp.sum(self.active & (choices.bs >= 0), -1)
        return {"answers": 2 * jnp.sum(self.active, -1), "valid_answers": valid}


@dataclasses.dataclass(frozen=True, eq=False)
class LLMPTAgent(LanguageAgent):
    """LLM-PT's generating T5 behind the ``Agent`` interface (actor only: no critic).
    ``LLMPTAgent.build(env, ...)`` loads the model; the constructor only stores what it is given.

    Attributes:
      model, pretrained, sie, dtype: as ``LLMAgent``'s.
      answer_len: static maximum answer length in tokens, ``</s>`` included; an answer still
        going after it is invalid. At least the longest candidate's.
      answer_temperature: of sampled answers (evaluation with ``--greedy`` decodes greedily instead).
      constrained: decode only tokens that continue a valid answer (an ablation: every answer
        is then valid).
      dedup_chunk: distinct prompts per generation call of greedy decoding.
      lora_rank, lora_scale: with a rank, every attention projection gets a LoRA update
        (``jaxmac.models.lora``) and fine-tuning trains those alone (``trainable``): how the
        authors fine-tuned their 7B model, for the larger sizes here.
      cfg, compiler, candidates, graphdef, t5_params: the T5's configuration, the prompt
        compiler, the candidates' token ids, the T5's graph and the checkpoint's weights.
    """

    model: str = setting("tiny", "tiny, flan-t5-small|base|large or a checkpoint directory")
    pretrained: bool = setting(True, "start from the checkpoint's weights")
    sie: bool = setting(True, "structured identity in the prompts")
    answer_len: int = setting(8, "maximum answer length in tokens (longer answers are invalid)")
    answer_temperature: float = setting(1.0, "sampling temperature of generated answers")
    constrained: bool = setting(False, "decode only valid answers (constrained decoding)")
    dedup_chunk: int = setting(64, "distinct prompts per generation call (sets peak memory)")
    lora_rank: int = setting(0, "LoRA rank of the attention projections (0: fine-tune every weight)")
    lora_scale: float = setting(1.0, "LoRA scale: a projection computes base(x) + scale * x A B")
    dtype: str = setting(
        "auto", "T5 compute dtype: auto (bfloat16 on GPU/TPU, float32 on CPU), float32, bfloat16"
    )

    @classmethod
    def build(cls, env: UDTSEnv, **options: Any) -> LLMPTAgent:
        options = with_defaults(cls, options)
        for name in ("answer_len", "dedup_chunk"):
            check_count(name, options[name])
        if (
            isinstance(options["lora_rank"], bool)
            or not isinstance(options["lora_rank"], int)
            or options["lora_rank"] < 0
        ):
            raise ValueError(f"lora_rank must be an integer >= 0, got {options['lora_rank']!r}")
        check_number("answer_temperature", options["answer_temperature"], positive=True)
        check_number("lora_scale", options["lora_scale"], positive=False)
        language = LanguageModel.load(env, **{k: options[k] for k in ("model", "pretrained", "sie", "dtype")})
        longest = max(language.candidates.ue.ids.shape[1], language.candidates.bs.ids.shape[1])
        if options["answer_len"] < longest:
            raise ValueError(
                f"answer_len must be >= {longest} (the longest candidate answer), got {options['answer_len']}"
            )
        t5 = language.t5
        if options["lora_rank"]:
            t5 = add_lora(
                nnx.eval_shape(lambda: t5), options["lora_rank"], options["lora_scale"], nnx.Rngs(0)
            )
        return cls(
            env,
            **options,
            cfg=language.t5.cfg,
            compiler=language.compiler,
            candidates=language.candidates,
            graphdef=nnx.split(t5)[0],
            t5_params=language.t5_params,
        )

    def init(self, key: jax.Array) -> Params:
        t5 = t5_init(self.cfg, self.t5_params, key)
        if self.lora_rank:
            lora_key = jax.random.fold_in(key, 1)
            shape = nnx.eval_shape(lambda: T5(self.cfg, rngs=nnx.Rngs(0)))
            model = add_lora(
                nnx.merge(nnx.split(shape)[0], t5), self.lora_rank, self.lora_scale, nnx.Rngs(lora_key)
            )
            t5 = nnx.to_pure_dict(nnx.split(model)[1])
        return {"t5": t5}

    def t5_weights(self, params: Params) -> Params:
        """With LoRA, every adapted projection folded into one kernel (``merge_lora``)."""
        t5 = params["t5"]
        return merge_lora(t5, self.lora_scale) if self.lora_rank else t5

    def trainable(self, path: tuple[str, ...]) -> bool:
        """Whether fine-tuning updates the parameter at ``path``: with LoRA its matrices alone."""
        return not self.lora_rank or is_lora(path)

    def __call__(self, params: Params, obs: Observation) -> AgentOutput:
        prompts = jax.vmap(self.compiler)(obs)  # (E, M, L) per agent group
        policy = AnswerPolicy(
            params=params["t5"],
            ue_ids=prompts.ue_ids,
            ue_mask=prompts.ue_mask,
            bs_ids=prompts.bs_ids,
            bs_mask=prompts.bs_mask,
            active=obs.active,
            candidates=self.candidates,
            temperature=jnp.float32(self.answer_temperature),
            graphdef=self.graphdef,
            answer_len=self.answer_len,
            constrained=self.constrained,
            dedup_chunk=self.dedup_chunk,
            ucm_vocab=self.env.ucm_vocab,
        )
        return AgentOutput(policy=policy)
