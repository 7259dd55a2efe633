"""``jaxmac train``, ``jaxmac sweep`` and ``jaxmac eval --checkpoint`` as a user runs them."""

import json
import re
import struct

import pytest
import small_runs

from jaxmac.cli.main import main

SMALL = small_runs.MAPPO


@pytest.mark.slow
def test_train_resume_then_eval_the_checkpoint_beside_scripted_protocols(tmp_path, capsys):
    run = tmp_path / "runs" / "m"
    assert main(["train", *SMALL, "--updates", "2", "--out", str(run)]) == 0
    assert "throughput_ci95" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"--resume cannot change --episodes \(16 -> 8\)"):
        main(["train", "--out", str(run), "--resume", "--episodes", "8"])
    # the whole command again (repeated values are no change), a new length and learning rate
    assert main(["train", *SMALL, "--out", str(run), "--resume", "--updates", "4", "--lr", "1e-3"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2, 3, 4]
    config = json.loads((run / "config.json").read_text())
    assert (config["algorithm"]["updates"], config["hparams"]["lr"]) == (4, 1e-3)
    [entry] = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert (entry["update"], entry["changed"]) == (2, {"lr": [0.0003, 0.001], "updates": [2, 4]})
    out = tmp_path / "eval.json"
    argv = ["eval", "--checkpoint", str(run), "--policy", "contention_free", "--ues", "1-2"]
    assert main([*argv, "--episodes", "10", "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    assert [(r["policy"], r["n_ues"]) for r in table] == [
        ("contention_free", 1),
        ("contention_free", 2),
        ("m", 1),
        ("m", 2),
    ]
    assert {(r["env"]["p_arrival"], r["env"]["w_delivery"], r["env"]["max_ues"]) for r in table} == {
        (0.5, 4.5, 2)
    }
    # the environment's parameter options apply to every row; its shapes cannot change
    busy = tmp_path / "busy.json"
    assert (
        main([*argv, "--episodes", "10", "--p-arrival", "0.9", "--reward", "marl", "--out", str(busy)]) == 0
    )
    changed = json.loads(busy.read_text())
    assert {(r["env"]["p_arrival"], r["env"]["w_delivery"]) for r in changed} == {(0.9, 6.0)}
    assert [r["return"] for r in changed] != [r["return"] for r in table]
    with pytest.raises(SystemExit, match=r"--max-ues 4 differs from .*'s max_ues=2"):
        main([*argv, "--max-ues", "4"])


MADDPG_SMALL = small_runs.MADDPG


@pytest.mark.slow
def test_maddpg_sweeps_resumes_and_evaluates_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "d"
    argv = ["sweep", *MADDPG_SMALL, "--updates", "1", "--sweep", "tau=0.01,0.1", "--out", str(run)]
    assert main(argv) == 0
    assert "d[seed=0,tau=0.1]" in capsys.readouterr().out
    assert main(["train", "--out", str(run), "--resume", "--updates", "2"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["algo"], config["grid"], config["algorithm"]["batch_size"]) == (
        "maddpg",
        {"tau": [0.01, 0.1]},
        32,
    )
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert sorted((r["update"], r["tau"]) for r in rows) == [(1, 0.01), (1, 0.1), (2, 0.01), (2, 0.1)]
    assert main(["eval", "--checkpoint", str(run), "--ues", "1-2", "--episodes", "10"]) == 0
    assert "d[seed=0,tau=0.01]" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"\['--epochs'\] are not settings of maddpg"):
        main(["train", *MADDPG_SMALL, "--epochs", "2", "--out", str(tmp_path / "x")])


@pytest.mark.slow
def test_sweep_trains_every_seed_and_value_together(tmp_path, capsys):
    run = tmp_path / "sweep"
    argv = ["sweep", *SMALL, "--updates", "2", "--seeds", "0-1", "--sweep", "lr=1e-3,3e-4", "--out", str(run)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "sweep[seed=1,lr=0.0003]" in printed
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert sorted({(r["seed"], r["lr"]) for r in rows}) == [(0, 0.0003), (0, 0.001), (1, 0.0003), (1, 0.001)]
    assert len(rows) == 8


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--ues", "1,3"], "one range"),
        (["train", "--lr", "-1"], "lr must be"),
        (["train", "--gamma", "2"], "gamma must be"),
        (["train", "--hidden", "0"], "hidden (the MLP width) must be"),
        (["train", "--ues", "2-9"], "n_max must be <= max_ues"),
        (["sweep", "--sweep", "foo=1"], "NAME from"),
        (["train", "--algo", "llm4mac", "--model", "/nonexistent/dir"], "no checkpoint directory"),
        (["train", "--resume"], "is not a jaxmac run directory"),
        (["train", "--eval-ues", "9"], "eval_ues must be UE counts in [1, max_ues=8]"),
        (["train", "--algo", "llm4mac", "--head-scale", "0"], "head_scale must be a finite number > 0"),
        (
            ["train", "--algo", "llm4mac", "--checkpoint-head-scale", "0.3"],
            "checkpoint_head_scale scales a checkpoint's LM head, and this T5 is drawn",
        ),
        (
            ["train", "--algo", "llm4mac", "--checkpoint-head-scale", "inf"],
            "checkpoint_head_scale must be a finite number, got inf",
        ),
    ],
)
def test_train_rejects_bad_input_naming_the_field(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--out", str(tmp_path / "r")])
    text = str(e.value.code) + capsys.readouterr().err
    assert message in text
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_a_preset_sets_defaults_and_explicit_options_win():
    from jaxmac.cli.main import parse_args

    args = parse_args(["train", "--out", "x", "--preset", "llm4mac-cpu", "--epochs", "1"])
    assert (args.algo, args.model, args.gamma, args.epochs) == ("llm4mac", "tiny", 0.8, 1)
    assert (args.detach_value, args.head_scale) == (True, 0.1)
    assert parse_args(["train", "--out", "x"]).algo == "mappo"
    with pytest.raises(SystemExit):
        parse_args(["train", "--out", "x", "--preset", "nope"])


@pytest.mark.parametrize(
    ("argv", "epochs", "minibatches"),
    [
        (["--algo", "llm4mac"], 2, 2),
        (["--algo", "mappo"], 4, 4),
        (["--algo", "llm4mac", "--minibatches", "4"], 2, 4),
    ],
)
def test_each_method_has_its_own_ppo_epochs_and_minibatches(argv, epochs, minibatches):
    """LLM4MAC's deduplicated step repeats prompts shared across minibatches, so it defaults to
    fewer (``LanguagePPOConfig``); a given option wins."""
    from jaxmac.cli.main import parse_args
    from jaxmac.cli.train import config_from_args

    config = config_from_args(parse_args(["train", "--out", "x", *argv]), (0,), {})
    assert (config.algorithm_config().epochs, config.algorithm_config().minibatches) == (epochs, minibatches)


def test_a_language_run_pads_its_prompts_to_its_ues_and_a_resume_may_not_raise_them(tmp_path):
    from jaxmac.cli.main import parse_args
    from jaxmac.cli.train import config_from_args

    def config(*argv, grid=None):
        return config_from_args(parse_args(["train", "--out", "x", *argv]), (0,), grid or {})

    assert config("--algo", "llm4mac", "--ues", "2-4").prompt_ues == 4
    assert config("--algo", "llm-pt", "--ues", "2-4", grid={"n_max": (3.0, 6.0)}).prompt_ues == 6
    assert config("--algo", "mappo", "--ues", "2-4").prompt_ues is None  # its networks read every slot
    saved = tmp_path / "run"
    saved.mkdir()
    (saved / "config.json").write_text(json.dumps(config("--algo", "llm4mac", "--ues", "2-3").to_json()))
    with pytest.raises(SystemExit, match=r"n_max must be <= prompt_ues=3"):
        main(["train", "--resume", "--ues", "2-5", "--out", str(saved)])


def test_zero_episodes_is_an_error_naming_the_field_not_a_default(tmp_path):
    with pytest.raises(SystemExit, match="episodes must be >= 1"):
        main(["eval", "--policy", "random", "--ues", "1", "--episodes", "0"])
    with pytest.raises(SystemExit, match="eval_episodes must be >= 1"):
        main(["train", *SMALL[:-2], "--eval-episodes", "0", "--updates", "1", "--out", str(tmp_path / "r")])


def test_train_refuses_an_out_that_cannot_be_a_run_directory_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit, match="is a file; give a run directory"):
        main(["train", "--out", str(tmp_path / "file")])
    with pytest.raises(
        SystemExit, match=r"file/r: cannot create \S+/file/r \(\S+/file is a file, not a directory\)"
    ):
        main(["train", "--out", str(tmp_path / "file" / "r")])


def test_a_config_file_sets_options_that_typed_ones_override_and_bad_keys_are_named(tmp_path):
    from jaxmac.cli.main import parse_args

    config = tmp_path / "run.yaml"
    config.write_text(
        "preset: llm-pt-cpu\nlr: 3.0e-4\ntrain-steps: 5\nues: [2, 3]\ngreedy: false\n"
        "stop_if: [loss>1e5, val_loss>100]\nout: runs/x\n"
    )
    args = parse_args(["train", "--config", str(config), "--lr", "1e-2", "--stop-if", "loss>9"])
    # typed options win over the file, the file over its preset, the preset over the defaults
    assert (args.lr, args.train_steps, args.ues, args.greedy) == (1e-2, 5, [2, 3], False)
    assert (args.stop_if, str(args.out), args.updates, args.algo) == (["loss>9"], "runs/x", 200, "llm-pt")
    assert {"lr", "train_steps", "ues", "greedy", "stop_if"} <= args.given  # asked for, on a resume
    config.write_text("ues: [2, 5]\neval_ues: [2, 8]\n")  # a training range; evaluation counts
    args = parse_args(["train", "--config", str(config), "--out", "x"])
    assert (args.ues, args.eval_ues) == ([2, 3, 4, 5], [2, 8])
    with pytest.raises(SystemExit):  # an abbreviation would bypass the file: options are whole words
        parse_args(["train", "--conf", str(config), "--out", "x"])
    for text, message in [
        ("lrr: 1", "key 'lrr'; allowed: algo, "),
        ("resume: true", "key 'resume'"),
        ("algo: foo", "key 'algo': must be one of ['llm-pt', 'llm4mac', 'maddpg', 'mappo'], got 'foo'"),
        ("episodes: 1.5", "key 'episodes': invalid literal"),
        ("greedy: 3", "key 'greedy': must be true or false, got 3"),
        ("[1, 2]", "expected a mapping of option names to values"),
        ("a: [1, 2", "not YAML"),
    ]:
        config.write_text(text + "\n")
        with pytest.raises(SystemExit, match=rf"--config {config}: .*{re.escape(message)}"):
            parse_args(["sweep", "--config", str(config), "--out", "x"])


def _event_scalars(directory):
    """(tag, step, value) of every scalar in the TensorBoard event files under ``directory``
    (TFRecord framing: length u64, its crc u32, the Event proto, its crc u32)."""
    from tensorboardX.proto.event_pb2 import Event

    out = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 16 + length
            out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


@pytest.mark.slow
def test_a_sweep_from_a_config_file_writes_tensorboard_events_of_its_metric_rows(tmp_path, capsys):
    pytest.importorskip("tensorboardX")
    config, run = tmp_path / "sweep.yaml", tmp_path / "s"
    # the sweep of test_sweep_trains_every_seed_and_value_together, from a file (its programs)
    argv = [*SMALL, "--updates", "2", "--seeds", "0-1", "--sweep", "lr=1e-3,3e-4"]
    options = dict(zip(argv[::2], argv[1::2], strict=True))
    config.write_text("".join(f"{k.removeprefix('--')}: {v}\n" for k, v in options.items()))
    assert main(["sweep", "--config", str(config), "--tensorboard", "--out", str(run)]) == 0
    saved = json.loads((run / "config.json").read_text())  # the merged configuration
    assert (saved["seeds"], saved["algorithm"]["updates"], saved["agent"]["hidden"]) == ([0, 1], 2, 16)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scalars = _event_scalars(run / "tensorboard")
    for row in rows:
        tag = f"member_{row['member']}/loss"
        assert (tag, row["update"], pytest.approx(row["loss"], rel=1e-6)) in scalars
    evaluated = {tag for tag, step, _ in scalars if tag.startswith("eval") and step == 2}
    members = [f"seed_{s}_lr_{lr}" for s in (0, 1) for lr in (0.001, 0.0003)]
    assert {f"eval/{m}/throughput_n{n}" for m in members for n in (1, 2)} <= evaluated
