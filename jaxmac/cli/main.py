"""The ``jaxmac`` command line."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import jax
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jaxmac.cli.config_file import config_words, typed_dests
from jaxmac.cli.export import add_export_parser
from jaxmac.cli.options import (
    SHAPE_OPTIONS,
    add_cluster_options,
    add_env_options,
    env_from_options,
    given_params,
    make_directory,
    parse_ues,
)
from jaxmac.cli.prompt import add_prompt_parser, cmd_prompt
from jaxmac.cli.train import TRAIN_PRESETS, add_train_parsers
from jaxmac.compilation import enable_compilation_cache
from jaxmac.distributed import initialize, is_main
from jaxmac.evaluation import EvaluationTable, evaluate
from jaxmac.protocols import PROTOCOLS, make_protocol
from jaxmac.training import METHODS, DamagedCheckpoint, Run, RunConfig, write_json_atomic

#: Default episodes per UE count of a scripted protocol (a trained run: its method's
#: ``eval_episodes``, fewer for a language model, whose distinct prompts each cost a T5 pass).
SCRIPTED_EPISODES = 1000


def _scripted(args: argparse.Namespace) -> list[str]:
    if args.policy is None:
        return [] if args.checkpoint else ["contention_free"]
    names = args.policy.split(",")
    unknown = [n for n in names if n not in PROTOCOLS]
    if unknown:
        raise SystemExit(f"error: --policy must be from {sorted(PROTOCOLS)}, got {unknown}")
    return names


def _check_writable(out: Path | None) -> None:
    """Fail before any work when ``--out`` cannot be written (a directory, an unwritable place)."""
    if out is None:
        return
    if out.is_dir():
        raise SystemExit(f"error: --out {out} is a directory; give the JSON file's name")
    make_directory(out, out.parent)


def cmd_eval(args: argparse.Namespace) -> int:
    _check_writable(args.out)
    names = _scripted(args)
    runs = []
    overrides = given_params(args)  # applied to every row, the runs' and the scripted policies'
    try:
        for directory in args.checkpoint:
            run = Run.build(RunConfig.load(directory), directory, args.model_shards)
            _check_shape_options(args, run)
            runs.append((run, run.restore_kept(args.best)))
        if runs:
            env = runs[0][0].agent.env
            params = runs[0][0].config.base_hparams().env.replace(**overrides)
        else:
            env, params = env_from_options(args)
        policies = {n: make_protocol(n, env, **({"q": args.aloha_q} if n == "aloha" else {})) for n in names}
    except (ValueError, FileNotFoundError, DamagedCheckpoint) as e:
        raise SystemExit(f"error: {e}") from None
    if any(run.agent.env != env for run, _ in runs):
        raise SystemExit(
            "error: every --checkpoint must use the same environment (max_ues, episode_len, ...)"
        )
    console = Console(stderr=True, quiet=not is_main())  # the main process prints for all
    table = EvaluationTable([])
    key = jax.random.PRNGKey(args.seed)
    ues = args.ues if args.ues is not None else list(range(1, env.max_ues + 1))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        for name, policy in policies.items():
            episodes = SCRIPTED_EPISODES if args.episodes is None else args.episodes
            task = bar.add_task(f"eval {name}", total=len(ues) * episodes)
            try:
                table += evaluate(
                    env,
                    policy,
                    params,
                    ues,
                    episodes,
                    key,
                    name=name,
                    chunk_size=args.chunk_size,
                    progress=lambda done, total, t=task: bar.update(t, completed=done),
                )
            except ValueError as e:
                raise SystemExit(f"error: {e}") from None
        for run, state in runs:
            bar.add_task(f"eval {run.directory}", total=None)
            try:
                episodes = run.config.method.eval_episodes if args.episodes is None else args.episodes
                table += run.evaluate(state, ues, episodes, key, greedy=args.greedy, env_params=overrides)
            except ValueError as e:
                raise SystemExit(f"error: {e}") from None
    if not is_main():
        return 0
    print(table.format())
    if args.out is not None:
        try:
            write_json_atomic(args.out, table.rows)
        except OSError as e:
            raise SystemExit(
                f"error: --out {args.out} not written ({e.strerror}); the table above holds the rows"
            ) from None
        console.print(f"wrote {len(table.rows)} rows to {args.out}")
    return 0


def _check_shape_options(args: argparse.Namespace, run: Run) -> None:
    """A checkpoint is evaluated in the environment shapes it was trained in: a shape option that
    differs is an error naming it (its parameter options apply, see ``given_params``)."""
    for name in SHAPE_OPTIONS:
        given, trained = getattr(args, name), getattr(run.agent.env, name)
        if given is not None and given != trained:
            raise ValueError(
                f"--{name.replace('_', '-')} {given} differs from {run.directory}'s {name}={trained}: a "
                "checkpoint is evaluated in the environment shapes it was trained in"
            )


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser and its subcommands' parsers by name."""
    # Options are typed in full: an abbreviation (``--conf`` for ``--config``) would pass the
    # config file's pre-parse and the typed-option bookkeeping (``args.given``) unseen.
    parser = argparse.ArgumentParser(prog="jaxmac", description=__doc__, allow_abbrev=False)
    whole_words = functools.partial(argparse.ArgumentParser, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=whole_words)
    ev = sub.add_parser("eval", help="evaluate policies per active-UE count (paper Fig. 3)")
    ev.add_argument(
        "--policy",
        default=None,
        help=f"comma-separated policies from {sorted(PROTOCOLS)} (default: contention_free alone)",
    )
    ev.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="a run directory of jaxmac train/sweep; its newest checkpoint is evaluated (repeatable)",
    )
    ev.add_argument(
        "--greedy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="learned policies take their most likely decisions (--no-greedy: sample them); "
        "default: each run's own setting",
    )
    ev.add_argument(
        "--best",
        action="store_true",
        help="evaluate each run's best evaluated checkpoint (DIR/best), not its newest",
    )
    ev.add_argument("--ues", type=parse_ues, default=None, help="UE counts, e.g. 1-8 (default 1..max-ues)")
    ev.add_argument(
        "--episodes",
        type=int,
        default=None,
        help=f"episodes per UE count (default {SCRIPTED_EPISODES}; a trained run: its method's, "
        + ", ".join(f"{algo} {m.eval_episodes}" for algo, m in METHODS.items())
        + ")",
    )
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--aloha-q", type=float, default=None, help="ALOHA transmit probability (default 1/n)")
    ev.add_argument("--chunk-size", type=int, default=4096, help="episodes per compiled call")
    ev.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    add_env_options(ev, defaults=False)  # given ones override a checkpoint's own parameters
    add_cluster_options(ev)
    ev.set_defaults(func=cmd_eval)
    commands = {"eval": ev, **add_train_parsers(sub)}
    pr = add_prompt_parser(sub)
    add_env_options(pr)
    pr.set_defaults(func=cmd_prompt)
    add_export_parser(sub)
    return parser, commands


def _with_config_file(argv: list[str], commands: dict[str, argparse.ArgumentParser]) -> list[str]:
    """``argv`` with the options of ``train``/``sweep --config FILE`` put before the typed ones
    (the options typed on the command line are left out of the file's: they win)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", type=Path, default=None)
    known, _ = pre.parse_known_args(argv[1:])
    if known.config is None or not argv or argv[0] not in ("train", "sweep"):
        return argv
    command = commands[argv[0]]
    try:
        words = config_words(known.config, command, typed_dests(command, argv[1:]))
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    return [argv[0], *words, *argv[1:]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line; ``args.given`` holds the dests of the options typed on it or
    given by its ``--config`` file (not defaults, nor a preset's: what a ``--resume`` is asked
    to change)."""
    parser, commands = build_parser()
    argv = _with_config_file(list(sys.argv[1:] if argv is None else argv), commands)
    args = parser.parse_args(argv)
    if getattr(args, "preset", None):  # the preset's values become defaults: explicit options win
        commands[args.command].set_defaults(**TRAIN_PRESETS[args.preset])
        args = parser.parse_args(argv)
    typed, typed_commands = build_parser()
    for command in typed_commands.values():
        command.set_defaults(func=None)  # reset the command's own default
        for action in command._actions:
            action.default = argparse.SUPPRESS
    args.given = frozenset(vars(typed.parse_args(argv))) - {"command", "func", "config"}
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _join_cluster(argv)
    args = parse_args(argv)
    enable_compilation_cache()
    return args.func(args)


def _join_cluster(argv: list[str]) -> None:
    """Join the multi-process run the command line's cluster options (or the environment)
    describe, before anything touches JAX's devices (building the parser does)."""
    if not argv or argv[0] not in ("train", "sweep", "eval"):
        return
    cluster = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_cluster_options(cluster)
    known, _ = cluster.parse_known_args(argv[1:])
    try:
        initialize(known.coordinator, known.num_processes, known.process_id, detect=known.distributed)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
