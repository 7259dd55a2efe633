"""``--config FILE``: a YAML (or JSON) mapping of ``jaxmac train``/``sweep`` options.

The file's keys are the command's option names (``lr``, ``train-steps`` or ``train_steps``,
``ues``, ``preset``, ...); each value is turned into the command-line words it stands for
(``ues: 2-5`` or ``ues: [2, 5]`` is ``--ues 2-5``, the training range; any other list is
its items, ``eval_ues: [2, 8]`` is ``--eval-ues 2,8``; ``greedy: false`` is ``--no-greedy``; a list
for a repeatable option repeats it), so a file's values pass the same type and range checks as
typed ones. Options typed on the command line override the file's; the file's override a
``preset``'s. The run's ``config.json`` records the merged result, as for any run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from jaxmac.cli.options import CLUSTER_OPTIONS

#: Options that act on a run rather than configure it, and a process's place in a
#: multi-process run (read before the file is): not accepted from a file.
NOT_FROM_FILE = ("config", "resume", "previous_checkpoint", "help", *CLUSTER_OPTIONS)


def _words(option: str, action: argparse.Action, value: Any) -> list[str]:
    """The command-line words that give ``value`` to ``action`` (a store_true flag, an on/off
    flag, a repeatable option, or one value)."""
    if isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        if isinstance(action, argparse.BooleanOptionalAction):
            return [option if value else "--no-" + option.removeprefix("--")]
        if action.const is False:  # a store_false flag
            return [] if value else [option]
        return [option] if value else []
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        return [word for v in values for word in (option, _text(v))]
    if isinstance(value, list):  # the training UE range LO-HI ([2, 5]), or a list (eval_ues: counts)
        if action.dest == "ues" and len(value) == 2 and all(isinstance(v, int) for v in value):
            return [option, f"{value[0]}-{value[1]}"]
        return [option, ",".join(_text(v) for v in value)]
    return [option, _text(value)]


def _text(value: Any) -> str:
    if isinstance(value, dict | list) or value is None:
        raise ValueError(f"expected a number or a word, got {value!r}")
    return str(value).lower() if isinstance(value, bool) else str(value)


def typed_dests(parser: argparse.ArgumentParser, words: list[str]) -> set[str]:
    """The dests of ``parser``'s options that appear in the command-line ``words``."""
    return {
        a.dest
        for a in parser._actions
        if any(w == o or w.startswith(o + "=") for o in a.option_strings for w in words)
    }


def config_words(path: Path, parser: argparse.ArgumentParser, given: set[str]) -> list[str]:
    """The command-line words of the options in ``path`` that ``given`` (the dests typed on the
    command line) does not hold. An error naming the file and the key (and the allowed keys) for
    a key the command does not have; one naming the file for a file that cannot be read or is
    not a mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"--config {path}: cannot be read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ValueError(f"--config {path}: not YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of option names to values, got {data!r}")
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in NOT_FROM_FILE}
    words: list[str] = []
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in actions:
            raise ValueError(f"--config {path}: unknown key {key!r}; allowed: {', '.join(sorted(actions))}")
        if dest in given:
            continue
        action = actions[dest]
        option = next(o for o in action.option_strings if o.startswith("--"))
        try:
            given_words = _words(option, action, value)
            for word in given_words[1::2] if action.nargs != 0 else []:
                _check(action, word)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            raise ValueError(f"--config {path}: key {key!r}: {e}") from None
        words += given_words
    return words


def _check(action: argparse.Action, word: str) -> None:
    """Raise if the option of ``action`` would refuse ``word`` (its type or its choices)."""
    value = action.type(word) if callable(action.type) else word
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"must be one of {list(action.choices)}, got {word!r}")
