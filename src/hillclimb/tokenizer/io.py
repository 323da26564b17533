"""Load and save the shared tokenizer (`hillclimb.load_tokenizer` contract).

On disk a tokenizer is the Hugging Face pair `tokenizer.json` + `tokenizer_config.json` (with the
chat template and special-token roles), so `transformers.PreTrainedTokenizerFast`, vLLM and
llama.cpp's converter read our checkpoints directly. In Python it is a thin `Tokenizer` wrapper
over `tokenizers.Tokenizer` with the small interface every stage needs.
"""

from __future__ import annotations

import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer

from hillclimb.errors import HillclimbError
from hillclimb.io import write_json_atomic, write_text_atomic
from hillclimb.tokenizer.specials import (
    CHAT_TEMPLATE,
    ENDOFTEXT,
    FIM_MIDDLE,
    FIM_PAD,
    FIM_PREFIX,
    FIM_SUFFIX,
    IM_END,
    SPECIAL_TOKENS,
    STOP_TOKENS,
)

# Markers for untrusted text in a rendered conversation (`Tokenizer.render_marked`): private-use
# characters, lengthened with `_MARK_PAD` until the opening occurs in none of the conversation's
# strings (`Tokenizer.marker_for`).
_MARK_OPEN, _MARK_PAD, _MARK_CLOSE = "\ue000", "\ue002", "\ue001"


# Oniguruma (the regex engine of `tokenizers`) gives up on one match after 10M backtracking steps
# and the Rust binding then panics: a `pyo3_runtime.PanicException`, a BaseException that no
# `except Exception` catches. The code pre-tokenizer's line-start alternative `\s*[\r\n]`
# backtracks over a whole whitespace run, so a run of ~8M spaces or tabs is enough. Such texts
# are encoded with every whitespace run cut into pieces of `_WS_PIECE` characters (each well
# inside the limit); the ids still decode to the text, and no other text's ids change.
_WS_PIECE = 1 << 20
_LONG_WS = re.compile(rf"\s{{{_WS_PIECE + 1},}}")


def _is_regex_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException" and "retry-limit" in str(exc)


def _ws_pieces(text: str) -> list[str]:
    """`text` cut inside its whitespace runs longer than `_WS_PIECE`, every `_WS_PIECE` chars."""
    cuts = [0]
    for m in _LONG_WS.finditer(text):
        cuts += range(m.start() + _WS_PIECE, m.end(), _WS_PIECE)
    cuts.append(len(text))
    return [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def encode_texts(hf: HFTokenizer, texts: list[str]) -> list[list[int]]:
    """`hf.encode_batch(texts)` ids (no post-processor specials), surviving the regex engine's
    backtracking limit (see `_WS_PIECE`): only when the batch panics are its texts encoded one
    by one, the long-run ones piece by piece."""
    try:
        return [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    except BaseException as exc:
        if not _is_regex_panic(exc):
            raise
    out = []
    for text in texts:
        pieces = _ws_pieces(text) if _LONG_WS.search(text) else [text]
        out.append([i for piece in pieces for i in hf.encode(piece, add_special_tokens=False).ids])
    return out


class Tokenizer:
    """The shared tokenizer: `encode(str) -> list[int]`, `decode(list[int]) -> str`, chat template."""

    def __init__(self, hf: HFTokenizer, chat_template: str = CHAT_TEMPLATE):
        self.hf = hf
        self.chat_template = chat_template
        missing = [t for t in SPECIAL_TOKENS if hf.token_to_id(t) is None]
        if missing:
            raise HillclimbError(f"tokenizer lacks required special tokens: {missing}")
        _check_special_roles(hf)

    # ---- basic contract -------------------------------------------------------------------
    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Token ids for `text`. With `allow_special=False`, special-token strings inside `text`
        are encoded as ordinary text (use this for data: user content, corpus documents, code
        around a FIM hole). Text without special-token strings gets the same ids either way."""
        hf = self.hf if allow_special else self._plain
        return encode_texts(hf, [text])[0]

    def encode_batch(self, texts: list[str], allow_special: bool = True) -> list[list[int]]:
        hf = self.hf if allow_special else self._plain
        return encode_texts(hf, texts)

    @cached_property
    def _plain(self) -> HFTokenizer:
        """A copy that reads special-token strings as text. A copy, not a flag flipped on
        `self.hf` around each call: the server encodes from several threads, and a flipped
        flag would leak into another thread's encode."""
        hf = HFTokenizer.from_str(self.hf.to_str())
        hf.encode_special_tokens = True
        return hf

    def encode_fim(self, prefix: str, suffix: str) -> list[int]:
        """The PSM fill-in-the-middle prompt (`specials.fim_prompt`) as ids, the code around the
        hole read as text: a file that itself contains `<|fim_middle|>` or `<|im_end|>` (this
        repository's own source does) cannot move the hole or end the completion. The same ids
        as `encode(fim_prompt(prefix, suffix))` whenever the code has no such strings."""
        return (
            [self.token_id(FIM_PREFIX)]
            + self.encode(prefix, allow_special=False)
            + [self.token_id(FIM_SUFFIX)]
            + self.encode(suffix, allow_special=False)
            + [self.token_id(FIM_MIDDLE)]
        )

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def token_id(self, token: str) -> int:
        tid = self.hf.token_to_id(token)
        if tid is None:
            raise KeyError(token)
        return tid

    def id_to_token(self, tid: int) -> str | None:
        return self.hf.id_to_token(tid)

    @cached_property
    def special_ids(self) -> dict[str, int]:
        return {t: self.token_id(t) for t in SPECIAL_TOKENS}

    @property
    def eos_id(self) -> int:
        return self.token_id(ENDOFTEXT)

    @property
    def stop_ids(self) -> list[int]:
        return [self.token_id(t) for t in STOP_TOKENS]

    @cached_property
    def token_raw_bytes(self) -> list[bytes]:
        """The bytes each token id stands for (b"" for specials). Byte-level BPE pieces map back
        through GPT-2's byte table; a piece outside it (a tokenizer that is not byte-level)
        falls back to the UTF-8 of its decoded text. Why not always the decoded text: a token
        holding part of a multi-byte character decodes alone to U+FFFD, three bytes for what
        is one or two (session 19)."""
        from hillclimb.tokenizer.bytelevel import unicode_to_byte

        u2b = unicode_to_byte()
        specials = set(self.special_ids.values())
        out: list[bytes] = []
        for i in range(self.vocab_size):
            piece = None if i in specials else self.id_to_token(i)
            if not piece:
                out.append(b"")
            elif all(c in u2b for c in piece):
                out.append(bytes(u2b[c] for c in piece))
            else:
                out.append(self.decode([i]).encode("utf-8"))
        return out

    @cached_property
    def token_bytes(self) -> list[int]:
        """Byte length of each token id (0 for specials): the denominator of bits per byte, so
        the tokens of a text sum to its UTF-8 length. Until session 19 this was the length of
        each token's decoded text: a token holding part of a character (CJK, emoji, "—" where
        the vocabulary did not merge it) counted as U+FFFD's 3 bytes, inflating the bytes and
        flattering bits per byte on non-ASCII text."""
        return [len(b) for b in self.token_raw_bytes]

    # ---- chat -----------------------------------------------------------------------------
    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        **kwargs: Any,
    ) -> str:
        """Render messages with the chat template (same Jinja source transformers renders)."""
        return _compiled_template(self.chat_template).render(
            messages=messages, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs
        )

    def encode_chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        **kwargs: Any,
    ) -> list[int]:
        """Token ids of a rendered conversation where system/user/tool text is untrusted:
        special-token strings inside it are encoded as plain text, so a user (or a file a tool
        read) cannot close a turn or fake a tool response; only the template's own markup and
        assistant turns yield special tokens. `continue_final_message` reopens the last
        assistant turn (prefill)."""
        marker = self.marker_for(messages, tools, **kwargs)
        rendered, texts = self.render_marked(
            messages, tools, add_generation_prompt and not continue_final_message,
            marker=marker, **kwargs,
        )  # fmt: skip
        if continue_final_message:
            rendered = rendered.rstrip("\n")
            if not rendered.endswith(IM_END):
                raise HillclimbError("the chat template did not end the final message as expected")
            rendered = rendered[: -len(IM_END)]
        return self.encode_marked(rendered, texts, marker)

    def encode_chat_tail(
        self,
        messages: list[dict[str, Any]],
        start: int,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[int]:
        """Ids of what the template adds for `messages[start:]` plus the generation prompt,
        after a conversation whose first `start` messages were already tokenised (an agent's
        tool observations appended to the ids it sampled, instead of re-rendering the whole
        conversation from text, which is not reversible). Same untrusted-text rule as
        `encode_chat`. Raises HillclimbError if the template renders the earlier messages
        differently once later ones follow."""
        if not 0 < start <= len(messages):
            raise HillclimbError(f"start must be in 1..{len(messages)}, got {start}")
        marker = self.marker_for(messages, tools, **kwargs)
        full, texts = self.render_marked(messages, tools, True, marker=marker, **kwargs)
        prev, _ = self.render_marked(messages[:start], tools, False, marker=marker, **kwargs)
        if not full.startswith(prev):
            raise HillclimbError(
                "the chat template renders earlier messages differently once later ones follow; "
                "the conversation cannot be extended token by token"
            )
        return self.encode_marked(full[len(prev) :], texts, marker)

    @staticmethod
    def marker_for(
        messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> str:
        """The opening of the markers `render_marked` puts where untrusted text goes: a run of
        private-use characters that occurs in no string of the conversation, its tools or the
        template arguments. Why not one fixed character: text rendered as it is (an assistant
        turn, a tool definition) holding the marker form U+E000 "0" U+E001 was encoded as the
        conversation's system text in its place, and U+E000 "99" U+E001 was an
        IndexError (session 20). Pass the same marker to every render of one conversation and
        its prefixes, and to `encode_marked`."""
        blob = json.dumps([messages, tools, kwargs], ensure_ascii=False, default=str)
        marker = _MARK_OPEN
        while marker in blob:
            marker += _MARK_PAD
        return marker

    def render_marked(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        add_generation_prompt: bool,
        *,
        marker: str | None = None,
        **kwargs: Any,
    ) -> tuple[str, list[str]]:
        """The rendered conversation with every untrusted text replaced by a numbered marker
        (`marker_for`; default: the one for these messages), and those texts (numbered in
        message order, so a prefix of the conversation gets the same markers)."""
        texts: list[str] = []
        opening = marker or self.marker_for(messages, tools, **kwargs)

        def mark(value: Any) -> Any:
            if not isinstance(value, str):
                return value
            texts.append(value)
            return f"{opening}{len(texts) - 1}{_MARK_CLOSE}"

        safe = []
        for m in messages:
            m2 = dict(m)
            # Assistant turns are model-format text (they may carry <think>/<tool_call> markup,
            # e.g. a prefill); everything else is data.
            if m2.get("role") != "assistant":
                for key in ("content", "reasoning_content"):
                    if key in m2:
                        m2[key] = mark(m2[key])
            safe.append(m2)
        rendered = self.apply_chat_template(
            safe, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs
        )
        return rendered, texts

    def encode_marked(self, rendered: str, texts: list[str], marker: str) -> list[int]:
        """Ids of a `render_marked` rendering (`marker`: the one it was rendered with): the
        marked texts encoded as data when any holds a special-token string."""
        pieces = re.split(re.escape(marker) + "(\\d+)" + _MARK_CLOSE, rendered)
        used = [texts[int(p)] for i, p in enumerate(pieces) if i % 2 == 1]
        if not any(sp in t for t in used for sp in SPECIAL_TOKENS):
            # Nothing to neutralise: encode the whole text at once, so the ids are exactly
            # those training saw (BPE merges may cross a template/content boundary).
            return self.encode(
                "".join(p if i % 2 == 0 else texts[int(p)] for i, p in enumerate(pieces))
            )
        ids: list[int] = []
        for i, piece in enumerate(pieces):
            if i % 2 == 0:
                if piece:
                    ids.extend(self.encode(piece))
            else:
                ids.extend(self.encode(texts[int(piece)], allow_special=False))
        return ids

    # ---- persistence ----------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> None:
        save_tokenizer(self, directory)


_TEMPLATE_CACHE: dict[str, Any] = {}


def _compiled_template(source: str) -> Any:
    tpl = _TEMPLATE_CACHE.get(source)
    if tpl is None:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined
        )

        def tojson(x: Any) -> str:
            return json.dumps(x, ensure_ascii=False)

        env.filters["tojson"] = tojson
        tpl = env.from_string(source)
        _TEMPLATE_CACHE[source] = tpl
    return tpl


def tokenizer_config(tok: Tokenizer, model_max_length: int = 131072) -> dict[str, Any]:
    """`tokenizer_config.json` as transformers expects it (roles of special tokens + template)."""
    added = {
        str(tok.token_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in SPECIAL_TOKENS
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "additional_special_tokens": [
            t for t in SPECIAL_TOKENS if t not in (ENDOFTEXT, IM_END, FIM_PAD)
        ],
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": FIM_PAD,
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "split_special_tokens": False,
        "chat_template": tok.chat_template,
    }


def save_tokenizer(
    tok: Tokenizer, directory: str | os.PathLike[str], model_max_length: int = 131072
) -> None:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    write_text_atomic(d / "tokenizer.json", tok.hf.to_str(pretty=False))
    write_json_atomic(d / "tokenizer_config.json", tokenizer_config(tok, model_max_length))
    write_json_atomic(
        d / "special_tokens_map.json",
        {"eos_token": IM_END, "pad_token": FIM_PAD, "additional_special_tokens": SPECIAL_TOKENS},
    )


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Load from a directory holding `tokenizer.json` (or the file itself)."""
    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.is_file():
        raise HillclimbError(f"no tokenizer.json at {p}")
    try:
        hf = HFTokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises plain Exception on malformed JSON
        raise HillclimbError(f"cannot read tokenizer {file}: {exc}") from exc
    _check_byte_alphabet(hf, file)
    return Tokenizer(hf, _read_chat_template(file.parent / "tokenizer_config.json"))


def _check_byte_alphabet(hf: HFTokenizer, file: Path) -> None:
    """A byte-level tokenizer (ByteLevel decoder) must hold all 256 byte symbols: BPE without an
    unknown token drops a byte it has no symbol for, so a damaged or hand-edited
    `tokenizer.json` lacking one encoded "ABA" as "B" — data lost silently, in training and
    serving alike."""
    from tokenizers import decoders

    from hillclimb.tokenizer.bytelevel import byte_to_unicode

    if not isinstance(hf.decoder, decoders.ByteLevel):
        return
    missing = [b for b, ch in byte_to_unicode().items() if hf.token_to_id(ch) is None]
    if missing:
        shown = ", ".join(f"0x{b:02x}" for b in missing[:8])
        raise HillclimbError(
            f"tokenizer {file} is byte-level but lacks the symbols of {len(missing)} byte(s) "
            f"({shown}{', …' if len(missing) > 8 else ''}): text holding them would be dropped "
            "when encoded; the file is damaged"
        )


def _check_special_roles(hf: HFTokenizer) -> None:
    """Each special token must be an added token marked special. One that is only a plain added
    token (`"special": false` in a hand-edited or foreign `tokenizer.json`) is matched in text
    whatever `encode_special_tokens` says, so a user's "<|im_end|>" closed the turn inside
    `encode_chat`, and `decode(skip_special=True)` kept it (session 21); one that is only a
    vocabulary entry is never produced from the template's markup at all."""
    special = {t.content for t in hf.get_added_tokens_decoder().values() if t.special}
    wrong = [t for t in SPECIAL_TOKENS if t not in special]
    if wrong:
        raise HillclimbError(
            f"tokenizer holds {wrong} but not as special added tokens: text containing those "
            "strings would be read as the tokens themselves (user text could close a turn); "
            "the tokenizer.json is damaged or not ours"
        )


def _read_chat_template(cfg_file: Path) -> str:
    """The chat template of `tokenizer_config.json` (ours when the file or the field is absent),
    checked here: a config that is not a JSON object, is not UTF-8, or holds a template that is
    not a string or does not compile was an AttributeError / UnicodeDecodeError / TypeError /
    jinja2 traceback on load or at the first chat (session 21). transformers' list of named
    templates is read for its "default" entry."""
    if not cfg_file.is_file():
        return CHAT_TEMPLATE
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HillclimbError(f"malformed {cfg_file}: {exc}") from exc
    if not isinstance(cfg, dict):
        raise HillclimbError(f"malformed {cfg_file}: expected a JSON object")
    template = cfg.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": "..."}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
        if template is None:
            raise HillclimbError(f"{cfg_file}: chat_template lists no template named 'default'")
    if not template:
        return CHAT_TEMPLATE
    if not isinstance(template, str):
        raise HillclimbError(
            f"{cfg_file}: chat_template must be a string, got {type(template).__name__}"
        )
    import jinja2

    try:
        _compiled_template(template)
    except jinja2.TemplateError as exc:
        raise HillclimbError(f"{cfg_file}: chat_template does not compile: {exc}") from exc
    return template


def bytelevel_tokenizer() -> Tokenizer:
    from hillclimb.tokenizer.bytelevel import build_bytelevel_tokenizer

    return Tokenizer(build_bytelevel_tokenizer())
