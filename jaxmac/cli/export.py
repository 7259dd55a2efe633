"""``jaxmac export``: a language run's trained T5 as a Hugging Face checkpoint directory, which
``jaxmac train --model DIR`` (and transformers' PyTorch T5) loads: LLM4MAC's PPO can start from
a model an LLM-PT run taught to read its prompts."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxmac.agents import LanguageAgent, NoComm
from jaxmac.models import save_t5
from jaxmac.training import DamagedCheckpoint, Run, RunConfig


def add_export_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ex = sub.add_parser(
        "export", help="write a language run's T5 as a checkpoint directory (--model DIR reads it)"
    )
    ex.add_argument("--checkpoint", type=Path, required=True, help="an llm4mac or llm-pt run directory")
    ex.add_argument("--out", type=Path, required=True, help="the directory to write (must not exist)")
    ex.add_argument("--best", action="store_true", help="the run's best evaluated checkpoint, not the newest")
    ex.add_argument("--member", type=int, default=0, help="which member of a sweep (default 0)")
    ex.set_defaults(func=cmd_export)
    return ex


def cmd_export(args: argparse.Namespace) -> int:
    try:
        if args.out.exists():  # before any work (``save_t5`` refuses it too, after the loading)
            raise ValueError(f"--out {args.out} exists: an export writes a new directory")
        run = Run.build(RunConfig.load(args.checkpoint), args.checkpoint)
        agent = run.agent.inner if isinstance(run.agent, NoComm) else run.agent
        if not isinstance(agent, LanguageAgent):
            raise ValueError(
                f"--checkpoint {args.checkpoint} is a {run.config.algo} run: only a language run "
                "(llm4mac, llm-pt) has a T5 to export"
            )
        members = len(run.config.members())
        if not 0 <= args.member < members:
            raise ValueError(f"--member must be in [0, {members}) for this run, got {args.member}")
        params = agent.t5_weights(run.member_params(run.restore_kept(args.best), args.member))
        save_t5(params, agent.cfg, agent.compiler.tokenizer, args.out)
    except (ValueError, FileNotFoundError, FileExistsError, DamagedCheckpoint) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {args.out}: train from it with --model {args.out}")
    return 0
