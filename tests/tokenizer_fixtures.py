"""Tokenizers the tests make in-process: the built-in word tokenizer, and a small SentencePiece
model trained on the prompt texts and used through transformers' T5 tokenizer class."""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm
import transformers
from sentencepiece import sentencepiece_model_pb2

from jaxmac.language import PromptTemplate, build_word_tokenizer


def template_texts(template: PromptTemplate) -> list[str]:
    return template.texts()


def word_tokenizer(template: PromptTemplate, directory: Path) -> transformers.PreTrainedTokenizerBase:
    return build_word_tokenizer(template_texts(template), directory)


def sentencepiece_tokenizer(
    texts: list[str], directory: Path, vocab_size: int = 160
) -> transformers.T5Tokenizer:
    """Train a unigram SentencePiece model (T5's ids: <pad> 0, </s> 1, <unk> 2) and wrap it the
    way transformers converts T5's spiece.model; saved and reloaded through AutoTokenizer."""
    directory.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts * 3),
        model_prefix=str(directory / "spiece"),
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    model_file = directory / "spiece.model"
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = transformers.T5Tokenizer(
        vocab=vocab, extra_ids=0, _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap
    )
    tok.save_pretrained(directory / "tokenizer")
    return transformers.AutoTokenizer.from_pretrained(directory / "tokenizer")
