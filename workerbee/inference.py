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

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalog import Places, resolve
from .generation import Generation, Sampling, stop_list
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


def fallback_chat_prompt(messages: list[dict[str, Any]], *, continue_final: bool = False) -> ChatPrompt:
    """A plain transcript for models without a chat template (usually base models).

    Continuing the final assistant message gives exactly the prompt its start was
    generated from followed by that start, so the text reads on."""
    if continue_final:
        head = fallback_chat_prompt(messages[:-1])
        return ChatPrompt(head.text + _text(messages[-1].get("content")), head.stop, has_bos=False)
    lines = []
    for m in messages:
        role = m.get("role", "user")
        text = _text(m.get("content"))
        lines.append(f"{text}\n" if role in ("system", "developer") else f"{'Assistant' if role == 'assistant' else 'User'}: {text}")
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
        llm = self._load(req["model"])
        prompt = self._chat_prompt(llm, req.get("messages") or [], continue_final=continues_final_message(req))
        tokens = self._chat_tokens(llm, prompt)
        generation = Generation(
            llm,
            tokens,
            max_tokens=req.get("max_completion_tokens") or req.get("max_tokens"),
            stop=stop_list(req.get("stop")) + prompt.stop,
            sampling=Sampling.from_request(req),
            should_stop=self.should_stop,
        )
        reply = Shape(req["model"], "chatcmpl", "chat.completion")
        if req.get("stream"):
            return self._chat_stream(generation, reply)
        text = "".join(generation)
        return reply.body(
            [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": generation.finish_reason}],
            usage(len(tokens), generation.completion_tokens),
        )

    def _chat_stream(self, generation: Generation, reply: "Shape") -> Iterator[dict[str, Any]]:
        # The role chunk waits for the first token, so that Queenbee's first-token
        # timeout and its first-token timing cover the prompt's evaluation too.
        role = [reply.chunk([{"index": 0, "delta": {"role": "assistant"}, "logprobs": None, "finish_reason": None}])]
        for text in generation:
            yield from role
            role = []
            yield reply.chunk([{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}])
        yield from role
        last = reply.chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": generation.finish_reason}])
        yield {**last, "usage": usage(len(generation.prompt_tokens), generation.completion_tokens)}

    @staticmethod
    def _chat_tokens(llm: Any, prompt: ChatPrompt) -> list[int]:
        return llm.tokenize(prompt.text.encode("utf-8"), add_bos=not prompt.has_bos, special=True)

    @staticmethod
    def _prompt_tokens(llm: Any, prompt: str) -> list[int]:
        return llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def _chat_prompt(self, llm: Any, messages: list[dict[str, Any]], *, continue_final: bool = False) -> ChatPrompt:
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            return fallback_chat_prompt(messages, continue_final=continue_final)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def token_text(token: int) -> str:
            return llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

        formatter = Jinja2ChatFormatter(
            template=template, eos_token=token_text(llm.token_eos()), bos_token=token_text(llm.token_bos()),
            add_generation_prompt=not continue_final,
        )
        plain = [{**m, "content": _text(m.get("content"))} for m in messages]
        result = formatter(messages=plain)
        text = continued_transcript(result.prompt, plain[-1]["content"]) if continue_final else result.prompt
        return ChatPrompt(text, [], has_bos=bool(result.added_special))

    def completions(self, req: dict[str, Any]) -> Reply:
        llm = self._load(req["model"])
        prompts = req.get("prompt")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts or [""])
        reply = Shape(req["model"], "cmpl", "text_completion")
        generations = []
        for prompt in prompts:
            tokens = self._prompt_tokens(llm, prompt)
            generations.append(
                Generation(
                    llm,
                    tokens,
                    max_tokens=req.get("max_tokens") or COMPLETIONS_MAX_TOKENS,
                    stop=stop_list(req.get("stop")),
                    sampling=Sampling.from_request(req),
                    should_stop=self.should_stop,
                )
            )
        echo = bool(req.get("echo"))
        if req.get("stream"):
            return self._completions_stream(prompts, generations, reply, echo=echo)
        choices = []
        for i, (prompt, generation) in enumerate(zip(prompts, generations)):
            text = (prompt if echo else "") + "".join(generation)
            choices.append({"index": i, "text": text, "logprobs": None, "finish_reason": generation.finish_reason})
        return reply.body(choices, self._total_usage(generations))

    def _completions_stream(self, prompts: list[str], generations: list[Generation], reply: "Shape", *, echo: bool) -> Iterator[dict[str, Any]]:
        for i, (prompt, generation) in enumerate(zip(prompts, generations)):
            if echo and prompt:
                yield reply.chunk([{"index": i, "text": prompt, "logprobs": None, "finish_reason": None}])
            for text in generation:
                yield reply.chunk([{"index": i, "text": text, "logprobs": None, "finish_reason": None}])
            last = reply.chunk([{"index": i, "text": "", "logprobs": None, "finish_reason": generation.finish_reason}])
            if i == len(generations) - 1:
                last["usage"] = self._total_usage(generations)
            yield last

    @staticmethod
    def _total_usage(generations: list[Generation]) -> dict[str, int]:
        return usage(sum(len(g.prompt_tokens) for g in generations), sum(g.completion_tokens for g in generations))

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
        else:
            prompt = request.get("prompt") or ""
            if isinstance(prompt, list):
                prompt = prompt[0]  # the completion checked is choice 0
            if not isinstance(prompt, str):
                raise ValueError("request.prompt must be a string or a list of strings")
            llm = self._load(req["model"])
            prompt_tokens = self._prompt_tokens(llm, prompt)
        if self._eog is None:
            self._eog = eog_tokens(llm)
        ends = sorted(set(self._eog) | {tokens[0] for stop in stops if (tokens := completion_tokens(llm, stop))})
        result = teacher_force(llm, prompt_tokens, completion_tokens(llm, completion), ends=ends, should_stop=self.should_stop)
        return {"verification": result.as_dict()}


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
