"""Byte-level fallback tokenizer: 256 byte tokens + the special tokens.

Why it exists: DESIGN.md says a checkpoint directory is always complete and servable, even a
freshly `hillclimb init`-ed one with no trained tokenizer. A BPE model with the 256 byte symbols
and no merges is exactly GPT-2-style byte-level BPE before training, so it is lossless on any
string and loads in `transformers.PreTrainedTokenizerFast` like the trained one.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from hillclimb.tokenizer.specials import SPECIAL_TOKENS


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters (its published scheme)."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def unicode_to_byte() -> dict[str, int]:
    """The inverse of `byte_to_unicode`: a byte-level BPE piece's characters back to its bytes."""
    return {c: b for b, c in byte_to_unicode().items()}


def build_bytelevel_tokenizer() -> Tokenizer:
    """A lossless byte-level tokenizer with ids 0..255 = bytes, then the special tokens."""
    vocab = {ch: b for b, ch in sorted(byte_to_unicode().items())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok
