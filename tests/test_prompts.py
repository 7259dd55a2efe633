"""Prompt ids assembled inside jit equal the tokenizer's ids of the rendered text."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizer_fixtures import sentencepiece_tokenizer, template_texts, word_tokenizer

from jaxmac.env import BSObservation, Observation, UDTSEnv, UEObservation
from jaxmac.language import PromptCompiler, PromptTemplate, render_prompt, render_prompts

ENVS = [
    UDTSEnv(max_ues=m, buffer_size=b, history=k, ucm_vocab=u, dcm_vocab=d)
    for m, b, k, u, d in [(1, 2, 1, 2, 3), (3, 20, 3, 2, 3), (8, 20, 1, 2, 3), (5, 4, 2, 3, 4)]
]


@functools.cache
def compiled(env_index: int, sie: bool, kind: str, tmp: str):
    template = PromptTemplate(ENVS[env_index], sie)
    from pathlib import Path

    directory = Path(tmp) / f"{env_index}-{sie}-{kind}"
    if kind == "word":
        tok = word_tokenizer(template, directory)
    else:
        tok = sentencepiece_tokenizer(template_texts(template), directory)
    compiler = PromptCompiler(template, tok)
    return template, tok, compiler, jax.jit(compiler)


@st.composite
def observations(draw, env):
    m, k = env.max_ues, env.history

    def ints(lo, hi, shape):
        size = int(np.prod(shape))
        return np.array(draw(st.lists(st.integers(lo, hi), min_size=size, max_size=size)), np.int32).reshape(
            shape
        )

    active = np.array(draw(st.lists(st.booleans(), min_size=m, max_size=m)))
    ue = UEObservation(
        buffer=ints(0, env.buffer_size, (m, k)),
        action=ints(0, 2, (m, k)),
        ucm=ints(0, env.ucm_vocab - 1, (m, k)),
        dcm=ints(0, env.dcm_vocab - 1, (m, k)),
    )
    bs = BSObservation(channel=ints(0, 3, (k,)), sender=ints(-1, m - 1, (k,)), ucm=ue.ucm, dcm=ue.dcm)
    return Observation(ue=ue, bs=bs, active=active)


@pytest.mark.parametrize("kind", ["word", "sentencepiece"])
@pytest.mark.parametrize("sie", [True, False])
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_assembled_ids_equal_tokenized_render(kind, sie, data, tmp_path_factory):
    env_index = data.draw(st.integers(0, len(ENVS) - 1))
    env = ENVS[env_index]
    template, tok, compiler, assemble = compiled(env_index, sie, kind, str(tmp_path_factory.getbasetemp()))
    obs = data.draw(observations(env))
    prompts = assemble(jax.tree.map(jnp.asarray, obs))
    for agent in ("ue", "bs"):
        ids, mask = (np.asarray(getattr(prompts, f"{agent}_{f}")) for f in ("ids", "mask"))
        assert ids.shape == (env.max_ues, compiler.max_len[agent])
        texts = render_prompts(template, obs, agent)
        for row, (text, expected) in enumerate(zip(texts, tok(texts)["input_ids"], strict=True)):
            assert ids[row][mask[row]].tolist() == expected, (agent, row, text)
            assert mask[row].sum() == len(expected) and not mask[row][len(expected) :].any()


@functools.cache
def bounded(env_index: int, sie: bool, ues: int, tmp: str):
    compiler = compiled(env_index, sie, "word", tmp)[2].bounded(ues)
    return compiler, jax.jit(compiler)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_bounded_compiler_gives_the_same_prompts_in_fewer_columns(data, tmp_path_factory):
    """UEs active only below ``ues`` (a trainer's n_max): the bounded compiler's prompts are the
    unbounded ones with padding columns dropped; the SIE BS prompts get shorter."""
    env_index, sie = 2, data.draw(st.booleans())  # 8 UEs; a few bounds, each compiled once
    env, tmp = ENVS[env_index], str(tmp_path_factory.getbasetemp())
    _, _, compiler, assemble = compiled(env_index, sie, "word", tmp)
    ues = data.draw(st.sampled_from([1, 3, env.max_ues]))
    obs = data.draw(observations(env))
    obs = jax.tree.map(jnp.asarray, obs.replace(active=obs.active & (np.arange(env.max_ues) < ues)))
    short_compiler, short_assemble = bounded(env_index, sie, ues, tmp)
    full, short = assemble(obs), short_assemble(obs)
    for agent in ("ue", "bs"):
        length = short_compiler.max_len[agent]
        assert getattr(short, f"{agent}_ids").shape == (env.max_ues, length)
        for field in ("ids", "mask"):
            kept = np.asarray(getattr(full, f"{agent}_{field}"))[:, :length]
            np.testing.assert_array_equal(getattr(short, f"{agent}_{field}"), kept)
        assert not np.asarray(getattr(full, f"{agent}_mask"))[:, length:].any()
    assert short_compiler.max_len["ue"] == compiler.max_len["ue"]
    shorter = sie and ues < env.max_ues
    assert (short_compiler.max_len["bs"] < compiler.max_len["bs"]) == shorter


@pytest.mark.parametrize("ues", [0, 9, 2.0, True])
def test_a_compiler_bound_outside_one_to_max_ues_is_an_error_naming_it(ues, tmp_path_factory):
    _, _, compiler, _ = compiled(2, True, "word", str(tmp_path_factory.getbasetemp()))
    with pytest.raises(ValueError, match=rf"ues must be an integer in \[1, max_ues=8\], got {ues!r}"):
        compiler.bounded(ues)


def test_prompts_name_the_agent_and_target():
    env = UDTSEnv(max_ues=4)
    obs, _ = env.reset(jax.random.PRNGKey(0), env.default_params.replace(n_min=3, n_max=3))
    template = PromptTemplate(env)
    assert render_prompt(template, obs, "ue", 1).startswith("<Role> You are UE 2 of 3 in a wireless network.")
    bs = render_prompt(template, obs, "bs", 2)
    assert "base station of a wireless network with 3 UEs" in bs and "signal to UE 3 to deliver" in bs
    assert bs.endswith("Candidates: null, schedule_grant, acknowledge. Answer:")
    bare = render_prompt(PromptTemplate(env, sie=False), obs, "ue", 1)
    assert "UE" not in bare and bare.endswith("Answer:")
    with pytest.raises(ValueError, match="agent must be one of"):
        render_prompt(template, obs, "gnb", 0)
    with pytest.raises(ValueError, match="ue must be a slot"):
        render_prompt(template, obs, "ue", 4)
