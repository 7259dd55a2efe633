"""The ``jaxmac eval`` command and the plot script, as a user runs them."""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jaxmac.cli.main import main, parse_args
from jaxmac.cli.options import parse_ues

ROOT = Path(__file__).resolve().parents[1]


def test_eval_writes_rows_and_the_plot_draws_them(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert (
        main(
            [
                "eval",
                "--policy",
                "contention_free,oracle",
                "--ues",
                "1-3",
                "--episodes",
                "30",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "throughput_ci95" in printed and "oracle" in printed
    rows = json.loads(out.read_text())
    assert [(r["policy"], r["n_ues"]) for r in rows] == [
        (p, n) for p in ("contention_free", "oracle") for n in (1, 2, 3)
    ]
    assert {"throughput", "throughput_ci95", "collisions", "buffer_occupancy", "return"} <= set(rows[0])
    png = tmp_path / "plot.png"
    subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "plot_throughput.py"), str(out), "--out", str(png)],
        check=True,
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--policy", "csma"], "--policy must be from"),
        (["--p-arrival", "1.5"], "p_arrival"),
        (["--ues", "0-2"], "n_ues"),
        (["--max-ues", "0"], "max_ues"),
        (["--policy", "aloha", "--aloha-q", "2"], "aloha q"),
    ],
)
def test_eval_rejects_bad_input(argv, message, tmp_path):
    out = tmp_path / "rows.json"
    with pytest.raises(SystemExit, match=message):
        main(["eval", "--episodes", "2", "--out", str(out), *argv])
    assert not out.exists()


def test_eval_refuses_an_unwritable_out_before_evaluating(tmp_path, capsys):
    with pytest.raises(SystemExit, match="is a directory"):
        main(["eval", "--episodes", "2", "--out", str(tmp_path)])
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit, match="file is a file, not a directory"):
        main(["eval", "--episodes", "2", "--out", str(tmp_path / "file" / "rows.json")])
    with pytest.raises(SystemExit, match="cannot create"):
        main(["eval", "--episodes", "2", "--out", str(tmp_path / "file" / "sub" / "rows.json")])
    assert "contention_free" not in capsys.readouterr().out  # nothing was evaluated


def test_parse_ues():
    assert parse_ues("1-4,8") == [1, 2, 3, 4, 8]
    assert parse_ues("3") == [3]
    assert parse_ues("2,2,1-2") == [2, 1]  # each count once
    with pytest.raises(argparse.ArgumentTypeError, match="<= 4096"):
        parse_ues("1-2000000")  # refused before any list is made
    for bad in ("4-2", "a", "1-"):
        with pytest.raises(argparse.ArgumentTypeError, match="range LO-HI"):
            parse_ues(bad)


@pytest.mark.slow
def test_prompt_command_prints_the_prompt_and_probabilities(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXMAC_CACHE", str(tmp_path))
    assert main(["prompt", "--agent", "bs", "--ue", "2", "--n-ues", "3", "--ttis", "2"]) == 0
    out = capsys.readouterr().out
    assert "choose the downlink signal to UE 2" in out
    probs = [float(line.split()[0]) for line in out.splitlines()[-3:]]
    assert [line.split()[1] for line in out.splitlines()[-3:]] == ["null", "schedule_grant", "acknowledge"]
    assert abs(sum(probs) - 1) < 1e-3
    # one BS prompt for every UE, the UE named before each answer
    assert main(["prompt", "--agent", "bs", "--ue", "2", "--n-ues", "3", "--bs-target", "decoder"]) == 0
    out = capsys.readouterr().out
    assert "choose the downlink signal to deliver" in out
    assert [line.split()[1:] for line in out.splitlines()[-3:]] == [
        ["UE", "2", word] for word in ("null", "schedule_grant", "acknowledge")
    ]
    for argv, message in (
        (["--ue", "4", "--n-ues", "3"], "--ue must be in"),
        (["--no-sie", "--bs-target", "decoder"], "needs the SIE prompts"),
        (["--model", "/no/such/dir"], "no checkpoint directory"),
    ):
        with pytest.raises(SystemExit, match=message):
            main(["prompt", *argv])


@pytest.mark.slow
def test_a_second_run_reloads_compiled_programs_and_the_terminal_stays_clean(tmp_path):
    """The persistent compilation cache: the first run writes programs into JAXMAC_XLA_CACHE, the
    second reloads them, and reloading prints no XLA notices. The runs compile as a user's do:
    without the suite's compile settings (under them this program compiled in 0.27 s, below the
    cache's 0.5 s threshold, on a fast day)."""
    cache = tmp_path / "xla"
    env = {**os.environ, "JAXMAC_XLA_CACHE": str(cache)}
    for name in ("TF_CPP_MIN_LOG_LEVEL", "JAX_DISABLE_MOST_OPTIMIZATIONS"):
        env.pop(name, None)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace("--xla_cpu_use_fusion_emitters=false", "").strip()
    command = [sys.executable, "-m", "jaxmac.cli.main", "eval", "--policy", "aloha", "--ues", "1-2"]
    outputs = []
    for _ in range(2):
        done = subprocess.run([*command, "--episodes", "3"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outputs.append(done)
        files = sorted(p.name for p in cache.iterdir())
        assert files, "nothing was written to the cache"
    assert sorted(p.name for p in cache.iterdir()) == files  # the second run compiled nothing new
    assert not any(tag in o.stderr for o in outputs for tag in ("cpu_aot_loader", "E1", "W1"))


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    from jaxmac.compilation import compilation_cache_dir

    monkeypatch.delenv("JAXMAC_XLA_CACHE")
    monkeypatch.setenv("JAXMAC_CACHE", str(tmp_path))
    assert compilation_cache_dir() == tmp_path / "xla"
    monkeypatch.setenv("JAXMAC_XLA_CACHE", "OFF")
    assert compilation_cache_dir() is None
    monkeypatch.setenv("JAXMAC_XLA_CACHE", str(tmp_path / "mine"))
    assert compilation_cache_dir() == tmp_path / "mine"


def test_every_command_of_make_demo_parses():
    """``make demo``'s ``jaxmac`` commands, read from the Makefile, are valid command lines
    (nothing runs); its scripts exist."""
    text = re.sub(r"\$\(call [^)]*\)", "", (ROOT / "Makefile").read_text().replace("\\\n", " "))
    recipe = text.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in recipe.splitlines()[1:]]
    commands = [line.split()[1:] for line in lines if line.startswith("$(BIN)/jaxmac ")]
    assert {argv[0] for argv in commands} == {"train", "eval"}
    for argv in commands:
        assert parse_args(argv).func is not None, argv
    scripts = [line.split()[1] for line in lines if line.startswith("$(BIN)/python ")]
    assert scripts and all((ROOT / script).is_file() for script in scripts)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--ppo-head-scale", "0"], "--ppo-head-scale must be a finite number > 0, got 0.0"),
        (["--pt-frequency-power", "-1"], "--pt-frequency-power must be a finite number >= 0, got -1.0"),
    ],
)
def test_the_llm4mac_pipeline_rejects_a_bad_option_before_any_stage(tmp_path, option, message):
    """A bad PPO setting is named at once, not after the LLM-PT stages' ten minutes."""
    script = ROOT / "experiments" / "llm4mac_from_llm_pt.py"
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path / "run"), *option],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()
