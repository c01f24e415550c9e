"""Map every model token back to a character span of the original text.

Highlighting needs original offsets, but slow tokenizers (MeCab-based Japanese BERT, SentencePiece slow
ones) only return token strings that were NFKC-normalised, lower-cased or accent-stripped on the way.
We rebuild the same normalisation on a copy of the text, remember where each normalised character came
from, and walk the tokens forward through it.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

# Characters tokenizers drop or treat as separators: never part of a token's text.
_SKIP_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})
# Markers tokenizers glue onto pieces: WordPiece continuation, SentencePiece space.
_WORDPIECE_PREFIX = "##"
_SPIECE_SPACE = "\u2581"
# How far (in non-space normalised chars) a token may sit past the cursor before we call it lost.
_SLACK = 16
_SLACK_PER_UNK = 160
_MAX_SLACK = 4096
# Slow tokenizers are fed blocks of about this size, cut at newlines, so MeCab and WordPiece stay fast.
_BLOCK_CHARS = 10_000
# Ever finer ways to cut an UNK gap into units (an UNK is usually one word, one run or one symbol).
_GAP_UNITS = (re.compile(r"\S+"), re.compile(r"[^\W_]+|\S"), re.compile(r"\S"))


@dataclass(frozen=True)
class TokenizedText:
    """Tokens of a text without special tokens ([CLS]/[SEP]/BOS are added by chunking)."""

    ids: list[int]
    tokens: list[str]
    spans: list[tuple[int, int]]
    unk: list[bool]


# ---------------------------------------------------------------- normalised copy of the text

@lru_cache(maxsize=8192)
def _fold(s: str, nfkc: bool, lowercase: bool, strip_accents: bool) -> str:
    """The same folding tokenizers apply, with everything a token can never contain removed."""
    if nfkc:
        s = unicodedata.normalize("NFKC", s)
    if lowercase:
        s = s.lower()
    if strip_accents:
        s = "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")
    return "".join(c for c in s if not c.isspace() and unicodedata.category(c) not in _SKIP_CATEGORIES)


@lru_cache(maxsize=8192)
def _attaches_to_previous(ch: str) -> bool:
    """True for marks that NFKC composes with the previous char (combining accents, half-width ﾞ ﾟ)."""
    if unicodedata.combining(ch):
        return True
    n = unicodedata.normalize("NFKC", ch)
    return bool(n) and unicodedata.combining(n[0]) != 0


@dataclass(frozen=True)
class _Folded:
    text: str  # folded, whitespace-free copy
    starts: list[int]  # original start of the cluster each folded char came from
    ends: list[int]  # original end of that cluster


def _fold_text(text: str, nfkc: bool, lowercase: bool, strip_accents: bool) -> _Folded:
    """Fold cluster by cluster (a base char plus the marks NFKC composes onto it) and keep the map."""
    distinct = set(text)
    folded_char = {c: _fold(c, nfkc, lowercase, strip_accents) for c in distinct}
    attaching = {c for c in distinct if _attaches_to_previous(c)}
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        j = i + 1
        if attaching:
            while j < n and text[j] in attaching:
                j += 1
        folded = folded_char[c] if j == i + 1 else _fold(text[i:j], nfkc, lowercase, strip_accents)
        if folded:
            pieces.append(folded)
            if len(folded) == 1:
                starts.append(i)
                ends.append(j)
            else:
                starts.extend([i] * len(folded))
                ends.extend([j] * len(folded))
        i = j
    return _Folded("".join(pieces), starts, ends)


# ---------------------------------------------------------------- tokens

def _token_text(token: str, nfkc: bool, lowercase: bool, strip_accents: bool) -> str:
    if token.startswith(_WORDPIECE_PREFIX) and len(token) > len(_WORDPIECE_PREFIX):
        token = token[len(_WORDPIECE_PREFIX):]
    token = token.replace(_SPIECE_SPACE, "")
    return _fold(token, nfkc, lowercase, strip_accents)


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split_gap(text: str, start: int, end: int, count: int) -> list[tuple[int, int]]:
    """Share a gap between `count` UNK tokens: whitespace words, else letter/digit runs and single
    symbols, else single characters, whichever first gives every UNK something; extras are grouped."""
    start, end = _trimmed(text, start, end)
    if count == 1:
        return [(start, end)]
    units: list[tuple[int, int]] = []
    for pattern in _GAP_UNITS:
        units = [m.span() for m in pattern.finditer(text, start, end)]
        if len(units) >= count:
            break
    if not units:
        return [(start, start)] * count
    if len(units) <= count:
        # one unit per UNK; the extra UNKs get nothing rather than a second copy of a word
        spans = list(units)
        last = units[-1][1]
        spans.extend([(last, last)] * (count - len(units)))
        return spans
    spans = []
    for g in range(count):
        a = g * len(units) // count
        b = (g + 1) * len(units) // count
        spans.append((units[a][0], units[b - 1][1]))
    return spans


def align_tokens(
    text: str,
    tokens: Sequence[str],
    *,
    unk_token: str | None = "[UNK]",
    lowercase: bool = False,
    strip_accents: bool = False,
    nfkc: bool = True,
) -> list[tuple[int, int]]:
    """Character span in `text` for each token string of a tokenizer that gives no offsets.

    Spans start in non-decreasing order and stay inside the text. A token that cannot be found near
    the cursor (and every UNK) shares the gap between its matched neighbours, so no token ever makes
    the cursor jump far ahead.
    """
    folded = _fold_text(text, nfkc, lowercase, strip_accents)
    ftext, fstarts, fends = folded.text, folded.starts, folded.ends
    spans: list[tuple[int, int] | None] = [None] * len(tokens)
    cursor = 0  # in folded chars
    prev_end = 0  # original offset where the last matched token ended
    pending: list[int] = []  # indexes of UNK / lost tokens waiting for the next match

    def flush(gap_end: int) -> None:
        if pending:
            for idx, span in zip(pending, _split_gap(text, prev_end, max(gap_end, prev_end), len(pending))):
                spans[idx] = span
            pending.clear()

    is_unk = [unk_token is not None and t == unk_token for t in tokens]
    folded_token = {t: _token_text(t, nfkc, lowercase, strip_accents) for t in set(tokens)}
    needles = [None if u else folded_token[t] for t, u in zip(tokens, is_unk)]
    for idx, needle in enumerate(needles):
        if needle is None:
            pending.append(idx)
            continue
        if not needle:
            spans[idx] = (prev_end, prev_end)  # a bare "▁": it stands for the space before the next word
            continue
        if pending:
            # every pending UNK stands for at least one character (a lost token may stand for none)
            lo = cursor + sum(1 for k in pending if is_unk[k])
            hi = lo + len(needle) + min(_SLACK + _SLACK_PER_UNK * len(pending), _MAX_SLACK)
            following = needles[idx + 1] if idx + 1 < len(needles) else None
            pos = _find_confirmed(ftext, needle, lo, hi, following)
        else:
            pos = ftext.find(needle, cursor, cursor + len(needle) + _SLACK)
        if pos < 0:
            pending.append(idx)
            continue
        start, end = fstarts[pos], fends[pos + len(needle) - 1]
        flush(start)
        spans[idx] = (start, end)
        prev_end = end
        cursor = pos + len(needle)
    flush(len(text))
    return _monotonic([s if s is not None else (prev_end, prev_end) for s in spans], len(text))


def _find_confirmed(ftext: str, needle: str, lo: int, hi: int, following: str | None) -> int:
    """After UNKs the nearest hit may lie inside the unknown word; prefer a hit the next token continues."""
    first = pos = ftext.find(needle, lo, hi)
    if not following:
        return first
    while pos >= 0:
        if ftext.startswith(following, pos + len(needle)):
            return pos
        pos = ftext.find(needle, pos + 1, hi)
    return first


def _monotonic(spans: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Clamp to the text and make starts non-decreasing (cheap insurance for downstream bisects)."""
    out = []
    last = 0
    for s, e in spans:
        s = min(max(s, last, 0), length)
        e = min(max(e, s), length)
        out.append((s, e))
        last = s
    return out


# ---------------------------------------------------------------- tokenizers

def _blocks(text: str, size: int = _BLOCK_CHARS) -> list[tuple[int, int]]:
    """Cut at newlines (else at a space or 。) into blocks of about `size` chars so nothing spans a cut badly."""
    blocks = []
    start, n = 0, len(text)
    while start < n:
        end = min(start + size, n)
        if end < n:
            cut = text.rfind("\n", start + size // 2, end)
            if cut < 0:
                cut = max(text.rfind(" ", start + size // 2, end), text.rfind("。", start + size // 2, end))
            end = cut + 1 if cut >= 0 else end
        blocks.append((start, end))
        start = end
    return blocks


def _fast_spans(text: str, offsets: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    # offsets of BERT-like tokenizers are exact; SentencePiece/byte-level ones may include the space before a word
    spans = []
    for s, e in offsets:
        if (s < e) and (text[s].isspace() or text[e - 1].isspace()):
            s2, e2 = _trimmed(text, s, e)
            s, e = (s2, e2) if s2 < e2 else (e, e)
        spans.append((int(s), int(e)))
    return _monotonic(spans, len(text))


def _tokenize_fast(tokenizer, text: str) -> TokenizedText:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids = list(enc["input_ids"])
    tokens = tokenizer.convert_ids_to_tokens(ids)
    unk_id = tokenizer.unk_token_id
    return TokenizedText(ids=ids, tokens=list(tokens), spans=_fast_spans(text, enc["offset_mapping"]),
                         unk=[unk_id is not None and i == unk_id for i in ids])


def _tokenize_slow(tokenizer, text: str) -> TokenizedText:
    unk_token = tokenizer.unk_token
    tokens: list[str] = []
    spans: list[tuple[int, int]] = []
    for start, end in _blocks(text):
        block = text[start:end]
        if not block.strip():
            continue
        block_tokens = tokenizer.tokenize(block)
        # fold both sides fully: folding more than the tokenizer did never breaks a match
        block_spans = align_tokens(block, block_tokens, unk_token=unk_token, lowercase=True,
                                   strip_accents=True, nfkc=True)
        tokens.extend(block_tokens)
        spans.extend((s + start, e + start) for s, e in block_spans)
    ids = list(tokenizer.convert_tokens_to_ids(tokens))
    unk_id = tokenizer.unk_token_id
    unk = [t == unk_token or (unk_id is not None and i == unk_id) for t, i in zip(tokens, ids)]
    return TokenizedText(ids=ids, tokens=tokens, spans=_monotonic(spans, len(text)), unk=unk)


# Slow tokenizers hold one MeCab tagger, which is not safe to share between threads: every caller that may
# run a slow tokenizer goes through this lock (fast tokenizers do not need it).
SLOW_TOKENIZER_LOCK = threading.Lock()


def tokenize_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (a batch call for fast tokenizers)."""
    if not texts:
        return []
    if getattr(tokenizer, "is_fast", False):
        return list(tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"])
    with SLOW_TOKENIZER_LOCK:
        return [tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"] for t in texts]


def tokenize_document(tokenizer: Any, text: str) -> TokenizedText:
    """`tokenize_with_spans` under the slow-tokenizer lock when the tokenizer needs it."""
    if getattr(tokenizer, "is_fast", False):
        return tokenize_with_spans(tokenizer, text)
    with SLOW_TOKENIZER_LOCK:
        return tokenize_with_spans(tokenizer, text)


def tokenize_with_spans(tokenizer, text: str) -> TokenizedText:
    """Tokenize the whole text once, with original character spans for every token."""
    if getattr(tokenizer, "is_fast", False):
        return _tokenize_fast(tokenizer, text)
    return _tokenize_slow(tokenizer, text)

