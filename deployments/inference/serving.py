"""The OpenAI layer over any engine: chat/completions and completions, streamed or not.

Requests come in as protocol models; prompts are built with the model's chat template; engine token streams
become text through the incremental detokenizer and stop-string matcher; responses and SSE chunks are plain
dicts in the OpenAI shapes. Nothing here depends on which engine runs underneath.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from deployments.inference.chat_template import encode_prompt, render_chat_prompt, to_template_messages
from deployments.inference.detokenizer import IncrementalDetokenizer, StopStringMatcher
from deployments.inference.engine import Engine, EngineRequest
from deployments.inference.sampling import OutputGrammar, SampledToken, SamplingParams
from deployments.inference.stream_fold import fold_chat, fold_completion
from deployments.inference.structured import GrammarCompiler
from deployments.inference.tool_calls import (
    ToolSpec,
    call_schema,
    history_for_template,
    parse_tools,
    resolve_tool_choice,
    template_supports_tools,
    tools_system_prompt,
)
from deployments.inference.tool_stream import ToolCallStream
from serve.errors import InvalidRequestError
from serve.ids import new_id
from serve.protocol.openai_chat import (
    ChatCompletionRequest,
    CompletionRequest,
    _SamplingFields,
    now,
)
from serve.telemetry.genai import observe_generation


@dataclass
class ChoiceDelta:
    index: int
    text: str
    tokens: list[SampledToken] = field(default_factory=list)
    finish_reason: str | None = None
    stop_string: str | None = None  # the stop string that ended the choice, if one did
    cached_tokens: int = 0  # prompt tokens the engine found in its prefix cache


@dataclass
class _Job:
    """One prompt, its n choices' sampling parameters, and the tools it may call."""

    prompt_ids: list[int]
    params: list[SamplingParams]
    first_index: int
    tools: list[ToolSpec] = field(default_factory=list)
    tool_mode: str = "none"


class OpenAIServing:
    def __init__(self, engine: Engine, tokenizer: Any, model_id: str, default_max_tokens: int | None = None):
        self.engine = engine
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.default_max_tokens = default_max_tokens  # the budget of a request that names none
        self.grammars = GrammarCompiler(tokenizer, engine.vocab_size, engine.eos_token_ids)

    # ---- request -> engine parameters --------------------------------------------------------------------

    def _sampling(self, req: _SamplingFields, max_tokens: int, logprobs: int | None) -> list[SamplingParams]:
        bias: dict[int, float] = {}
        for key, value in (req.logit_bias or {}).items():
            tok = int(key)
            if not 0 <= tok < self.engine.vocab_size:
                raise InvalidRequestError(f"logit_bias token id {tok} is outside the vocabulary", param="logit_bias")
            bias[tok] = value
        return [
            SamplingParams(
                max_tokens=max_tokens,
                temperature=1.0 if req.temperature is None else req.temperature,
                top_p=1.0 if req.top_p is None else req.top_p,
                top_k=req.top_k or 0,
                seed=None if req.seed is None else req.seed + i,
                presence_penalty=req.presence_penalty,
                frequency_penalty=req.frequency_penalty,
                repetition_penalty=req.repetition_penalty,
                logit_bias=bias,
                logprobs=logprobs,
                ignore_eos=req.ignore_eos,
                stop_token_ids=list(req.stop_token_ids or []),
            )
            for i in range(req.n)
        ]

    def _budget(self, prompt_len: int, requested: int | None, param: str) -> int:
        room = self.engine.max_model_len - prompt_len
        if room <= 0:
            raise InvalidRequestError(
                f"the prompt is {prompt_len} tokens, which leaves no room in the model's context length of "
                f"{self.engine.max_model_len} tokens", param="messages", code="context_length_exceeded")
        if requested is None:
            return room if self.default_max_tokens is None else min(room, self.default_max_tokens)
        if requested > room:
            raise InvalidRequestError(
                f"{param}={requested} is too large: the prompt is {prompt_len} tokens and the model's context "
                f"length is {self.engine.max_model_len} tokens", param=param, code="context_length_exceeded")
        return requested

    def _chat_prompt(self, req: ChatCompletionRequest) -> tuple[list[int], list[ToolSpec], str, str | None]:
        """The prompt's token ids as the chat template renders the request (tools included), the tools, and the
        tool choice: (ids, specs, mode, function name)."""
        specs = parse_tools(req.tools)
        mode, name = resolve_tool_choice(req.tool_choice, specs)
        native = template_supports_tools(self.tokenizer)
        messages = history_for_template(to_template_messages(req.messages), native)
        template_tools = None
        if mode != "none" and specs:
            if native:
                template_tools = [s.as_openai() for s in specs]
            else:
                messages = _with_system(messages, tools_system_prompt(specs), req.system_message_behavior)
        ids = encode_prompt(self.tokenizer, render_chat_prompt(self.tokenizer, messages, template_tools))
        return ids, specs, mode, name

    async def count_tokens(self, req: ChatCompletionRequest) -> int:
        """How many tokens the prompt of `req` is: exactly what a chat request with it would prefill."""
        return len(self._chat_prompt(req)[0])

    async def _chat_job(self, req: ChatCompletionRequest) -> _Job:
        ids, specs, mode, name = self._chat_prompt(req)
        param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
        budget = self._budget(len(ids), req.output_budget(), param)
        logprobs = (req.top_logprobs or 0) if req.logprobs else None
        params = self._sampling(req, budget, logprobs)
        self._constrain(params, await self._grammar(req, specs, mode, name), budget, param)
        return _Job(ids, params, 0, specs, mode)

    def _constrain(self, params: list[SamplingParams], compiled_grammar: tuple[Any, OutputGrammar | None],
                   budget: int, param: str) -> None:
        """Give each choice the output grammar, if any; a budget too small for any valid output is a 400."""
        compiled, grammar = compiled_grammar
        if compiled is None:
            return
        for p in params:
            p.constraint, p.grammar = self.grammars.constraint(compiled), grammar
        if params[0].constraint.closing_path(limit=budget) is None:
            raise InvalidRequestError(
                f"{param}={budget} is too small for any output that satisfies the required format",
                param=param, code="max_tokens_too_small")

    async def _grammar(self, req: _SamplingFields, specs: list[ToolSpec], mode: str,
                       name: str | None) -> tuple[Any, OutputGrammar | None]:
        """The compiled grammar the output must follow, if any (a forced tool call or a response_format), and what
        it is, for engines that apply grammars themselves."""
        if mode in ("required", "named"):
            schema = call_schema(specs, mode, name)
            return (await asyncio.to_thread(self.grammars.compile, schema, "tools"),
                    OutputGrammar("json_schema", schema))
        if req.guided_regex is not None:
            return (await asyncio.to_thread(self.grammars.compile_regex, req.guided_regex, "guided_regex"),
                    OutputGrammar("regex", req.guided_regex))
        if req.guided_grammar is not None:
            return (await asyncio.to_thread(self.grammars.compile_grammar, req.guided_grammar, "guided_grammar"),
                    OutputGrammar("grammar", req.guided_grammar))
        fmt = req.response_format or {"type": "text"}
        kind = fmt.get("type")
        if kind == "text":
            return None, None
        if kind == "json_object":
            return await asyncio.to_thread(self.grammars.compile, None), OutputGrammar("json")
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise InvalidRequestError("response_format json_schema needs a 'schema' object",
                                          param="response_format.json_schema.schema")
            compiled = await asyncio.to_thread(self.grammars.compile, spec["schema"],
                                               "response_format.json_schema.schema")
            return compiled, OutputGrammar("json_schema", spec["schema"])
        raise InvalidRequestError(f"response_format type {kind!r} is not supported (text, json_object, json_schema)",
                                  param="response_format.type")

    async def _completion_jobs(self, req: CompletionRequest) -> list[_Job]:
        if req.suffix:
            raise InvalidRequestError("suffix is not supported", param="suffix")
        if req.best_of is not None and req.best_of != req.n:
            raise InvalidRequestError("best_of other than n is not supported", param="best_of")
        grammar = await self._grammar(req, [], "none", None)  # response_format / guided_*: one per request
        jobs = []
        for i, p in enumerate(req.prompts()):
            if isinstance(p, str):
                ids = list(self.tokenizer.encode(p, add_special_tokens=True))
            else:
                bad = [t for t in p if not 0 <= t < self.engine.vocab_size]
                if bad:
                    raise InvalidRequestError(f"prompt token id {bad[0]} is outside the vocabulary", param="prompt")
                ids = p
            if not ids:
                raise InvalidRequestError("the prompt is empty", param="prompt")
            budget = self._budget(len(ids), req.max_tokens, "max_tokens")
            params = self._sampling(req, budget, req.logprobs)
            self._constrain(params, grammar, budget, "max_tokens")
            jobs.append(_Job(ids, params, i * req.n))
        return jobs

    # ---- engine streams -> choice deltas ---------------------------------------------------------------

    async def _choice(self, index: int, prompt_ids: list[int], params: SamplingParams,
                      stops: list[str] | None) -> AsyncIterator[ChoiceDelta]:
        detok = IncrementalDetokenizer(self.tokenizer)
        matcher = StopStringMatcher(stops)
        request = EngineRequest(f"{index}-{uuid.uuid4().hex[:12]}", prompt_ids, params)
        async with aclosing(observe_generation(self.engine.generate(request), index)) as stream:
            async for out in stream:
                text = "".join(matcher.feed(detok.add(t.token_id)) for t in out.tokens)
                if matcher.stopped:
                    yield ChoiceDelta(index, text, out.tokens, "stop", matcher.matched,
                                      out.num_cached_tokens)
                    return  # closing the engine stream aborts the request and frees its slot
                if out.finish_reason is not None:
                    text += matcher.flush()
                yield ChoiceDelta(index, text, out.tokens, out.finish_reason,
                                  cached_tokens=out.num_cached_tokens)

    async def _merged(self, jobs: list[_Job], stops: list[str] | None) -> AsyncIterator[ChoiceDelta]:
        """Interleave every choice of every job as deltas arrive; closing this closes them all."""
        streams = [self._choice(job.first_index + i, job.prompt_ids, p, stops)
                   for job in jobs for i, p in enumerate(job.params)]
        if len(streams) == 1:
            async with aclosing(streams[0]) as s:
                async for d in s:
                    yield d
            return
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(stream: AsyncIterator[ChoiceDelta]) -> None:
            try:
                async with aclosing(stream) as s:
                    async for d in s:
                        await queue.put(d)
            except Exception as e:
                await queue.put(e)
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(pump(s)) for s in streams]
        try:
            remaining = len(tasks)
            while remaining:
                item = await queue.get()
                if item is None:
                    remaining -= 1
                elif isinstance(item, Exception):
                    raise item
                else:
                    yield item
        finally:
            for t in tasks:
                t.cancel()

    # ---- chat ---------------------------------------------------------------------------------------------
    # A whole response is the fold of the stream (stream_fold.py): one code path for tool calls, stop strings,
    # logprobs and usage, so streamed and non-streamed answers cannot drift apart.

    async def chat(self, req: ChatCompletionRequest) -> dict[str, Any]:
        async with aclosing(self._chat_chunks(req, include_usage=True)) as chunks:
            return fold_chat([c async for c in chunks], logprobs=bool(req.logprobs))

    def chat_stream(self, req: ChatCompletionRequest) -> AsyncIterator[dict[str, Any]]:
        opts = req.stream_options
        return self._chat_chunks(req, bool(opts and opts.include_usage),
                                 bool(opts and opts.include_usage and opts.continuous_usage_stats))

    async def _chat_chunks(self, req: ChatCompletionRequest, include_usage: bool,
                           continuous: bool = False) -> AsyncIterator[dict[str, Any]]:
        job = await self._chat_job(req)  # validation errors surface before the first chunk
        cid, created = new_id("chatcmpl", "-"), now()
        n_out, cached = 0, {}

        def chunk(choices: list[dict], usage: dict | None = None) -> dict[str, Any]:
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": self.model_id,
                 "choices": choices}
            if continuous:  # vLLM's continuous_usage_stats: every chunk says what was used so far
                usage = usage or _usage([job], req.n, n_out, cached)
            if include_usage:
                c["usage"] = usage
            return c

        for i in range(req.n):
            yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                          "finish_reason": None}])
        parallel = req.parallel_tool_calls is not False
        tool_streams = [ToolCallStream(job.tools, job.tool_mode, parallel) for _ in range(req.n)]
        async with aclosing(self._merged([job], req.stop)) as deltas:
            async for d in deltas:
                n_out += len(d.tokens)
                cached[d.index] = d.cached_tokens
                logprobs = {"content": [self._chat_logprob(t) for t in d.tokens]} if req.logprobs else None
                text = tool_streams[d.index].feed(d.text)
                if text or logprobs:
                    yield chunk([{"index": d.index, "delta": {"content": text}, "logprobs": logprobs,
                                  "finish_reason": None}])
                if d.finish_reason:
                    tail, reason = tool_streams[d.index].finish()
                    for delta in tail:
                        yield chunk([{"index": d.index, "delta": delta, "logprobs": None, "finish_reason": None}])
                    yield chunk([_finished(d, reason)])
        if include_usage:
            yield chunk([], _usage([job], req.n, n_out, cached))

    # ---- completions --------------------------------------------------------------------------------------

    async def completion(self, req: CompletionRequest) -> dict[str, Any]:
        async with aclosing(self._completion_chunks(req, include_usage=True)) as chunks:
            return fold_completion([c async for c in chunks], logprobs=req.logprobs is not None)

    def completion_stream(self, req: CompletionRequest) -> AsyncIterator[dict[str, Any]]:
        return self._completion_chunks(req, bool(req.stream_options and req.stream_options.include_usage))

    async def _completion_chunks(self, req: CompletionRequest, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
        jobs = await self._completion_jobs(req)
        cid, created = new_id("cmpl", "-"), now()

        def chunk(choices: list[dict], usage: dict | None = None) -> dict[str, Any]:
            c = {"id": cid, "object": "text_completion", "created": created, "model": self.model_id,
                 "choices": choices}
            if include_usage:
                c["usage"] = usage
            return c

        offsets = {}  # per choice: where its next token starts in its text (after the echoed prompt)
        for job in jobs:
            prefix = self._echo(req, job)
            for i in range(req.n):
                offsets[job.first_index + i] = len(prefix)
                if req.echo:
                    yield chunk([{"index": job.first_index + i, "text": prefix, "logprobs": None,
                                  "finish_reason": None}])
        n_out, cached = 0, {}
        async with aclosing(self._merged(jobs, req.stop)) as deltas:
            async for d in deltas:
                n_out += len(d.tokens)
                cached[d.index] = d.cached_tokens
                logprobs = None
                if req.logprobs is not None:
                    logprobs = self._completion_logprobs(d.tokens, offsets[d.index])
                    offsets[d.index] += sum(len(t) for t in logprobs["tokens"])
                yield chunk([{"index": d.index, "text": d.text, "logprobs": logprobs,
                              "finish_reason": d.finish_reason}])
        if include_usage:
            yield chunk([], _usage(jobs, req.n, n_out, cached))

    # ---- helpers ----------------------------------------------------------------------------------------------

    def _echo(self, req: CompletionRequest, job: _Job) -> str:
        return self.tokenizer.decode(job.prompt_ids, skip_special_tokens=False) if req.echo else ""

    def _token_str(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id], skip_special_tokens=False)

    def _chat_logprob(self, t: SampledToken) -> dict[str, Any]:
        s = self._token_str(t.token_id)
        return {"token": s, "logprob": t.logprob, "bytes": list(s.encode()),
                "top_logprobs": [{"token": (ts := self._token_str(i)), "logprob": lp, "bytes": list(ts.encode())}
                                 for i, lp in (t.top_logprobs or [])]}

    def _completion_logprobs(self, tokens: list[SampledToken], offset: int) -> dict[str, Any]:
        strs = [self._token_str(t.token_id) for t in tokens]
        offsets, pos = [], offset
        for s in strs:
            offsets.append(pos)
            pos += len(s)
        return {"tokens": strs, "token_logprobs": [t.logprob for t in tokens],
                "top_logprobs": [{self._token_str(i): lp for i, lp in (t.top_logprobs or [])} for t in tokens],
                "text_offset": offsets}


def _usage(jobs: list[_Job], n: int, n_out: int, cached: dict[int, int]) -> dict[str, Any]:
    """OpenAI usage: each prompt counts once however many choices it has; its cached tokens are the most any of
    its choices found in the prefix cache (choices admitted in one step all miss; later ones may hit)."""
    p = sum(len(j.prompt_ids) for j in jobs)
    hit = sum(max(cached.get(j.first_index + i, 0) for i in range(n)) for j in jobs)
    return {"prompt_tokens": p, "completion_tokens": n_out, "total_tokens": p + n_out,
            "prompt_tokens_details": {"cached_tokens": hit}}


def _finished(d: ChoiceDelta, tool_reason: str | None) -> dict[str, Any]:
    """A chat choice's last chunk: its finish reason (`tool_calls` when its text was a call), and, as vLLM's server
    does, the stop string that ended it in `stop_reason`."""
    out = {"index": d.index, "delta": {}, "logprobs": None, "finish_reason": tool_reason or d.finish_reason}
    if d.stop_string is not None and tool_reason is None:
        out["stop_reason"] = d.stop_string
    return out


FUNCTION_DEFINITIONS = "{{function_definitions}}"


def _with_system(messages: list[dict[str, Any]], text: str, behavior: str = "append") -> list[dict[str, Any]]:
    """The tool definitions `text` in the system message: appended to it, or (behavior "replace") only where it
    says {{function_definitions}}, the system message being the whole system prompt."""
    if messages and messages[0]["role"] == "system":
        own = messages[0]["content"]
        if behavior == "replace":
            content = own.replace(FUNCTION_DEFINITIONS, text)
        else:
            content = f"{own}\n\n{text}"
        return [{**messages[0], "content": content}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]

