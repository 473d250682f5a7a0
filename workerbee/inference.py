"""Serving one job with llama.cpp in process: chat, completions, embeddings.

`Engine.run` returns either one reply (a dict, sent as one frame) or an iterator
of stream chunks (sent one frame each, then `{}`), shaped as OpenAI and
llama-cpp-python shape them (reference §6). Every reply carries `usage` from the
tokens llama.cpp really evaluated and sampled; a stream carries it in its last
chunk, which Queenbee reads and strips.

One model is resident at a time, loaded on first use and replaced when a job
asks for another. Embeddings use a second llama.cpp context on the same file
(created in embedding mode with pooling, so each input gives one vector); the
weights are memory-mapped, so it shares them with the first.
"""

import dataclasses
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import structured
from .catalog import Places, resolve
from .generation import Generation, Sampling, TokenLogprob, stop_list
from .tools import CallStream, ToolPlan, could_be_call, stream_deltas, template_messages, transcript_call
from .verify import completion_tokens, eog_tokens, teacher_force

log = logging.getLogger(__name__)

Reply = dict[str, Any] | Iterator[dict[str, Any]]

# OpenAI's default for /v1/completions; chat has no limit but the context window.
COMPLETIONS_MAX_TOKENS = 16
# The job that scores another worker's completion (see verify.py); not an OpenAI URL.
VERIFY_URL = "/queenbee/verify"
VERIFIABLE_URLS = ("/v1/chat/completions", "/v1/completions")


class UnsupportedJob(ValueError):
    """A job this worker does not serve (it never advertised the capability)."""


@dataclass(frozen=True)
class LlamaSettings:
    ctx_size: int = 4096
    threads: int = 0
    gpu_layers: int = -2  # see Config.gpu_layers
    main_gpu: int = 0
    tensor_split: str = ""

    def kwargs(self) -> dict[str, Any]:
        import llama_cpp

        layers = self.gpu_layers
        if layers == -2:
            layers = -1 if llama_cpp.llama_supports_gpu_offload() else 0
        return {
            "n_ctx": self.ctx_size,
            "n_threads": self.threads or None,
            "n_threads_batch": self.threads or None,
            "n_gpu_layers": layers,
            "main_gpu": self.main_gpu,
            "tensor_split": [float(x) for x in self.tensor_split.split(",")] if self.tensor_split else None,
            "verbose": False,
        }


@dataclass(frozen=True)
class ChatPrompt:
    text: str
    stop: list[str]
    has_bos: bool  # the template wrote the BOS token itself


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def continues_final_message(req: dict[str, Any]) -> bool:
    """A continuation job (Queenbee's "continue" feature, vLLM's field names): the
    final assistant message is the start of the answer, to be continued in
    place, with no new generation prompt."""
    messages = req.get("messages") or []
    return bool(req.get("continue_final_message")) and bool(messages) and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant"


def fallback_chat_prompt(messages: list[dict[str, Any]], *, tools: ToolPlan | None = None, continue_final: bool = False) -> ChatPrompt:
    """A plain transcript for models without a chat template (usually base models).

    Tools are described in the system text before it, and calls the assistant
    made are written the way it is asked to write them (tools.py). Continuing
    the final assistant message gives exactly the prompt its start was generated
    from followed by that start, so the text reads on."""
    if continue_final:
        head = fallback_chat_prompt(messages[:-1], tools=tools)
        return ChatPrompt(head.text + _text(messages[-1].get("content")), head.stop, has_bos=False)
    lines = [f"{tools.instructions()}\n"] if tools else []
    for m in messages:
        role = m.get("role", "user")
        text = _text(m.get("content"))
        if role in ("system", "developer"):
            lines.append(f"{text}\n")
        elif role in ("tool", "function"):
            lines.append(f"Tool result: {text}")
        elif role == "assistant":
            calls = [transcript_call(c) for c in m.get("tool_calls") or () if isinstance(c, dict)]
            lines.append(f"Assistant: {' '.join([text, *calls]).strip() if calls else text}")
        else:
            lines.append(f"User: {text}")
    return ChatPrompt("\n".join(lines) + "\nAssistant:", ["\nUser:"], has_bos=False)


def continued_transcript(rendered: str, content: str) -> str:
    """A chat template's transcript cut right after the final message's text, so
    that the model continues that message instead of closing its turn (what
    vLLM does for `continue_final_message`). Templates that trim messages lose
    the text's trailing whitespace, which is put back."""
    for needle in (content, content.rstrip(), content.strip()):
        if needle and (at := rendered.rfind(needle)) >= 0:
            cut = rendered[: at + len(needle)]
            return cut if needle == content else cut + content[len(content.rstrip()):]
    raise ValueError("the chat template does not show the message to continue")


class Engine:
    def __init__(self, *, places: Places, settings: LlamaSettings, should_stop: Callable[[], bool] = lambda: False):
        self.places = places
        self.settings = settings
        self.should_stop = should_stop
        self.loaded_name: str | None = None
        self._path: Path | None = None
        self._llm: Any = None
        self._embedder: Any = None
        self._eog: list[int] | None = None  # the loaded model's end-of-generation tokens, for verify

    # --- Models --------------------------------------------------------------

    def _load(self, name: str, *, embedding: bool = False) -> Any:
        path = resolve(name, self.places)
        if path != self._path:
            self.unload()
            self._path = path
        if embedding and self._embedder is None:
            self._embedder = self._open(path, embedding=True)
        if not embedding and self._llm is None:
            self._llm = self._open(path, embedding=False)
        self.loaded_name = name
        return self._embedder if embedding else self._llm

    def _open(self, path: Path, *, embedding: bool) -> Any:
        import llama_cpp

        started = time.monotonic()
        kwargs = self.settings.kwargs()
        if embedding:
            # One vector per input: mean pooling unless the model names its own.
            kwargs.update(embedding=True, n_batch=min(self.settings.ctx_size, 2048), n_ubatch=min(self.settings.ctx_size, 2048))
            kwargs["pooling_type"] = llama_cpp.LLAMA_POOLING_TYPE_MEAN
            llm = llama_cpp.Llama(str(path), **kwargs)
            if any(k.endswith(".pooling_type") and v not in ("0", "") for k, v in llm.metadata.items()):
                llm.close()
                kwargs["pooling_type"] = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED
                llm = llama_cpp.Llama(str(path), **kwargs)
        else:
            llm = llama_cpp.Llama(str(path), **kwargs)
        log.info("loaded %s%s in %.1fs", path.name, " for embeddings" if embedding else "", time.monotonic() - started)
        return llm

    def unload(self) -> None:
        for llm in (self._llm, self._embedder):
            if llm is not None:
                llm.close()
        self._llm = self._embedder = self._path = self.loaded_name = self._eog = None

    # --- Jobs ------------------------------------------------------------------

    def run(self, openai_url: str, req: dict[str, Any]) -> Reply:
        """Serve one job envelope; raises on failure (the caller sends the error frame)."""
        if not isinstance(req.get("model"), str):
            raise ValueError("openai_req.model must be a model name")
        if openai_url == "/v1/chat/completions":
            return self.chat(req)
        if openai_url == "/v1/completions":
            return self.completions(req)
        if openai_url == "/v1/embeddings":
            return self.embeddings(req)
        if openai_url == VERIFY_URL:
            return self.verify(req)
        raise UnsupportedJob(f"This worker does not serve {openai_url}")

    def chat(self, req: dict[str, Any]) -> Reply:
        """A chat completion: `n` choices, each of them text or tool calls (tools.py),
        under the grammar `response_format` or a forced tool call asks for (structured.py)."""
        llm = self._load(req["model"])
        plan = ToolPlan.from_request(req)
        prompt = self._chat_prompt(llm, req.get("messages") or [], tools=plan, continue_final=continues_final_message(req))
        tokens = self._chat_tokens(llm, prompt)
        grammar = self._grammar(llm, req, plan)
        logprobs = (req.get("top_logprobs") or 0) if req.get("logprobs") else None
        generations = [
            Generation(
                llm,
                tokens,
                max_tokens=req.get("max_completion_tokens") or req.get("max_tokens"),
                stop=stop_list(req.get("stop")) + prompt.stop,
                sampling=sampling,
                should_stop=self.should_stop,
                grammar=grammar,
                logprobs=logprobs,
            )
            for sampling in choice_samplings(req)
        ]
        reply = Shape(req["model"], "chatcmpl", "chat.completion")
        if req.get("stream"):
            return self._chat_stream(generations, reply, plan)
        choices = [self._chat_choice(i, generation, plan) for i, generation in enumerate(generations)]
        return reply.body(choices, usage(len(tokens), sum(g.completion_tokens for g in generations)))

    @staticmethod
    def _chat_choice(index: int, generation: Generation, plan: ToolPlan | None) -> dict[str, Any]:
        text = "".join(generation)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        finish, logprobs = generation.finish_reason, chat_logprobs(generation.take_logprobs()) if generation.logprobs is not None else None
        calls = plan.parse(text) if plan else []
        if calls:
            message = {"role": "assistant", "content": None, "tool_calls": [c.as_dict() for c in calls]}
            finish = plan.finish_reason() if finish == "stop" else finish
            logprobs = None  # OpenAI reports logprobs of content only
        return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}

    def _grammar(self, llm: Any, req: dict[str, Any], plan: ToolPlan | None) -> Any:
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        schema = plan.call_schema() if plan else None
        if schema is not None:
            return structured.schema_grammar(schema, vocab=vocab, field="tools")
        return structured.response_format_grammar(req.get("response_format"), vocab=vocab)

    def _chat_stream(self, generations: list[Generation], reply: "Shape", plan: ToolPlan | None) -> Iterator[dict[str, Any]]:
        # The role chunk waits for the first token, so that Queenbee's first-token
        # timeout and its first-token timing cover the prompt's evaluation too.
        for index, generation in enumerate(generations):
            role = [reply.chunk([{"index": index, "delta": {"role": "assistant"}, "logprobs": None, "finish_reason": None}])]
            if plan and plan.mode != "auto":
                pieces = self._forced_call_deltas(index, generation, reply, plan, role)
            elif plan:
                pieces = self._auto_deltas(index, generation, reply, plan, role)
            else:
                pieces = self._content_deltas(index, generation, reply, role)
            finish = yield from pieces
            yield from role
            last = reply.chunk([{"index": index, "delta": {}, "logprobs": None, "finish_reason": finish}])
            if index == len(generations) - 1:
                last["usage"] = usage(len(generation.prompt_tokens), sum(g.completion_tokens for g in generations))
            yield last

    @staticmethod
    def _content_deltas(index: int, generation: Generation, reply: "Shape", role: list, *, before: str = "") -> Iterator[dict[str, Any]]:
        """Content chunks, each with the logprobs of its tokens; returns the finish reason."""
        pieces = itertools.chain([before] if before else [], generation)
        for text in pieces:
            yield from role
            role.clear()
            logprobs = chat_logprobs(generation.take_logprobs()) if generation.logprobs is not None else None
            yield reply.chunk([{"index": index, "delta": {"content": text}, "logprobs": logprobs, "finish_reason": None}])
        return generation.finish_reason

    @staticmethod
    def _forced_call_deltas(index: int, generation: Generation, reply: "Shape", plan: ToolPlan, role: list) -> Iterator[dict[str, Any]]:
        """A call the grammar forces, streamed as it is generated."""
        call = CallStream()
        for text in generation:
            yield from role
            role.clear()
            deltas = call.feed(text)
            if deltas:
                yield reply.chunk([{"index": index, "delta": {"tool_calls": deltas}, "logprobs": None, "finish_reason": None}])
        deltas = call.finish()
        if deltas:
            yield reply.chunk([{"index": index, "delta": {"tool_calls": deltas}, "logprobs": None, "finish_reason": None}])
        return plan.finish_reason() if generation.finish_reason == "stop" and call.name else generation.finish_reason

    def _auto_deltas(self, index: int, generation: Generation, reply: "Shape", plan: ToolPlan, role: list) -> Iterator[dict[str, Any]]:
        """Text streams as it comes, unless its start may be a call: then it is read whole."""
        text, pieces = "", iter(generation)
        for piece in pieces:
            yield from role
            role.clear()
            text += piece
            if not could_be_call(text):
                return (yield from self._content_deltas(index, _Rest(generation, pieces), reply, role, before=text))
        calls = plan.parse(text)
        if not calls:
            return (yield from self._content_deltas(index, _Rest(generation, iter(())), reply, role, before=text))
        generation.take_logprobs()
        for delta in stream_deltas(calls):
            yield reply.chunk([{"index": index, "delta": {"tool_calls": [delta]}, "logprobs": None, "finish_reason": None}])
        return plan.finish_reason() if generation.finish_reason == "stop" else generation.finish_reason

    @staticmethod
    def _chat_tokens(llm: Any, prompt: ChatPrompt) -> list[int]:
        return llm.tokenize(prompt.text.encode("utf-8"), add_bos=not prompt.has_bos, special=True)

    @staticmethod
    def _prompt_tokens(llm: Any, prompt: str) -> list[int]:
        return llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def _chat_prompt(self, llm: Any, messages: list[dict[str, Any]], *, tools: ToolPlan | None = None, continue_final: bool = False) -> ChatPrompt:
        """The prompt as the model's own chat template writes it, tools included,
        without a generation prompt when its final assistant message is continued;
        the plain transcript for a model without one."""
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            return fallback_chat_prompt(messages, tools=tools, continue_final=continue_final)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def token_text(token: int) -> str:
            return llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

        formatter = Jinja2ChatFormatter(
            template=template, eos_token=token_text(llm.token_eos()), bos_token=token_text(llm.token_bos()),
            add_generation_prompt=not continue_final,
        )
        plain = [{**m, "content": _text(m.get("content"))} for m in template_messages(messages)]
        if tools and "tools" not in template:
            plain = with_system_text(plain, tools.instructions())  # a template that cannot show them
        result = formatter(messages=plain, tools=tools.template_tools if tools and "tools" in template else None)
        text = continued_transcript(result.prompt, plain[-1]["content"]) if continue_final else result.prompt
        return ChatPrompt(text, [], has_bos=bool(result.added_special))

    def completions(self, req: dict[str, Any]) -> Reply:
        """A text completion of each prompt, `n` choices each (choice p·n + j is prompt p's j-th)."""
        llm = self._load(req["model"])
        prompts = req.get("prompt")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts or [""])
        reply = Shape(req["model"], "cmpl", "text_completion")
        logprobs = req.get("logprobs") if isinstance(req.get("logprobs"), int) and not isinstance(req.get("logprobs"), bool) else None
        grammar = self._grammar(llm, req, None)
        runs = []  # (prompt, generation) per choice
        for prompt in prompts:
            tokens = self._prompt_tokens(llm, prompt)
            for sampling in choice_samplings(req):
                generation = Generation(
                    llm,
                    tokens,
                    max_tokens=req.get("max_tokens") or COMPLETIONS_MAX_TOKENS,
                    stop=stop_list(req.get("stop")),
                    sampling=sampling,
                    should_stop=self.should_stop,
                    grammar=grammar,
                    logprobs=logprobs,
                )
                runs.append((prompt, generation))
        echo = bool(req.get("echo"))
        if req.get("stream"):
            return self._completions_stream(runs, reply, echo=echo)
        choices = []
        for i, (prompt, generation) in enumerate(runs):
            head = prompt if echo else ""
            text = head + "".join(generation)
            lp = completion_logprobs(generation.take_logprobs(), offset=len(head)) if logprobs is not None else None
            choices.append({"index": i, "text": text, "logprobs": lp, "finish_reason": generation.finish_reason})
        return reply.body(choices, self._total_usage(runs))

    def _completions_stream(self, runs: list[tuple[str, Generation]], reply: "Shape", *, echo: bool) -> Iterator[dict[str, Any]]:
        for i, (prompt, generation) in enumerate(runs):
            offset = 0
            if echo and prompt:
                yield reply.chunk([{"index": i, "text": prompt, "logprobs": None, "finish_reason": None}])
                offset = len(prompt)
            for text in generation:
                lp = completion_logprobs(generation.take_logprobs(), offset=offset) if generation.logprobs is not None else None
                offset += len(text)
                yield reply.chunk([{"index": i, "text": text, "logprobs": lp, "finish_reason": None}])
            last = reply.chunk([{"index": i, "text": "", "logprobs": None, "finish_reason": generation.finish_reason}])
            if i == len(runs) - 1:
                last["usage"] = self._total_usage(runs)
            yield last

    @staticmethod
    def _total_usage(runs: list[tuple[str, Generation]]) -> dict[str, int]:
        """Each prompt counted once however many choices it has, as OpenAI counts."""
        prompts = {id(g.prompt_tokens): len(g.prompt_tokens) for _, g in runs}
        return usage(sum(prompts.values()), sum(g.completion_tokens for _, g in runs))

    def embeddings(self, req: dict[str, Any]) -> Reply:
        llm = self._load(req["model"], embedding=True)
        inputs = req.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        if not inputs or not all(isinstance(text, str) for text in inputs):
            raise ValueError("input must be a string or a list of strings")
        result = llm.create_embedding(inputs, model=req["model"])
        return {**result, "model": req["model"]}

    def verify(self, req: dict[str, Any]) -> Reply:
        """Score another worker's completion of `request` token by token (teacher forcing).

        The prompt is tokenized exactly as chat() or completions() would for the same
        request; the sampling fields of the request are ignored, since the scores are
        the model's raw distribution. Ending after the completion is scored over the
        ways a generation ends: an end-of-generation token, or the first token of a
        stop sequence (the request's, or the chat prompt's own).
        """
        request, completion, request_url = req.get("request"), req.get("completion"), req.get("request_url")
        if request_url not in VERIFIABLE_URLS:
            raise ValueError(f"request_url must be one of {', '.join(VERIFIABLE_URLS)}")
        if not isinstance(request, dict):
            raise ValueError("request must be the original request object")
        if not isinstance(completion, str):
            raise ValueError("completion must be a string")
        stops = stop_list(request.get("stop"))
        if request_url == "/v1/chat/completions":
            messages = request.get("messages")
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise ValueError("request.messages must be a list of messages")
            llm = self._load(req["model"])
            prompt = self._chat_prompt(llm, messages)
            prompt_tokens, stops = self._chat_tokens(llm, prompt), stops + prompt.stop
            templated = bool(llm.metadata.get("tokenizer.chat_template"))
        else:
            prompt = request.get("prompt") or ""
            if isinstance(prompt, list):
                prompt = prompt[0]  # the completion checked is choice 0
            if not isinstance(prompt, str):
                raise ValueError("request.prompt must be a string or a list of strings")
            llm = self._load(req["model"])
            prompt_tokens = self._prompt_tokens(llm, prompt)
            templated = True  # a text completion's prompt is the caller's own
        if self._eog is None:
            self._eog = eog_tokens(llm)
        ends = sorted(set(self._eog) | stop_starts(llm, stops, completion))
        result = teacher_force(llm, prompt_tokens, completion_tokens(llm, completion), ends=ends, should_stop=self.should_stop)
        return {"verification": {**result.as_dict(), "chat_template": templated}}


def stop_starts(llm: Any, stops: list[str], completion: str) -> set[int]:
    """The tokens that begin a stop sequence right after `completion`: each stop's
    first token, and where the completion already ends with the start of a stop
    (a token held "\n" and the stop is "\nUser:"), the first token of its rest."""
    rests = {stop[k:] for stop in stops for k in range(len(stop)) if completion.endswith(stop[:k])}
    return {tokens[0] for rest in rests if (tokens := completion_tokens(llm, rest))}


class _Rest:
    """What is left of a generation being iterated, standing in for it."""

    def __init__(self, generation: Generation, pieces: Iterator[str]):
        self._pieces = pieces
        self.logprobs = generation.logprobs
        self.take_logprobs = generation.take_logprobs
        self._generation = generation

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    @property
    def finish_reason(self) -> str:
        return self._generation.finish_reason


def choice_samplings(req: dict[str, Any]) -> list[Sampling]:
    """One Sampling per choice; with a `seed`, choice i samples with seed + i, so
    `n` choices differ and the same request gives the same choices again."""
    sampling = Sampling.from_request(req)
    n = req.get("n") or 1
    if sampling.seed is None:
        return [sampling] * n
    return [dataclasses.replace(sampling, seed=(sampling.seed + i) % 2**32) for i in range(n)]


def with_system_text(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if messages and messages[0].get("role") in ("system", "developer"):
        return [{**messages[0], "content": f"{text}\n\n{messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def chat_logprobs(entries: list[TokenLogprob]) -> dict[str, Any]:
    """Chat's `logprobs` object for some tokens of a choice."""

    def one(text: bytes, logprob: float) -> dict[str, Any]:
        return {"token": text.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(text)}

    return {"content": [{**one(e.text, e.logprob), "top_logprobs": [one(t, lp) for t, lp in e.top]} for e in entries], "refusal": None}


def completion_logprobs(entries: list[TokenLogprob], *, offset: int) -> dict[str, Any]:
    """The legacy completions' `logprobs` object, text offsets counted from `offset`."""
    tokens, offsets, tops = [], [], []
    for e in entries:
        top: dict[str, float] = {}
        for t, lp in e.top:  # best first; two tokens may read the same (a byte token and a character)
            top.setdefault(t.decode("utf-8", errors="replace"), lp)
        tops.append(top)
        offsets.append(offset)
        text = e.text.decode("utf-8", errors="replace")
        tokens.append(text)
        offset += len(text)
    return {
        "tokens": tokens,
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": tops,
        "text_offset": offsets,
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


class Shape:
    """The envelope fields shared by every chunk of one reply."""

    def __init__(self, model: str, prefix: str, object_name: str):
        self.base = {"id": f"{prefix}-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
        self.object_name = object_name

    def body(self, choices: list[dict[str, Any]], usage: dict[str, int]) -> dict[str, Any]:
        return {**self.base, "object": self.object_name, "choices": choices, "usage": usage}

    def chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        name = "chat.completion.chunk" if self.object_name == "chat.completion" else self.object_name
        return {**self.base, "object": name, "choices": choices}
