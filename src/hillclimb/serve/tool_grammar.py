"""Tool calls decoded under their JSON schema: a `<tool_call>` body is valid by construction.

Why: the tiny coder half-learns the call format from a few dozen tool episodes and writes calls
such as `{"name": "read_file", "arguments": {"path": "arguments": "python -m pytest -q"}}` (two
calls' fields fused, session 25); greedy decoding repeats the same bytes after every error
observation, so every harness episode ended `format_error` and harness RL saw no reward at all.
Structured decoding (vLLM's guided decoding, OpenAI's `strict` function calling) removes that
failure: once the model opens a `<tool_call>`, only tokens that keep the body a prefix of
`{"name": <a tool>, "arguments": <an object valid for that tool's parameters>}` may be drawn, and
`</tool_call>` is allowed exactly when the body is complete. The *content* of the call (which
tool, which file, which edit) is still the model's choice; the grammar only rules out what no
tool could execute.

How:
- `compile_tools(schemas)` turns OpenAI function schemas into a node table (string, enum/const,
  integer, number, boolean, null, object with declared/extra properties and `required`, array,
  and `any` JSON for what the subset does not cover: `anyOf`, `$ref`, type unions). A `strict`
  tool's schema is first checked by `strict_schema_problem`: the server refuses one the subset
  would decode more loosely than written.
- `ToolCallGrammar.feed(state, byte)` is a byte-level pushdown automaton over that table. A state
  is an immutable tuple of frames, so states hash, and a state fully decides what may follow.
- `ToolCallGrammar.mask(state)` is the bool [V] of tokens whose bytes the automaton accepts from
  `state` (plus `</tool_call>` when the body is complete), found by walking a byte trie of the
  vocabulary from `state` (a prefix the automaton refuses prunes its subtree) and cached per
  state. Inside a JSON string every "plain" token keeps the state unchanged, so string states
  take the precomputed plain set plus a walk over the few tokens holding `"`, `\\` or control
  bytes — the common state costs a dictionary lookup, a new one well under a millisecond at
  the tiny vocabulary.
- `ToolCallTracker` follows one generation token by token: outside a call it constrains
  nothing; `<tool_call>` starts the automaton; `</tool_call>` in the accepting state ends it.
- Exactness for training: the state is a deterministic function of the tokens since
  `<tool_call>`, so `constrained_positions(ids)` recomputes, for a sampled completion, which
  positions were drawn under which mask — a policy-gradient trainer scores the same constrained
  distribution the rollout sampled from (`rl.grpo`), not the unconstrained one.

Bounds that keep a small model from looping inside the grammar: at most `WS_MAX` whitespace bytes
in a row between JSON tokens, at most `MAX_DIGITS` digits in a number part, nesting of `any`
values at most `MAX_DEPTH` deep; `\\ud800`–`\\udfff` escapes (lone surrogates, which no tool
takes) are refused. Strings have no length bound: `max_tokens` is the limit there.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from hillclimb.serve.healing import successor

__all__ = [
    "CALL",
    "Node",
    "ToolCallGrammar",
    "ToolCallTracker",
    "compile_tools",
    "grammar_for",
    "strict_schema_problem",
]

WS = frozenset(b" \t\n\r")
WS_MAX = 4
MAX_DIGITS = 12
MAX_DEPTH = 8
DIGITS = frozenset(b"0123456789")
HEX = frozenset(b"0123456789abcdefABCDEF")
ESCAPES = frozenset(b'"\\/bfnrt')
CALL = 0  # node id of the call object itself
# schema size a request may ask the engine to decode under (OpenAI's strict mode allows 5,000
# object properties and 1,000 enum values in all): bounds the one-off cost of a new tool set
MAX_NODES = 10_000
MAX_LITERALS = 50_000


@dataclass(frozen=True)
class Node:
    """One schema node. `props` maps a key's JSON encoding (quotes included) to a node id;
    `extra` is the node of undeclared keys (None: refused); `alts` are the JSON encodings an
    enum/const/boolean/null value may take."""

    kind: str  # string | lits | integer | number | object | array | any | call
    props: tuple[tuple[bytes, int], ...] = ()
    required: frozenset[bytes] = frozenset()
    extra: int | None = None
    items: int = -1
    alts: tuple[bytes, ...] = ()
    nonneg: int = 0  # numbers: 0 any sign, 1 no '-' (minimum >= 0), 2 integer >= 1


@dataclass
class _Compiler:
    nodes: list[Node] = field(default_factory=list)

    def add(self, n: Node) -> int:
        self.nodes.append(n)
        return len(self.nodes) - 1

    def any_node(self) -> int:
        return self.add(Node("any"))

    def compile(self, s: Any) -> int:
        if not isinstance(s, dict):
            return self.any_node()
        if "const" in s:
            return self.add(Node("lits", alts=(_enc(s["const"]),)))
        if isinstance(s.get("enum"), list) and s["enum"]:
            return self.add(Node("lits", alts=tuple(dict.fromkeys(_enc(v) for v in s["enum"]))))
        t = s.get("type")
        if t == "string":
            return self.add(Node("string"))
        if t in ("integer", "number"):
            lo = s.get("minimum", s.get("exclusiveMinimum"))
            num = isinstance(lo, (int, float)) and not isinstance(lo, bool)
            sign = 0 if not num or lo < 0 else (2 if t == "integer" and lo >= 1 else 1)
            return self.add(Node(t, nonneg=sign))
        if t == "boolean":
            return self.add(Node("lits", alts=(b"true", b"false")))
        if t == "null":
            return self.add(Node("lits", alts=(b"null",)))
        if t == "array":
            nid = self.add(Node("array"))
            items = self.compile(s.get("items")) if "items" in s else self.any_node()
            self.nodes[nid] = Node("array", items=items)
            return nid
        if t == "object" or (t is None and "properties" in s):
            nid = self.add(Node("object"))
            props_in = s.get("properties") or {}
            if not isinstance(props_in, dict):
                props_in = {}
            props = tuple((_enc(str(k)), self.compile(v)) for k, v in props_in.items())
            req = frozenset(_enc(str(k)) for k in (s.get("required") or []) if str(k) in props_in)
            ap = s.get("additionalProperties", True)
            extra = None if ap is False else (self.compile(ap) if isinstance(ap, dict) else -2)
            self.nodes[nid] = Node("object", props=props, required=req, extra=extra)
            if extra == -2:
                self.nodes[nid] = Node("object", props=props, required=req, extra=self.any_node())
            return nid
        return self.any_node()  # anyOf, $ref, type unions, ...: any JSON value


def _enc(v: Any) -> bytes:
    return json.dumps(v, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8")


def compile_tools(tools: list[dict[str, Any]]) -> tuple[list[Node], list[bytes], list[int]]:
    """(node table, tool names as JSON strings, parameters node per tool) for OpenAI function
    tool schemas (`{"type": "function", "function": {...}}` or the bare function dict)."""
    c = _Compiler()
    c.add(Node("call"))
    names: list[bytes] = []
    params: list[int] = []
    for t in tools:
        f = t.get("function", t) if isinstance(t, dict) else None
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
            raise ValueError(f"not a function tool schema: {str(t)[:200]}")
        p = f.get("parameters")
        names.append(_enc(f["name"]))
        # arguments are always a JSON object (OpenAI): a schema of another type cannot apply
        is_object = isinstance(p, dict) and p.get("type", "object") == "object"
        params.append(c.compile(p if is_object else {"type": "object"}))
    if not names:
        raise ValueError("a tool-call grammar needs at least one tool")
    n_alts = sum(len(n.alts) for n in c.nodes)
    if len(c.nodes) > MAX_NODES or n_alts > MAX_LITERALS:
        raise ValueError(
            f"tool schemas too large to decode under: {len(c.nodes)} schema nodes (at most "
            f"{MAX_NODES}), {n_alts} enum/const values (at most {MAX_LITERALS})"
        )
    if len(set(names)) != len(names):
        raise ValueError("tool names must be unique")
    return c.nodes, names, params


# ---- strict schemas: what the grammar honours exactly -------------------------------------------
# Why: `"strict": true` is a promise that every call's arguments are valid for the schema. The
# compiler above reads a subset and decodes anything else as "any JSON value", so a strict schema
# that is invalid (`"enum": []`, `minimum` > `maximum`, `required` naming no property) or uses a
# keyword the subset ignores (`$ref`, `pattern`, `maxLength`, ...) was served as a looser schema
# without a word. `strict_schema_problem` finds the first such spot so the server can refuse it
# (OpenAI refuses an invalid strict schema with a 400 naming it); non-strict tools are unchanged.
JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "null", "array", "object"})
# validation keywords the compiler does not read: under `strict` each would be silently dropped
UNHONOURED = frozenset(
    {"$ref", "$dynamicRef", "$recursiveRef", "anyOf", "oneOf", "allOf", "not", "if", "then",
     "else", "pattern", "format", "minLength", "maxLength", "maximum", "exclusiveMaximum",
     "exclusiveMinimum", "multipleOf", "minItems", "maxItems", "uniqueItems", "contains",
     "minContains", "maxContains", "prefixItems", "additionalItems", "unevaluatedItems",
     "minProperties", "maxProperties", "patternProperties", "propertyNames",
     "unevaluatedProperties", "dependentRequired", "dependentSchemas", "dependencies",
     "nullable", "contentEncoding", "contentMediaType"}
)  # fmt: skip
_BOUND_PAIRS = (
    ("minimum", "maximum"),
    ("exclusiveMinimum", "exclusiveMaximum"),
    ("minLength", "maxLength"),
    ("minItems", "maxItems"),
    ("minProperties", "maxProperties"),
)
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _key_path(path: str, key: str) -> str:
    """`path.key`, or `path["key"]` (JSON-quoted) when the key is not a plain name."""
    return f"{path}.{key}" if key.replace("_", "a").isalnum() and key.isascii() else (
        f"{path}[{json.dumps(key)}]")  # fmt: skip


def _invalid_keyword(s: dict[str, Any]) -> tuple[str, str] | None:
    """(keyword, why) for the first keyword of schema object `s` that is not valid JSON Schema
    or makes it unsatisfiable; None when all are well-formed."""
    t = s.get("type")
    names = t if isinstance(t, list) else [t]
    if "type" in s and (
        not names or not all(isinstance(n, str) and n in JSON_TYPES for n in names)
    ):
        return (
            "type",
            f"{repr(t)[:80]} is not a JSON Schema type (one of {', '.join(sorted(JSON_TYPES))})",
        )
    if "enum" in s and (not isinstance(s["enum"], list) or not s["enum"]):
        return "enum", "must be a non-empty array"
    for key in _COUNTS:
        v = s.get(key)
        if key in s and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            return key, "must be a non-negative integer"
    for lo, hi in _BOUND_PAIRS:
        a, b = s.get(lo), s.get(hi)
        if (lo in s and not _is_num(a)) or (hi in s and not _is_num(b)):
            return (lo if lo in s and not _is_num(a) else hi), "must be a number"
        if _is_num(a) and _is_num(b) and a > b:
            return lo, f"{lo} ({a}) is greater than {hi} ({b})"
    if "properties" in s and not isinstance(s["properties"], dict):
        return "properties", "must be an object mapping names to schemas"
    ap = s.get("additionalProperties", True)
    if not isinstance(ap, bool | dict):
        return "additionalProperties", "must be a boolean or a schema object"
    req = s.get("required", [])
    if not isinstance(req, list) or not all(isinstance(k, str) for k in req):
        return "required", "must be an array of property names"
    undefined = [k for k in req if k not in (s.get("properties") or {})]
    if undefined:
        return "required", f"names {undefined[0][:80]!r}, which is not defined in 'properties'"
    return None


def _unhonoured_keyword(s: dict[str, Any]) -> tuple[str, str] | None:
    """(keyword, why) for the first well-formed keyword the compiler would not honour exactly."""
    if "const" in s:
        return None  # decoded as exactly that value; other keywords cannot widen it
    if isinstance(s.get("type"), list):
        return "type", "type unions are decoded as any JSON value"
    for key in s:
        if key in UNHONOURED:
            why = f"'{key}' is not enforced by this server's grammar"
            if key == "$ref":  # a recursive schema ('#') has no finite grammar in this subset
                why += " (references, recursive ones included, are not followed)"
            return key, why
    if s.get("type") is None and "properties" not in s:
        for key in ("required", "additionalProperties", "items"):
            if key in s:  # the compiler reads these only under a type it knows: any JSON here
                return key, "is enforced only with a 'type' ('object' or 'array') beside it"
    lo = s.get("minimum")
    if lo is not None and "enum" not in s:
        t = s.get("type")
        exact = lo == 0 and t in ("integer", "number") or lo == 1 and t == "integer"
        if not exact:
            return "minimum", "only minimum 0 (integer or number) or 1 (integer) is enforced"
    return None


def _children(s: dict[str, Any], path: str) -> list[tuple[Any, str]]:
    """The subschemas the compiler descends into, with their paths."""
    if "const" in s or "enum" in s:
        return []
    out = []
    t = s.get("type")
    if t == "array" and "items" in s:
        out.append((s["items"], f"{path}.items"))
    if t == "object" or (t is None and "properties" in s):
        for k, v in (s.get("properties") or {}).items():
            out.append((v, _key_path(f"{path}.properties", str(k))))
        if isinstance(s.get("additionalProperties"), dict):
            out.append((s["additionalProperties"], f"{path}.additionalProperties"))
    return out


def strict_schema_problem(schema: Any, path: str = "parameters") -> tuple[str, str] | None:
    """(path of the offending keyword, why) for the first spot where the arguments schema of a
    `strict` tool is invalid or cannot be decoded exactly; None when the grammar honours it all.
    Iterative: the nesting depth is the client's."""
    # no type and no properties: the compiler decodes any JSON value, not an object
    t = schema.get("type") if isinstance(schema, dict) else None
    if not isinstance(schema, dict) or not (
        t == "object" or (t is None and "properties" in schema)
    ):
        return f"{path}.type", "a strict tool's parameters must be a schema of type 'object'"
    stack: list[tuple[Any, str]] = [(schema, path)]
    while stack:
        s, where = stack.pop()
        if s is True:
            continue  # any value: what the compiler decodes for it
        if not isinstance(s, dict):
            return where, "must be a schema object (or true)"
        found = _invalid_keyword(s) or _unhonoured_keyword(s)
        if found:
            return f"{where}.{found[0]}", found[1]
        stack.extend(reversed(_children(s, where)))
    return None


# ---- the automaton ------------------------------------------------------------------------------
# Frames (tuples, so a state — a tuple of frames — hashes):
#   ("t", phase, ws)                top: 0 before the call object, 1 in it, 2 after it
#   ("v", node, ws)                 a value of `node` is expected (leading whitespace allowed)
#   ("s", esc)                      inside a free string (esc: see `_str_byte`)
#   ("k", esc, prefix)              an undeclared object key being written (prefix None: too long)
#   ("l", lit, prefix)              one of the byte strings of literal set `lit` (an index into
#                                   `ToolCallGrammar._lits`) is being written
#   ("n", integer, phase, digits, nonneg)   a number (phase: see `_num_byte`)
#   ("o", node, phase, done, ws, key, tool) an object (phase: open/key/colon/value/after/comma)
#   ("a", node, phase, ws)          an array (phase: open/value/after/comma)
_END_OK = "end"
_SECOND = {24: (0xA0, 0xBF, 21), 25: (0x80, 0x9F, 21), 26: (0x90, 0xBF, 22), 27: (0x80, 0x8F, 22)}


def _str_byte(esc: int, b: int) -> int | str | None:
    """Next escape state inside a JSON string after byte b: 0 plain, 1 after `\\`, 10 first
    hex digit of `\\u` expected, 11 second after a `d` (must be 0-7: no surrogates), 12 second,
    13 third, 14 fourth; 21/22/23: 1/2/3 UTF-8 continuation bytes due (a string is text: a
    byte-level token may hold half a character, and the call must decode without U+FFFD);
    "end" at the closing quote; None when b is not allowed."""
    if esc == 0:
        if b == 0x22:
            return _END_OK
        if b == 0x5C:
            return 1
        if b < 0x80:
            return None if b < 0x20 else 0
        if 0xC2 <= b <= 0xDF:
            return 21
        if 0xE0 <= b <= 0xEF:
            return {0xE0: 24, 0xED: 25}.get(b, 22)
        if 0xF0 <= b <= 0xF4:
            return {0xF0: 26, 0xF4: 27}.get(b, 23)
        return None  # a continuation byte with no lead, or a byte UTF-8 never uses
    if esc in (21, 22, 23):
        return (0 if esc == 21 else esc - 1) if 0x80 <= b <= 0xBF else None
    if esc in _SECOND:  # the second byte's narrower range: no overlongs, surrogates, > U+10FFFF
        lo, hi, nxt = _SECOND[esc]
        return nxt if lo <= b <= hi else None
    if esc == 1:
        if b in ESCAPES:
            return 0
        return 10 if b == 0x75 else None
    if b not in HEX:
        return None
    if esc == 10:
        return 11 if b in b"dD" else 12
    if esc == 11:
        return 13 if b in b"01234567" else None
    if esc in (12, 13):
        return esc + 1
    return 0  # esc == 14


def _num_byte(f: tuple, b: int) -> tuple | None:
    """Number frame after byte b, or None when b does not continue the number. Phases: 0 start,
    1 after '-', 2 after a leading 0, 3 in integer digits, 4 after '.', 5 in fraction digits."""
    _, integer, phase, digits, nonneg = f
    if phase == 0 and b == 0x2D and not nonneg:
        return ("n", integer, 1, 0, nonneg)
    if b in DIGITS:
        if phase in (0, 1):
            if b == 0x30 and nonneg == 2:
                return None  # an integer >= 1 has no leading 0
            return ("n", integer, 2 if b == 0x30 else 3, 1, nonneg)
        if phase in (3, 4, 5) and (phase == 4 or digits < MAX_DIGITS):
            return ("n", integer, 5 if phase in (4, 5) else 3, 1 if phase == 4 else digits + 1,
                    nonneg)  # fmt: skip
        return None
    if b == 0x2E and not integer and phase in (2, 3):
        return ("n", integer, 4, 0, nonneg)
    return None


def _num_done(f: tuple) -> bool:
    return f[2] in (2, 3, 5)


class ToolCallGrammar:
    """The automaton and its per-state token masks for one tool set and one vocabulary.

    `token_bytes[i]` is token i's byte string (None for special tokens); `end_id` is
    `</tool_call>`'s id, the only special token ever allowed (in the accepting state)."""

    def __init__(
        self,
        tools: list[dict[str, Any]],
        token_bytes: list[bytes | None],
        start_id: int,
        end_id: int,
        cache_bytes: int = 16 << 20,  # per grammar; an engine keeps at most 8
        vocab: VocabTries | None = None,
    ):
        nodes, self.names, self.params = compile_tools(tools)
        self.nodes = nodes + [Node("lits", alts=tuple(self.names)), Node("any")]
        self.name_node, self.any_node = len(self.nodes) - 2, len(self.nodes) - 1
        self.start_id, self.end_id = int(start_id), int(end_id)
        self.vocab_size = len(token_bytes)
        self.token_bytes = token_bytes
        self.initial: tuple = (("t", 0, 0),)
        v = vocab if vocab is not None else VocabTries(token_bytes)
        self._trie, self._hard, self._plain = v.trie, v.hard, v.plain
        # literal sets (enum/const values, the object keys still allowed), each once: frames
        # carry the index, so a state hashes in O(depth) whatever the enum's size
        self._lits: list[_LitSet] = []
        self._lit_ids: dict[tuple[bytes, ...], int] = {}
        self._masks: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()  # the engine's loop and a trainer may both ask
        self._max_masks = max(64, cache_bytes // max(1, self.vocab_size))
        self.mask_builds = 0

    def _lit(self, alts: tuple[bytes, ...]) -> int:
        i = self._lit_ids.get(alts)
        if i is None:
            i = self._lit_ids[alts] = len(self._lits)
            self._lits.append(_LitSet(alts))
        return i

    # ---- one byte ------------------------------------------------------------------------------
    def feed(self, state: tuple, b: int) -> tuple | None:
        """The state after byte b, or None when no valid call continues with it."""
        stack = list(state)
        while stack:
            f = stack[-1]
            tag = f[0]
            if tag == "s":
                e = _str_byte(f[1], b)
                if e is None:
                    return None
                if e == _END_OK:
                    stack.pop()
                    return self._done(stack, None)
                stack[-1] = ("s", e)
                return tuple(stack)
            if tag == "l":
                lit, p = self._lits[f[1]], f[2] + bytes([b])
                n = lit.extensions(p)  # alternatives that start with p: a bisection, not a scan
                if n:
                    if p in lit.members and n == 1:
                        stack.pop()
                        return self._done(stack, p)
                    stack[-1] = ("l", f[1], p)
                    return tuple(stack)
                if f[2] in lit.members:  # a complete literal ended by what follows it (numbers)
                    stack.pop()
                    st = self._done(stack, f[2])
                    if st is None:
                        return None
                    stack = list(st)
                    continue
                return None
            if tag == "n":
                nf = _num_byte(f, b)
                if nf is not None:
                    stack[-1] = nf
                    return tuple(stack)
                if not _num_done(f):
                    return None
                stack.pop()
                st = self._done(stack, None)
                if st is None:
                    return None
                stack = list(st)
                continue  # the byte after a number belongs to its container
            if tag == "k":
                e = _str_byte(f[1], b)
                if e is None:
                    return None
                if e == _END_OK:
                    stack.pop()
                    key = None if f[2] is None else b'"' + f[2] + b'"'
                    return self._done(stack, key)
                prefix = None if f[2] is None or len(f[2]) >= 64 else f[2] + bytes([b])
                stack[-1] = ("k", e, prefix)
                return tuple(stack)
            if tag == "v":
                return self._value_start(stack, f, b)
            if tag == "o":
                return self._object_byte(stack, f, b)
            if tag == "a":
                return self._array_byte(stack, f, b)
            if tag == "t":
                phase, ws = f[1], f[2]
                if b in WS:
                    if ws >= WS_MAX or phase == 1:
                        return None
                    stack[-1] = ("t", phase, ws + 1)
                    return tuple(stack)
                if phase != 0:
                    return None
                stack[-1] = ("t", 1, 0)
                stack.append(("v", CALL, 0))
                continue
            return None
        return None

    def _done(self, stack: list, result: bytes | None) -> tuple | None:
        """A value (or key) just ended; its container's frame moves on."""
        f = stack[-1]
        tag = f[0]
        if tag == "t":
            stack[-1] = ("t", 2, 0)
        elif tag == "a":
            stack[-1] = ("a", f[1], "after", 0)
        elif tag == "o":
            _, nid, phase, done, _ws, key, tool = f
            if phase == "key":
                stack[-1] = ("o", nid, "colon", done, 0, result, tool)
            else:  # a value ended
                if nid == CALL and key == b'"name"':
                    tool = self.names.index(result) if result in self.names else None
                stack[-1] = ("o", nid, "after", done | {key}, 0, None, tool)
        else:
            return None
        return tuple(stack)

    def _value_start(self, stack: list, f: tuple, b: int) -> tuple | None:
        _, nid, ws = f
        if b in WS:
            if ws >= WS_MAX:
                return None
            stack[-1] = ("v", nid, ws + 1)
            return tuple(stack)
        node = self.nodes[nid]
        k = node.kind
        if k == "any":
            if b == 0x22:
                stack[-1] = ("s", 0)
                return tuple(stack)
            if b == 0x2D or b in DIGITS:
                stack[-1] = ("n", False, 0, 0, False)
                return self.feed(tuple(stack), b)
            if b in b"tfn":
                stack[-1] = ("l", self._lit((b"true", b"false", b"null")), b"")
                return self.feed(tuple(stack), b)
            if b in b"{[" and len(stack) < MAX_DEPTH + 2:
                if b == 0x7B:
                    stack[-1] = ("o", nid, "open", frozenset(), 0, None, None)
                else:
                    stack[-1] = ("a", nid, "open", 0)
                return tuple(stack)
            return None
        if k == "string":
            if b != 0x22:
                return None
            stack[-1] = ("s", 0)
            return tuple(stack)
        if k == "lits":
            stack[-1] = ("l", self._lit(node.alts), b"")
            return self.feed(tuple(stack), b)
        if k in ("integer", "number"):
            stack[-1] = ("n", k == "integer", 0, 0, node.nonneg)
            nf = _num_byte(stack[-1], b)
            if nf is None:
                return None
            stack[-1] = nf
            return tuple(stack)
        if k in ("object", "call"):
            if b != 0x7B:
                return None
            stack[-1] = ("o", nid, "open", frozenset(), 0, None, None)
            return tuple(stack)
        if k == "array":
            if b != 0x5B:
                return None
            stack[-1] = ("a", nid, "open", 0)
            return tuple(stack)
        return None

    def _keys(self, f: tuple) -> tuple[tuple[bytes, ...], bool, bool]:
        """(declared keys still allowed, whether an undeclared key may follow, whether the
        object may close now) for object frame f."""
        _, nid, _phase, done, _ws, _key, _tool = f
        if nid == CALL:
            if b'"name"' not in done:
                return (b'"name"',), False, False
            if b'"arguments"' not in done:
                return (b'"arguments"',), False, False
            return (), False, True
        node = self.nodes[nid]
        if node.kind == "any":
            return (), True, True
        left = tuple(k for k, _ in node.props if k not in done)
        return left, node.extra is not None, node.required <= done

    def _value_node(self, f: tuple, key: bytes | None) -> int:
        _, nid, _phase, _done, _ws, _key, tool = f
        if nid == CALL:
            if key == b'"name"':
                return self.name_node
            return self.params[tool] if tool is not None else self.any_node
        node = self.nodes[nid]
        if node.kind == "any":
            return nid
        for k, v in node.props:
            if k == key:
                return v
        return node.extra if node.extra is not None else self.any_node

    def _object_byte(self, stack: list, f: tuple, b: int) -> tuple | None:
        _, nid, phase, done, ws, key, tool = f
        if b in WS:
            if ws >= WS_MAX or phase in ("key", "value"):
                return None
            stack[-1] = ("o", nid, phase, done, ws + 1, key, tool)
            return tuple(stack)
        left, extra, can_close = self._keys(f)
        if phase in ("open", "comma"):
            if b == 0x7D and phase == "open" and can_close:
                stack.pop()
                return self._done(stack, None)
            if b != 0x22 or not (left or extra):
                return None
            stack[-1] = ("o", nid, "key", done, 0, None, tool)
            if extra:
                stack.append(("k", 0, b""))
                return tuple(stack)
            stack.append(("l", self._lit(left), b'"'))
            return tuple(stack)
        if phase == "colon":
            if b != 0x3A:
                return None
            stack[-1] = ("o", nid, "value", done, 0, key, tool)
            stack.append(("v", self._value_node(f, key), 0))
            return tuple(stack)
        if phase == "after":
            if b == 0x2C and (left or extra):
                stack[-1] = ("o", nid, "comma", done, 0, None, tool)
                return tuple(stack)
            if b == 0x7D and can_close:
                stack.pop()
                return self._done(stack, None)
            return None
        return None

    def _array_byte(self, stack: list, f: tuple, b: int) -> tuple | None:
        _, nid, phase, ws = f
        if b in WS:
            if ws >= WS_MAX or phase == "value":
                return None
            stack[-1] = ("a", nid, phase, ws + 1)
            return tuple(stack)
        if phase in ("after", "open") and b == 0x5D:
            stack.pop()
            return self._done(stack, None)
        if phase == "after":
            if b != 0x2C:
                return None
            stack[-1] = ("a", nid, "comma", 0)
            return tuple(stack)
        if phase in ("open", "comma"):
            node = self.nodes[nid]
            item = nid if node.kind == "any" else node.items
            stack[-1] = ("a", nid, "value", 0)
            stack.append(("v", item, 0))
            return self._value_start(stack, stack[-1], b)
        return None

    def feed_bytes(self, state: tuple | None, data: bytes) -> tuple | None:
        for b in data:
            if state is None:
                return None
            state = self.feed(state, b)
        return state

    def accepting(self, state: tuple) -> bool:
        """Whether `</tool_call>` may follow: the call object is complete."""
        return len(state) == 1 and state[0][0] == "t" and state[0][1] == 2

    # ---- token masks ---------------------------------------------------------------------------
    def allowed(self, state: tuple) -> list[int]:
        """Token ids allowed in `state` (unsorted)."""
        out: list[int] = []
        top = state[-1]
        if top[0] == "s" and top[1] == 0:
            out.extend(self._plain)
            self._walk(self._hard, state, out)
        else:
            self._walk(self._trie, state, out)
        if self.accepting(state):
            out.append(self.end_id)
        return out

    def _walk(self, trie: dict, state: tuple, out: list[int]) -> None:
        todo = [(trie, state)]
        while todo:
            node, st = todo.pop()
            for b, child in node.items():
                if b == -1:
                    continue
                nxt = self.feed(st, b)
                if nxt is None:
                    continue
                ids = child.get(-1)
                if ids:
                    out.extend(ids)
                todo.append((child, nxt))

    def mask(self, state: tuple, device: torch.device | str = "cpu") -> torch.Tensor:
        """Bool [V]: True where a token may be drawn in `state` (cached per state)."""
        with self._lock:
            m = self._masks.get(state)
            if m is None:
                m = torch.zeros(self.vocab_size, dtype=torch.bool)
                ids = self.allowed(state)
                if ids:
                    m[torch.tensor(ids)] = True
                self.mask_builds += 1
                self._masks[state] = m
                if len(self._masks) > self._max_masks:
                    self._masks.popitem(last=False)
            else:
                self._masks.move_to_end(state)
        return m if str(device) == "cpu" else m.to(device)

    def start_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Bool [V]: `<tool_call>` only (a required call not opened yet)."""
        m = torch.zeros(self.vocab_size, dtype=torch.bool)
        m[self.start_id] = True
        return m if str(device) == "cpu" else m.to(device)

    def advance(self, state: tuple, tid: int) -> tuple | None:
        """The state after token tid (None: tid is not allowed in `state`). `</tool_call>` in
        the accepting state returns the initial state's sentinel `()` (the call is over)."""
        if tid == self.end_id:
            return () if self.accepting(state) else None
        tb = self.token_bytes[tid] if 0 <= tid < self.vocab_size else None
        if not tb:
            return None
        return self.feed_bytes(state, tb)

    def constrained_positions(self, ids: list[int]) -> list[tuple[int, tuple]]:
        """(position, state) for every token of one sampled completion that was drawn under a
        mask: the tokens after each `<tool_call>` up to and including its `</tool_call>`.
        Replays `ToolCallTracker` exactly, so a trainer can rebuild the sampling masks."""
        tr = ToolCallTracker(self)
        out = []
        for i, t in enumerate(ids):
            st = tr.state
            if st is not None:
                out.append((i, st))
            tr.observe(t)
        return out


class VocabTries:
    """The vocabulary as byte tries, built once per engine and shared by its grammars (a new
    tool set then costs its schema, not a pass over a 150k-token vocabulary): `trie` of every
    token, `hard` of the tokens a string state cannot take as plain bytes, `plain` the rest."""

    def __init__(self, token_bytes: list[bytes | None]):
        self.trie: dict = {}
        self.hard: dict = {}
        self.plain: list[int] = []
        for i, tb in enumerate(token_bytes):
            if not tb:
                continue
            _trie_add(self.trie, tb, i)
            if _plain(tb):
                self.plain.append(i)
            else:
                _trie_add(self.hard, tb, i)


class _LitSet:
    """A set of byte strings, sorted: the members starting with a prefix are one contiguous run
    (two bisections), so matching a 20,000-value enum costs O(log n) a byte instead of a scan
    (a scan made one mask 456 ms, `bench/tool_grammar.py --enum-sizes`: an engine stall any
    request could cause)."""

    def __init__(self, alts: tuple[bytes, ...]):
        self.sorted = sorted(set(alts))
        self.members = frozenset(alts)

    def extensions(self, p: bytes) -> int:
        """How many members start with `p`."""
        lo = bisect.bisect_left(self.sorted, p)
        top = successor(p)
        hi = bisect.bisect_left(self.sorted, top) if top else len(self.sorted)
        return hi - lo


def _plain(tb: bytes) -> bool:
    """Whether a token can sit anywhere inside a JSON string and leave its state unchanged:
    no quote, backslash or control byte, and whole UTF-8 characters only."""
    if any(c < 0x20 or c in (0x22, 0x5C) for c in tb):
        return False
    try:
        tb.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _trie_add(trie: dict, data: bytes, tid: int) -> None:
    node = trie
    for b in data:
        node = node.setdefault(b, {})
    node.setdefault(-1, []).append(tid)


class ToolCallTracker:
    """Where one generation stands: `state` None outside a call, else the automaton state the
    next token is drawn in. A token the grammar refuses (only a token the engine forced, such as
    a reasoning-budget `</think>`) ends the constraint for that call (`broken` counts it).
    `pending` (a required call, `tool_choice: "required"` or a named tool): until the first
    `<tool_call>`, the engine allows that token only (outside reasoning: `Engine._constrain`)."""

    def __init__(self, grammar: ToolCallGrammar, require: bool = False):
        self.g = grammar
        self.state: tuple | None = None
        self.pending = bool(require)
        self.calls = 0
        self.broken = 0

    def observe(self, tid: int) -> None:
        if self.state is None:
            if tid == self.g.start_id:
                self.state = self.g.initial
                self.pending = False
                self.calls += 1
            return
        nxt = self.g.advance(self.state, tid)
        if nxt is None:
            self.broken += 1
            self.state = None
        else:
            self.state = nxt or None

    def mask(self, device: torch.device | str = "cpu") -> torch.Tensor | None:
        """The allowed tokens now: the call's grammar inside one, only `<tool_call>` while a
        required call is pending, None (unconstrained) otherwise."""
        if self.state is not None:
            return self.g.mask(self.state, device)
        if self.pending:
            return self.g.start_mask(device)
        return None


def grammar_for(
    cache: OrderedDict[str, ToolCallGrammar],
    tools: list[dict[str, Any]],
    token_bytes: list[bytes | None],
    start_id: int,
    end_id: int,
    vocab: VocabTries | None = None,
) -> ToolCallGrammar:
    """The grammar of `tools` from `cache` (one per engine: its vocabulary is fixed), built on
    first use: episodes and requests with the same tools share one mask cache. Raises
    ValueError for schemas that are not function tools."""
    key = json.dumps(tools, sort_keys=True, default=str)
    g = cache.get(key)
    if g is None:
        g = ToolCallGrammar(tools, token_bytes, start_id, end_id, vocab=vocab)
        cache[key] = g
        if len(cache) > 8:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return g
