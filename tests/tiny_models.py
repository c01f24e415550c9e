"""Tiny random-weight models built from test text, saved as real Hugging Face folders.

They exercise the real loading, tokenising and attention code paths without any download.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _bert_config(vocab_size: int, max_positions: int, num_labels: int | None = None):
    from transformers import BertConfig

    kw = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    if num_labels:
        kw["num_labels"] = num_labels
        kw["id2label"] = {i: f"label_{i}" for i in range(num_labels)}
        kw["label2id"] = {f"label_{i}": i for i in range(num_labels)}
    return BertConfig(**kw)


def _save_model(model_cls, config, folder: Path, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    model = model_cls(config)
    model.eval()
    model.save_pretrained(folder)


def english_vocab(text: str, extra: int = 0) -> list[str]:
    words = sorted({w.lower() for w in re.findall(r"[A-Za-z]+|\d+", text)})
    chars = sorted({c.lower() for c in text if not c.isspace()})
    vocab = SPECIALS + chars + ["##" + c for c in chars if c.isalnum()] + words
    return list(dict.fromkeys(vocab))


def build_english_bert(folder: Path, text: str, *, max_positions: int = 64, num_labels: int | None = None,
                       seed: int = 0) -> Path:
    """BERT with a fast WordPiece tokenizer whose vocab covers `text`."""
    from transformers import BertForSequenceClassification, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(english_vocab(text))}
    tok = BertTokenizer(vocab=vocab, do_lower_case=True)
    tok.model_max_length = max_positions
    tok.save_pretrained(folder)
    config = _bert_config(len(tok), max_positions, num_labels)
    _save_model(BertForSequenceClassification if num_labels else BertModel, config, folder, seed)
    return folder


def japanese_vocab(text: str) -> list[str]:
    import fugashi
    import unidic_lite

    tagger = fugashi.Tagger("-d " + unidic_lite.DICDIR)
    norm = unicodedata.normalize("NFKC", text)
    words = sorted({m.surface for m in tagger(norm) if m.surface.strip()})
    chars = sorted({c for c in norm if not c.isspace()})
    return list(dict.fromkeys(SPECIALS + words[:2000] + chars + ["##" + c for c in chars]))


def build_japanese_bert(folder: Path, text: str, *, max_positions: int = 64, seed: int = 0,
                        vocab: list[str] | None = None) -> Path:
    """BERT with BertJapaneseTokenizer (MeCab + unidic-lite, WordPiece): a slow tokenizer with no offsets."""
    from transformers import BertJapaneseTokenizer, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab or japanese_vocab(text)) + "\n", encoding="utf-8")
    tok = BertJapaneseTokenizer(
        vocab_file=str(vocab_file),
        do_lower_case=False,
        word_tokenizer_type="mecab",
        subword_tokenizer_type="wordpiece",
        mecab_kwargs={"mecab_dic": "unidic_lite"},
    )
    tok.model_max_length = max_positions
    tok.save_pretrained(folder)
    config = _bert_config(len(tok), max_positions)
    _save_model(BertModel, config, folder, seed)
    return folder


def build_gpt2(folder: Path, text: str, *, max_positions: int = 64, seed: int = 0) -> Path:
    """A causal GPT-2 with a byte-level BPE trained on `text`."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([text], vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                            eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tok.model_max_length = max_positions
    tok.save_pretrained(folder)
    config = GPT2Config(vocab_size=len(tok), n_positions=max_positions, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    _save_model(GPT2LMHeadModel, config, folder, seed)
    return folder
