"""LLM4MAC's learner (docs/SPEC.md §3): the Flan-T5 actor-critic on SIE prompts.

Each TTI every UE's prompt and the BS's prompt about every UE slot are assembled as token
ids inside jit (``PromptCompiler``), scored by the T5 (``jaxmac.models.act``), and the 2M
per-decision values are fused into the team value (Eq. 11). Prompts of all episodes of a
batch, UE and BS prompts alike, go through one model call, so the deduplication sees every
episode and a compiled program holds the model once per call site: rollouts,
evaluation and the PPO update (forward and backward) compute only the distinct prompts,
``dedup_chunk`` at a time, and the prompts of padded slots cost one row in all.
``pretrained=False`` is Abl. PK, ``sie=False`` Abl. SIE.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmac.agents.base import Params, with_defaults
from jaxmac.agents.policy import AgentOutput, CandidatePolicy, fuse
from jaxmac.env import Observation, UDTSEnv
from jaxmac.language import PromptCompiler, PromptTemplate, active_rank, prompt_tokenizer
from jaxmac.models.actor import (
    Candidates,
    CandidateTrie,
    LanguageActorCritic,
    TargetedCandidates,
    ValueHead,
    act_distinct,
)
from jaxmac.models.config import T5Config, compute_dtype
from jaxmac.models.loading import load_t5
from jaxmac.models.t5 import T5, draw_params
from jaxmac.settings import setting


def check_count(name: str, value: Any) -> None:
    """An agent option that counts something: an integer >= 1, or an error naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_number(name: str, value: Any, positive: bool) -> None:
    """An agent option that is a real number: finite (and > 0 if ``positive``), or an error
    naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclasses.dataclass(frozen=True)
class LanguageModel:
    """What both language learners (LLM4MAC, LLM-PT) build from their options: the T5 (its
    shapes: abstract unless it holds a checkpoint's weights), the prompt compiler and the
    candidate answers' token ids, all with the model's tokenizer, and the checkpoint's T5
    weights (None when ``init`` draws them)."""

    t5: T5
    compiler: PromptCompiler
    candidates: Candidates
    t5_params: Params | None

    @classmethod
    def load(
        cls, env: UDTSEnv, model: str, pretrained: bool, sie: bool, dtype: str, bs_target: str = "prompt"
    ) -> LanguageModel:
        """``dtype``: a name of ``jaxmac.models.compute_dtype`` (``auto``, ``float32``, ...);
        ``bs_target``: one of ``jaxmac.language.BS_TARGETS``. The template is made first, so
        that a bad ``sie``/``bs_target`` is named before any weights load."""
        template = PromptTemplate(env, sie, bs_target)
        t5, tokenizer = load_t5(
            model,
            word_tokenizer=lambda: prompt_tokenizer(env),
            pretrained=pretrained,
            dtype=compute_dtype(dtype),
            draw=False,  # the agents' init draws a model's parameters
        )
        from_checkpoint = pretrained and model != "tiny"
        return cls(
            t5=t5,
            compiler=PromptCompiler(template, tokenizer),
            candidates=Candidates.build(
                template.ue_candidates, template.bs_candidates, tokenizer, template.bs_prefixes
            ),
            t5_params=nnx.to_pure_dict(nnx.split(t5)[1]) if from_checkpoint else None,
        )


def t5_init(cfg: T5Config, checkpoint: Params | None, key: jax.Array) -> Params:
    """The T5's initial parameters (float32, whatever its compute dtype): the checkpoint's, or
    drawn from ``key``."""
    if checkpoint is not None:
        return checkpoint
    return draw_params(cfg, key)


@dataclasses.dataclass(frozen=True, eq=False)
class LanguageAgent:
    """What both language agents hold besides their options (declared by each): the environment,
    and what their ``build`` makes of a ``LanguageModel``: the T5's configuration, the prompt
    compiler, the candidates' token ids, the model's graph (its parameters live in ``Params``)
    and the checkpoint's T5 weights (None when ``init`` draws them)."""

    env: UDTSEnv
    cfg: T5Config = dataclasses.field(kw_only=True, repr=False)
    compiler: PromptCompiler = dataclasses.field(kw_only=True, repr=False)
    candidates: Candidates = dataclasses.field(kw_only=True, repr=False)
    graphdef: nnx.GraphDef = dataclasses.field(kw_only=True, repr=False)
    t5_params: Params | None = dataclasses.field(kw_only=True, repr=False)

    def t5_weights(self, params: Params) -> Params:
        """The T5's parameters in ``params`` (an ``init``'s or a trained state's), as a plain
        T5 holds them: what ``jaxmac.models.save_t5`` writes."""
        return params["t5"]

    def bounded(self, n_max: int) -> LanguageAgent:
        """BS prompts padded to ``n_max`` UEs' sentences (``PromptCompiler.bounded``): a 2-4 UE
        run's are 102 tokens instead of the 138 that 8 UEs need (tiny tokenizer)."""
        return dataclasses.replace(self, compiler=self.compiler.bounded(n_max))


@dataclasses.dataclass(frozen=True, eq=False)
class LLMAgent(LanguageAgent):
    """The language actor-critic behind the ``Agent`` interface. ``LLMAgent.build(env, ...)``
    loads the model and makes the rest; the constructor only stores what it is given.

    Attributes:
      model: ``tiny``, a Flan-T5 size or a checkpoint directory (``jaxmac.models.load_t5``).
      pretrained: start from the checkpoint's weights; False draws the T5 from ``init``'s key.
        ``tiny`` has no checkpoint and is always drawn.
      sie: structured identity embedding in the prompts (False: Abl. SIE).
      raw_logits: score candidates by summed raw logits (the authors' code) instead of Eq. 9.
      value_hidden: the value head's width.
      head_scale: a drawn LM head's scale (``init``).
      checkpoint_head_scale: what a checkpoint's LM head is multiplied by at ``init`` (1: kept
        as it is; below 1, every logit shrinks by that factor, so a supervised model's sharp
        decisions start spread out enough for PPO to explore).
      detach_value: the value head reads stop-gradient T5 states (``LanguageActorCritic``).
      dedup_chunk: distinct prompts per step of the deduplicated loop (forward and backward):
        larger runs bigger matrix products, smaller bounds memory (peak memory follows it).
      dtype: compute dtype of the T5 (``jaxmac.models.compute_dtype``: ``auto`` is bfloat16 on
        GPU and TPU, float32 on CPU; parameters stay float32).
      cfg, compiler, candidates, graphdef: the T5's configuration, the prompt compiler, the
        candidates' token ids and the actor-critic's graph (its parameters live in ``Params``).
      t5_params: the checkpoint's T5 weights (the same for every seed), or None when ``init``
        draws them.
      trie: both groups' candidates as prefix trees (UE group 0, BS group 1), which one model
        call scores together.
    """

    model: str = setting("tiny", "tiny, flan-t5-small|base|large or a checkpoint directory")
    pretrained: bool = setting(True, "start from the checkpoint's weights (without: Abl. PK)")
    sie: bool = setting(True, "structured identity in the prompts (without: Abl. SIE)")
    bs_target: str = setting(
        "prompt",
        "where the BS names its target UE: prompt (the paper's, one BS prompt per UE) or decoder "
        "(one BS prompt per TTI, the UE named before each answer)",
    )
    raw_logits: bool = setting(False, "score candidates by summed raw logits (the authors' code)")
    value_hidden: int = setting(1024, "value head width")
    head_scale: float = setting(
        1.0, "a drawn T5's LM head is N(0, head_scale^2 / d_model) (small: a near-uniform start)"
    )
    checkpoint_head_scale: float = setting(
        1.0,
        "a checkpoint's LM head is multiplied by it at the start (below 1: its sharp decisions "
        "spread out, so PPO explores)",
    )
    detach_value: bool = setting(
        False, "the value head reads stop-gradient T5 states: the value loss trains the head alone"
    )
    dedup_chunk: int = setting(32, "distinct prompts per model call (sets peak memory)")
    dtype: str = setting(
        "auto", "T5 compute dtype: auto (bfloat16 on GPU/TPU, float32 on CPU), float32, bfloat16"
    )
    trie: CandidateTrie = dataclasses.field(kw_only=True, repr=False)

    @classmethod
    def build(cls, env: UDTSEnv, **options: Any) -> LLMAgent:
        """Check the options (the fields above, defaults as declared), load (or shape) the T5 and
        its tokenizer, compile the prompt tables."""
        options = with_defaults(cls, options)
        for name in ("value_hidden", "dedup_chunk"):
            check_count(name, options[name])
        for name in ("head_scale", "checkpoint_head_scale"):
            check_number(name, options[name], positive=True)
        language = LanguageModel.load(
            env,
            options["model"],
            options["pretrained"],
            options["sie"],
            options["dtype"],
            options["bs_target"],
        )
        t5 = language.t5
        if options["checkpoint_head_scale"] != 1.0:
            if language.t5_params is None:
                raise ValueError(
                    "checkpoint_head_scale scales a checkpoint's LM head, and this T5 is drawn "
                    f"(model={options['model']!r}, pretrained={options['pretrained']}): use head_scale"
                )
            if t5.cfg.tie_word_embeddings:
                raise ValueError(
                    f"checkpoint_head_scale needs an LM head of its own; {options['model']!r} ties "
                    "it to the input embedding, which the scale would change too"
                )
        actor = nnx.eval_shape(
            lambda: LanguageActorCritic(
                t5,
                value_hidden=options["value_hidden"],
                detach_value=options["detach_value"],
                rngs=nnx.Rngs(0),
            )
        )
        return cls(
            env,
            **options,
            cfg=t5.cfg,
            compiler=language.compiler,
            candidates=language.candidates,
            graphdef=nnx.split(actor)[0],
            t5_params=language.t5_params,
            trie=CandidateTrie.build(
                [language.candidates.ue, language.candidates.bs], start=t5.cfg.decoder_start_token_id
            ),
        )

    def init(self, key: jax.Array) -> Params:
        """The T5's parameters (``t5_init``) and a drawn value head. A drawn T5's untied LM head
        is scaled by head_scale * d_model**-0.5, to N(0, head_scale^2/d_model): transformers' N(0,
        1) draw starts the logits at a standard deviation of sqrt(d_model), Eq. 9's candidate
        scores then differ by tens and the untrained policy is one-hot (the tiny model's BS
        decisions had 0.001-0.013 nats of entropy, and PPO never saw another DCM). A head_scale
        of 0.1 starts the policy near uniform, as PPO implementations draw their policy layer
        small, and makes the first PPO update gentle (README, "LLM4MAC on this CPU"). LLM-PT
        keeps transformers' draw, under which its supervised BS accuracy left its plateau sooner
        (README, "LLM-PT on this CPU"). A checkpoint's LM head is multiplied by
        checkpoint_head_scale: 0.3 spread an LLM-PT model's decisions from 0.03 to 0.3 nats of
        entropy, and PPO from it then beat the Baseline it had imitated at 1-3 UEs (README,
        "LLM4MAC on this CPU")."""
        t5_key, head_key = jax.random.split(key)
        head = nnx.to_pure_dict(
            nnx.split(ValueHead(self.cfg.d_model, self.value_hidden, nnx.Rngs(head_key)))[1]
        )
        t5 = t5_init(self.cfg, self.t5_params, t5_key)
        drawn = self.t5_params is None
        scale = self.head_scale * self.cfg.d_model**-0.5 if drawn else self.checkpoint_head_scale
        if "lm_head" in t5 and scale != 1.0:  # a checkpoint's head kept as it is is not copied
            t5 = {**t5, "lm_head": {"kernel": t5["lm_head"]["kernel"] * scale}}
        return {"t5": t5, "value_head": head}

    def __call__(self, params: Params, obs: Observation) -> AgentOutput:
        prompts = jax.vmap(self.compiler)(obs)  # (E, M, L) per agent group
        e, m = obs.active.shape
        length = max(prompts.ue_ids.shape[-1], prompts.bs_ids.shape[-1])

        def rows(x: jax.Array) -> jax.Array:  # (E, M, L_group) -> (E*M, L), padded at the end
            return jnp.pad(x, ((0, 0), (0, 0), (0, length - x.shape[-1]))).reshape(e * m, length)

        # both groups' prompts in one model call: UE rows first (trie group 0), then BS rows
        ids = jnp.concatenate([rows(prompts.ue_ids), rows(prompts.bs_ids)])
        mask = jnp.concatenate([rows(prompts.ue_mask), rows(prompts.bs_mask)])
        group = jnp.repeat(jnp.arange(2, dtype=jnp.int32), e * m)
        valid = jnp.tile(obs.active.reshape(-1), 2)
        out = act_distinct(
            self.graphdef,
            params,
            ids,
            mask,
            self.trie,
            self.dedup_chunk,
            group=group,
            valid=valid,
            raw_logits=self.raw_logits,
        )
        n_ue, n_bs = len(self.candidates.ue.ids), self.candidates.bs.ids.shape[-2]
        ue_log_probs, ue_values = out.log_probs[: e * m, 0, :n_ue], out.value[: e * m, 0]
        # which target of a BS prompt each row's decision is: its UE's rank among the active
        targeted = isinstance(self.candidates.bs, TargetedCandidates)
        rank = jnp.maximum(active_rank(obs.active) - 1, 0).reshape(-1) if targeted else jnp.zeros(e * m, int)
        bs_log_probs = jnp.take_along_axis(out.log_probs[e * m :], rank[:, None, None], axis=1)[:, 0, :n_bs]
        bs_values = jnp.take_along_axis(out.value[e * m :], rank[:, None], axis=1)[:, 0]
        value = fuse(
            jnp.concatenate([ue_values.reshape(e, m), bs_values.reshape(e, m)], -1), obs.active
        )  # Eq. 11
        policy = CandidatePolicy(
            ue_log_probs.reshape(e, m, n_ue), bs_log_probs.reshape(e, m, n_bs), obs.active, self.env.ucm_vocab
        )
        return AgentOutput(policy=policy, value=value)
