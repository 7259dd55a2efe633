"""The ``jaxmac`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import jax
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jaxmac.cli.options import add_env_options, env_from_options, parse_ues
from jaxmac.cli.prompt import add_prompt_parser, cmd_prompt
from jaxmac.evaluation import EvaluationTable, evaluate
from jaxmac.protocols import PROTOCOLS, make_protocol


def write_json_atomic(path: Path, payload: object) -> None:
    """Write JSON to ``path`` via a temporary file and a rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def cmd_eval(args: argparse.Namespace) -> int:
    names = args.policy.split(",")
    unknown = [n for n in names if n not in PROTOCOLS]
    if unknown:
        raise SystemExit(f"error: --policy must be from {sorted(PROTOCOLS)}, got {unknown}")
    try:
        env, params = env_from_options(args)
        policies = {n: make_protocol(n, env, **({"q": args.aloha_q} if n == "aloha" else {})) for n in names}
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    console = Console(stderr=True)
    table = EvaluationTable([])
    key = jax.random.PRNGKey(args.seed)
    ues = args.ues if args.ues is not None else list(range(1, args.max_ues + 1))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        for name, policy in policies.items():
            task = bar.add_task(f"eval {name}", total=len(ues) * args.episodes)
            try:
                table += evaluate(
                    env,
                    policy,
                    params,
                    ues,
                    args.episodes,
                    key,
                    name=name,
                    chunk_size=args.chunk_size,
                    progress=lambda done, total, t=task: bar.update(t, completed=done),
                )
            except ValueError as e:
                raise SystemExit(f"error: {e}") from None
    print(table.format())
    if args.out is not None:
        write_json_atomic(args.out, table.rows)
        console.print(f"wrote {len(table.rows)} rows to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxmac", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="evaluate policies per active-UE count (paper Fig. 3)")
    ev.add_argument(
        "--policy", default="contention_free", help=f"comma-separated policies from {sorted(PROTOCOLS)}"
    )
    ev.add_argument("--ues", type=parse_ues, default=None, help="UE counts, e.g. 1-8 (default 1..max-ues)")
    ev.add_argument("--episodes", type=int, default=1000, help="episodes per UE count")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--aloha-q", type=float, default=None, help="ALOHA transmit probability (default 1/n)")
    ev.add_argument("--chunk-size", type=int, default=4096, help="episodes per compiled call")
    ev.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    add_env_options(ev)
    ev.set_defaults(func=cmd_eval)
    pr = add_prompt_parser(sub)
    add_env_options(pr)
    pr.set_defaults(func=cmd_prompt)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
