"""``jaxmac prompt``: show what the model is asked, and what it answers, for one agent."""

from __future__ import annotations

import argparse

import jax
import numpy as np
from flax import nnx

from jaxmac.cli.options import env_from_options
from jaxmac.language import BS_TARGETS, PromptCompiler, PromptTemplate, prompt_tokenizer, render_prompt
from jaxmac.models import CandidateSet, CandidateTrie, LanguageActorCritic, TargetedCandidates, load_t5
from jaxmac.protocols import make_protocol


def add_prompt_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    pr = sub.add_parser(
        "prompt", help="print one agent's prompt and its candidate probabilities under a model"
    )
    pr.add_argument(
        "--model", default="tiny", help="tiny, flan-t5-small|base|large, or a checkpoint directory"
    )
    pr.add_argument("--no-pretrained", action="store_true", help="random weights of that shape (Abl. PK)")
    pr.add_argument(
        "--agent", choices=("ue", "bs"), default="ue", help="a UE's own decision, or the BS's about it"
    )
    pr.add_argument("--ue", type=int, default=1, help="which UE, 1..n as the prompt names it")
    pr.add_argument("--n-ues", type=int, default=3, help="active UEs")
    pr.add_argument(
        "--ttis",
        type=int,
        default=4,
        help="TTIs played before the prompt (contention_free; random for abstract vocabularies)",
    )
    pr.add_argument("--no-sie", action="store_true", help="the Abl. SIE prompt (bare numbers)")
    pr.add_argument(
        "--bs-target",
        choices=BS_TARGETS,
        default="prompt",
        help="where the BS names its target UE: in the prompt (the paper's) or before each answer",
    )
    pr.add_argument("--raw-logits", action="store_true", help="score candidates by summed raw logits")
    pr.add_argument("--seed", type=int, default=0)
    return pr


def cmd_prompt(args: argparse.Namespace) -> int:
    try:
        env, params = env_from_options(args)
        params = params.replace(n_min=args.n_ues, n_max=args.n_ues, churn=0.0)
        env.check_params(params)
        if not 1 <= args.ue <= args.n_ues:
            raise ValueError(f"--ue must be in [1, --n-ues={args.n_ues}], got {args.ue}")
        template = PromptTemplate(env, sie=not args.no_sie, bs_target=args.bs_target)
        t5, tokenizer = load_t5(
            args.model,
            word_tokenizer=lambda: prompt_tokenizer(env),
            pretrained=not args.no_pretrained,
            seed=args.seed,
        )
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    key = jax.random.PRNGKey(args.seed)
    named = env.ucm_vocab == 2 and env.dcm_vocab == 3  # contention_free needs the named messages
    policy = make_protocol("contention_free" if named else "random", env)
    obs, state = env.reset(key, params)
    for t in range(args.ttis):
        k = jax.random.fold_in(key, t)
        obs, state, *_ = env.step(k, state, policy(k, obs, state, params), params)
    compiler = PromptCompiler(template, tokenizer)
    model = LanguageActorCritic(t5, rngs=nnx.Rngs(args.seed))
    prompts = jax.jit(compiler)(obs)
    slot = args.ue - 1  # no churn here: UE r is slot r - 1
    ids, mask = getattr(prompts, f"{args.agent}_ids")[slot], getattr(prompts, f"{args.agent}_mask")[slot]
    targeted = args.agent == "bs" and args.bs_target == "decoder"
    names = template.ue_candidates if args.agent == "ue" else template.bs_candidates
    candidates = (
        TargetedCandidates.build(template.bs_prefixes, names, tokenizer)
        if targeted
        else CandidateSet.build(names, tokenizer)
    )
    trie = CandidateTrie.build([candidates], start=t5.cfg.decoder_start_token_id)
    out = nnx.jit(lambda model, i, m: model(i, m, trie, raw_logits=args.raw_logits))(
        model, ids[None], mask[None]
    )
    target = slot if targeted else 0  # the decision about UE r: the answers behind "UE r"
    log_probs, value = out.log_probs[0, target], out.value[0, target]
    print(render_prompt(template, obs, args.agent, slot))
    print(f"\n({int(mask.sum())} tokens; model {args.model}; value {float(value):.4f})")
    prefix = f"{template.bs_prefixes[slot]} " if targeted else ""
    for name, log_p in zip(names, np.asarray(log_probs), strict=True):
        print(f"{np.exp(log_p):8.4f}  {prefix}{name}")
    return 0
