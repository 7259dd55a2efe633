"""The word-level tokenizer of the ``tiny`` model, built in-process from the prompt vocabulary.

``prompt_tokenizer(env)`` is the one for an environment's prompts (every variant and every
candidate answer), cached under ``$JAXMAC_CACHE/tokenizers``.

Deterministic (sorted vocabulary), T5's conventions (``<pad>`` = 0, ``</s>`` = 1 appended to
every text, ``<unk>`` = 2), and saved and loaded through ``transformers.AutoTokenizer`` like a
real checkpoint's tokenizer. Words are split on whitespace, then at every character that is
neither a letter, a digit nor ``_``: a message name such as ``schedule_request`` is one
word, so every candidate answer of a group has the same number of tokens. (Split at ``_`` too,
the SR and SG candidates were two tokens longer than the others; Eq. 9 sums token
log-probabilities, so an untrained model scored them about 2 ln(vocabulary) lower and gave
them a probability of 0.001 or less: signalling was hardly explored.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors

from jaxmac.compilation import cache_root
from jaxmac.env import UDTSEnv
from jaxmac.language.prompts import PromptTemplate

if TYPE_CHECKING:  # imported where used: a run without a language model never loads transformers
    import transformers

SPECIALS = ("<pad>", "</s>", "<unk>")

#: Within a whitespace-separated word, each character this matches is a token of its own.
SEPARATOR = r"[^\w]"


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    separate = pre_tokenizers.Split(Regex(SEPARATOR), behavior="isolated")
    return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), separate])


def build_word_tokenizer(texts: Iterable[str], directory: Path) -> transformers.PreTrainedTokenizerBase:
    """A tokenizer knowing every word of ``texts``, saved to ``directory`` and loaded back."""
    import transformers

    splitter = _pre_tokenizer()
    words = sorted({piece for text in texts for piece, _ in splitter.pre_tokenize_str(text)})
    vocab = {w: i for i, w in enumerate([*SPECIALS, *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = splitter
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    directory.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(directory)
    return transformers.AutoTokenizer.from_pretrained(directory)


def prompt_tokenizer(env: UDTSEnv) -> transformers.PreTrainedTokenizerBase:
    """The word tokenizer for ``env``'s prompts (every variant and all candidates), saved
    under ``$JAXMAC_CACHE`` (default ~/.cache/jaxmac) and loaded with ``AutoTokenizer``."""
    variants = ((True, "prompt"), (True, "decoder"), (False, "prompt"))
    texts = sorted({text for sie, target in variants for text in PromptTemplate(env, sie, target).texts()})
    digest = hashlib.sha256("\n".join([SEPARATOR, *texts]).encode()).hexdigest()[:16]
    return build_word_tokenizer(texts, cache_root() / "tokenizers" / digest)
