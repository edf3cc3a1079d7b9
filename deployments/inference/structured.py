"""Structured output: JSON schemas and JSON mode as xgrammar token bitmasks, made budget-aware.

`GrammarCompiler` turns a response_format (or a tool-call schema) into a compiled grammar, cached by schema.
`GrammarConstraint` is the per-request `TokenConstraint` the engine applies at every step. When the remaining
token budget comes close to what the shortest way of closing the structure costs, it steers decoding down that
path, so the output parses even when generation stops for length (vLLM cuts such output mid-string).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

import torch

from serve.errors import InvalidRequestError

_STRUCTURAL = set('"{}[],:')


class JsonDepth:
    """How far a JSON prefix is from closed: open containers plus an open string (a cheap lower bound)."""

    __slots__ = ("stack", "in_string", "escape")

    def __init__(self) -> None:
        self.stack = 0
        self.in_string = False
        self.escape = False

    def copy(self) -> JsonDepth:
        c = JsonDepth()
        c.stack, c.in_string, c.escape = self.stack, self.in_string, self.escape
        return c

    def feed(self, text: str) -> JsonDepth:
        for ch in text:
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif ch == "\\":
                    self.escape = True
                elif ch == '"':
                    self.in_string = False
            elif ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.stack += 1
            elif ch in "}]":
                self.stack -= 1
        return self

    @property
    def cost(self) -> int:
        return self.stack + int(self.in_string)


def _rank(s: str) -> int:
    """Tie-break among tokens that leave the structure equally open: close > separate > digit > open."""
    if set(s) <= set('"}]'):
        return 0
    if set(s) <= set('",:}]'):
        return 1
    if s.isdigit():
        return 2
    return 3


class GrammarCompiler:
    """Compiles response formats for one tokenizer; compiled grammars are cached by canonical schema text."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int], cache_size: int = 256):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.stop_token_ids = stop_token_ids
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._compiler = None
        self._strings: list[str] | None = None
        self._candidates: torch.Tensor | None = None

    def _xgr(self):
        import xgrammar as xgr

        if self._compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab_size,
                                                      stop_token_ids=self.stop_token_ids)
            self._compiler = xgr.GrammarCompiler(info)
        return xgr, self._compiler

    def token_strings(self) -> list[str]:
        if self._strings is None:
            special = set(self.tokenizer.all_special_ids)
            n = min(len(self.tokenizer), self.vocab_size)
            strings = [self.tokenizer.decode([i]) if i not in special else "" for i in range(n)]
            self._strings = strings + [""] * (self.vocab_size - n)
        return self._strings

    def closing_candidates(self) -> torch.Tensor:
        """Token ids worth trying when closing a structure: structural characters only, or a single digit."""
        if self._candidates is None:
            ids = [i for i, t in enumerate(self.token_strings())
                   if t and (set(t) <= _STRUCTURAL or (len(t) == 1 and t.isdigit()))]
            self._candidates = torch.tensor(ids, dtype=torch.long)
        return self._candidates

    def compile(self, schema: dict[str, Any] | None, param: str = "response_format") -> Any:
        """schema None: any JSON value (json_object mode). Raises InvalidRequestError naming the problem."""
        key = "json" if schema is None else json.dumps(schema, sort_keys=True)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            xgr, compiler = self._xgr()
            if schema is None:
                compiled = compiler.compile_builtin_json_grammar()
            else:
                check_json_schema(schema, param)
                try:
                    # compact separators, no free whitespace: small models otherwise loop on whitespace
                    compiled = compiler.compile_json_schema(schema, any_whitespace=False, separators=(",", ":"),
                                                            strict_mode=True)
                except Exception as e:  # xgrammar raises RuntimeError with the converter's reason
                    reason = str(e).split("] ", 1)[-1].split(": ", 1)[-1]
                    raise InvalidRequestError(f"unsupported JSON schema: {reason}", param=param,
                                              code="invalid_json_schema") from None
            self._cache[key] = compiled
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return compiled

    def compile_regex(self, pattern: str, param: str) -> Any:
        """Output constrained to a regular expression (e.g. a guard model's verdict)."""
        return self._compile_text("regex", pattern, param)

    def compile_grammar(self, ebnf: str, param: str) -> Any:
        """Output constrained to an EBNF grammar (GBNF syntax, `root` rule first)."""
        return self._compile_text("grammar", ebnf, param)

    def _compile_text(self, kind: str, text: str, param: str) -> Any:
        key = f"{kind}:{text}"
        with self._lock:
            if key not in self._cache:
                _, compiler = self._xgr()
                try:
                    compile_fn = compiler.compile_regex if kind == "regex" else compiler.compile_grammar
                    self._cache[key] = compile_fn(text)
                except Exception as e:
                    raise InvalidRequestError(f"invalid {param}: {str(e).split('] ', 1)[-1]}", param=param,
                                              code=f"invalid_{kind}") from None
            return self._cache[key]

    def constraint(self, compiled: Any) -> GrammarConstraint:
        return GrammarConstraint(compiled, self)


def check_json_schema(schema: Any, param: str) -> None:
    import jsonschema

    if not isinstance(schema, dict):
        raise InvalidRequestError("the JSON schema must be an object", param=param, code="invalid_json_schema")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path)
        raise InvalidRequestError(f"invalid JSON schema{' at ' + where if where else ''}: {e.message}",
                                  param=param, code="invalid_json_schema") from None


def _unpack(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    # bitmask: [1, ceil(V/32)] int32 -> bool [V]
    bits = (bitmask[0].unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
    return bits.flatten()[:vocab_size].bool()


class GrammarConstraint:
    """Per-request grammar state: masks logits, advances on sampled tokens, closes the structure in budget."""

    CHECK_EVERY = 16
    MARGIN = 64  # within this many tokens of the closing path's length, structural tokens are checked

    def __init__(self, compiled: Any, compiler: GrammarCompiler):
        import xgrammar as xgr

        self._xgr = xgr
        self.matcher = xgr.GrammarMatcher(compiled)
        self.tokenizer = compiler.tokenizer
        self.vocab_size = compiler.vocab_size
        self.strings = compiler.token_strings()
        self.candidates = compiler.closing_candidates()
        self.bitmask = xgr.allocate_token_bitmask(1, self.vocab_size)
        self.depth = JsonDepth()
        self._close_len: int | None = None
        self._path: list[int] | None = None
        self._steps = 0
        self._done = False

    def _allowed(self, matcher: Any) -> torch.Tensor:
        matcher.fill_next_token_bitmask(self.bitmask)
        return _unpack(self.bitmask, self.vocab_size)

    def _pick(self, matcher: Any, depth: JsonDepth) -> int | None:
        """The next token on a short way to close: least open structure after it, then by kind and length."""
        allowed = self._allowed(matcher)
        cands = self.candidates[allowed[self.candidates]].tolist()
        if cands:
            return min(cands, key=lambda t: (depth.copy().feed(self.strings[t]).cost, _rank(self.strings[t]),
                                             len(self.strings[t])))
        ids = allowed.nonzero().flatten().tolist()  # letters of an enum value, true/false/null, ...
        ids = [t for t in ids if self.strings[t].strip()]
        return max(ids, key=lambda t: len(self.strings[t])) if ids else None

    def closing_path(self, limit: int) -> list[int] | None:
        """Tokens of a short way to complete the structure from here (None if longer than `limit`)."""
        m, depth = self.matcher.fork(), self.depth.copy()
        path: list[int] = []
        while not m.is_completed():
            if len(path) >= limit:
                return None
            forced = m.find_jump_forward_string()  # e.g. the rest of a required key: take it whole
            toks = self.tokenizer.encode(forced, add_special_tokens=False) if forced else []
            trial = m.fork()
            if toks and all(trial.accept_token(t) for t in toks):
                m = trial
            else:
                tok = self._pick(m, depth)
                if tok is None or not m.accept_token(tok):
                    return None
                toks = [tok]
            for t in toks:
                depth.feed(self.strings[t])
            path.extend(toks)
        return path

    def _forced(self, remaining: int) -> int | None:
        """Refresh the way out (every CHECK_EVERY steps, and at every step near the budget); the token that must
        come next when only the closing path still fits, else None."""
        self._path = None
        if self._close_len is None or self._steps % self.CHECK_EVERY == 0 or remaining <= self._close_len + 1:
            self._path = self.closing_path(limit=max(remaining, 1) + 64)
            if self._path is not None:
                self._close_len = len(self._path)
        self._steps += 1
        return self._path[0] if self._path and len(self._path) >= remaining else None

    def apply(self, logits: torch.Tensor, remaining: int) -> None:
        """Mask `logits` ([V], in place) to the grammar; with `remaining` tokens left, force the closing path."""
        forced = self._forced(remaining)
        if forced is not None:
            logits.fill_(float("-inf"))
            logits[forced] = 0.0
            return
        self.matcher.fill_next_token_bitmask(self.bitmask)
        self._xgr.apply_token_bitmask_inplace(logits.unsqueeze(0), self.bitmask.to(logits.device))

    def confirm(self, token_id: int, remaining: int) -> int:
        """The token to emit: the sampled one, unless near the budget it would leave no room to close.

        One token can lengthen the way out a lot (`},{"` opens an array item with required keys), so near the
        budget every token that may change the structure is checked by closing the structure after it.
        """
        if self._close_len is None or remaining > self._close_len + self.MARGIN:
            return token_id
        text = self.strings[token_id]
        if self.depth.in_string and not any(c in text for c in '"\\\ufffd'):
            return token_id  # more string content (whole characters): the way out stays the same
        m, depth = self.matcher.fork(), self.depth.copy()
        saved = self.matcher, self.depth
        try:
            if m.accept_token(token_id):
                self.matcher, self.depth = m, depth.feed(text)
                after = [] if m.is_completed() else self.closing_path(limit=remaining)
            else:
                after = None
        finally:
            self.matcher, self.depth = saved
        if after is not None and 1 + len(after) <= remaining:
            self._close_len = len(after)
            return token_id
        path = self._path or self.closing_path(limit=remaining + 64)
        return path[0] if path else token_id

    def follow(self, token_id: int, remaining: int) -> list[int]:
        """For engines that mask by the same grammar themselves (vLLM): the tokens to emit for the engine's
        `token_id` with `remaining` tokens of budget. [token_id] while the structure can still close in time;
        otherwise the closing path, after which the caller ends the request (the engine's own continuation is
        dropped). Emitted tokens still go through `advance`."""
        forced = self._forced(remaining)
        tok = forced if forced is not None else self.confirm(token_id, remaining)
        if tok == token_id:
            return [token_id]
        return self.closing_path(limit=remaining) or [tok]

    def advance(self, token_id: int) -> None:
        if not self.matcher.is_terminated():
            self.matcher.accept_token(token_id)
            self.depth.feed(self.strings[token_id])
        if self.matcher.is_terminated():
            self._done = True
        elif self.matcher.is_completed():
            # complete, and nothing but a stop token may follow (e.g. after the closing brace)
            allowed = self._allowed(self.matcher)
            stops = self.matcher.stop_token_ids
            only_stop = int(allowed.sum()) == sum(1 for s in stops if 0 <= s < self.vocab_size and allowed[s])
            self._done = only_stop

    def is_terminated(self) -> bool:
        return self._done
