"""SIE prompts, their compilation to token ids inside jit, and the tiny model's tokenizer."""

from jaxmac.language.compiler import PromptCompiler, Prompts
from jaxmac.language.prompts import (
    AGENTS,
    BS_TARGETS,
    PromptTemplate,
    active_rank,
    render_prompt,
    render_prompts,
)
from jaxmac.language.tokenizer import build_word_tokenizer, prompt_tokenizer

__all__ = [
    "AGENTS",
    "BS_TARGETS",
    "PromptCompiler",
    "PromptTemplate",
    "Prompts",
    "active_rank",
    "build_word_tokenizer",
    "prompt_tokenizer",
    "render_prompt",
    "render_prompts",
]
