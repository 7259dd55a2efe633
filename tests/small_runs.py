"""The small MAPPO and MADDPG runs the training, command-line and multi-process tests share.

One configuration per method, written as ``jaxmac train`` options and built into the
``RunConfig`` those options give: a test that trains it in Python, one that runs the command and
one that starts processes compile the same programs, so all but the first reload them from the
session's compilation cache (``tests/conftest.py``). Host settings (updates, seeds, evaluation)
may differ; they are not part of the programs."""

from jaxmac.cli.main import parse_args
from jaxmac.cli.train import config_from_args
from jaxmac.training import RunConfig

#: Settings of every small run: 2 UE slots, 6-TTI episodes, 16 episodes, chunks of 2 updates.
COMMON = [
    *("--max-ues", "2", "--episode-len", "6", "--ues", "1-2", "--episodes", "16", "--chunk", "2"),
    *("--eval-episodes", "10"),  # last: a test may replace it
]
MAPPO = ["--algo", "mappo", "--hidden", "16", "--epochs", "1", "--minibatches", "2", *COMMON]
MADDPG = ["--algo", "maddpg", "--hidden", "16", "--batch-size", "32", "--replay-size", "1024", *COMMON]


def run_config(argv: list[str], updates: int = 4) -> RunConfig:
    """The configuration ``jaxmac train`` builds from ``argv`` and ``--updates``."""
    args = parse_args(["train", *argv, "--updates", str(updates), "--out", "unused"])
    return config_from_args(args, (0,), {})
