"""The OpenAI surface on the tiny GGUF the tests write: fast, and with a chat template that shows tools.

A random model writes nonsense, but under a grammar the nonsense parses: what
these check is the plumbing (the template gets the tools, a forced call and a
schema hold, logprobs and choices line up), not the model's judgement.
"""

import json

import openai
import pytest

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from workerbee.tests.live import live_worker, recorded_job  # noqa: E402
from workerbee.tests.tiny_model import write_tiny_llama  # noqa: E402

pytestmark = pytest.mark.worker

REPO = "workerbee-test/tiny-tools-2m-GGUF"
MODEL = f"{REPO}:f32"
# A template in the Hugging Face style that renders `tools` (as Qwen's and Llama 3's do).
TEMPLATE = (
    "{% if tools %}tools: {% for t in tools %}{{ t.function.name }} {% endfor %}\n{% endif %}"
    "{% for m in messages %}{{ m.role }}: {{ m.content }}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}call {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
PICK = {
    "type": "function",
    "function": {"name": "pick", "parameters": {"type": "object", "properties": {"word": {"enum": ["hello", "bee"]}}, "required": ["word"]}},
}
HELLO = [{"role": "user", "content": "hello queen"}]


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-tools")
    write_tiny_llama(root / "models" / REPO / "tiny-tools-2m-f32.gguf", chat_template=TEMPLATE)
    return root


@pytest.fixture(scope="module")
def worker(queen, django_db_blocker, model_root):
    with live_worker(queen, django_db_blocker, model_root, "--ctx-size", "512", "--packaged-model", "false") as worker:
        yield worker


@pytest.fixture
def chat(worker, client):
    def chat(**fields):
        fields.setdefault("messages", HELLO)
        fields.setdefault("temperature", 0)
        fields.setdefault("max_tokens", 150)  # a random model spells JSON a character at a time
        return client.chat.completions.create(model=MODEL, extra_body={"gpu_filter": {"pubkey": worker.pubkey}}, **fields)

    return chat


def test_a_forced_call_under_a_template_that_shows_tools_parses(chat, db_access):
    for stream in (False, True):
        reply = chat(tools=[PICK], tool_choice={"type": "function", "function": {"name": "pick"}}, stream=stream)
        if stream:
            chunks = list(reply)
            deltas = [d for c in chunks if c.choices and c.choices[0].delta.tool_calls for d in c.choices[0].delta.tool_calls]
            name, arguments, public_id = deltas[0].function.name, "".join(d.function.arguments or "" for d in deltas), chunks[0].id
        else:
            [call] = reply.choices[0].message.tool_calls
            name, arguments, public_id = call.function.name, call.function.arguments, reply.id
        assert name == "pick"
        assert json.loads(arguments)["word"] in ("hello", "bee")
        # A random model spends a token per character: the call's JSON around the
        # arguments still counts as delivered, so its honest usage is not "corrected".
        assert recorded_job(public_id).usage_corrected is False


def test_the_template_renders_the_tools_and_earlier_calls(worker, chat):
    call = {"id": "call_1", "type": "function", "function": {"name": "pick", "arguments": '{"word": "bee"}'}}
    messages = [*HELLO, {"role": "assistant", "content": None, "tool_calls": [call]}, {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]
    reply = chat(messages=messages, tools=[PICK], max_tokens=2)
    llm = worker.engine._llm  # the prompt's length shows what the template wrote
    # (llama-cpp-python renders templates with trim_blocks: no newline after a tag)
    expected = 'tools: pick user: hello queenassistant: call pick {"word": "bee"}tool: okassistant:'
    assert reply.usage.prompt_tokens == len(llm.tokenize(expected.encode(), add_bos=False, special=True))


def test_a_json_schema_holds_even_for_a_random_model(chat):
    schema = {"type": "object", "properties": {"w": {"enum": ["once", "upon"]}, "n": {"type": "integer", "maximum": 9}}, "required": ["w"]}
    reply = chat(response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": schema}})
    assert json.loads(reply.choices[0].message.content)["w"] in ("once", "upon")


def test_a_schema_no_grammar_can_hold_is_a_400_naming_the_field(chat):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "frobnicate"}}})
    assert caught.value.body["param"] == "response_format.json_schema.schema"


def test_completions_give_n_choices_per_prompt_with_logprobs(worker, client):
    reply = client.completions.create(
        model=MODEL, prompt=["once upon", "the queen"], n=2, max_tokens=3, temperature=1, seed=3, logprobs=2,
        extra_body={"gpu_filter": {"pubkey": worker.pubkey}},
    )
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    for choice in reply.choices:
        assert len(choice.logprobs.tokens) == 3 and "".join(choice.logprobs.tokens) == choice.text
        assert all(1 <= len(top) <= 2 for top in choice.logprobs.top_logprobs)  # keyed by text, which two tokens may share
        assert choice.logprobs.text_offset[0] == 0
    assert reply.usage.completion_tokens == 12


def test_streamed_chat_choices_carry_their_logprobs(chat):
    chunks = list(chat(n=2, seed=9, temperature=1, max_tokens=4, logprobs=True, stream=True))
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == index]
        text = "".join(c.delta.content or "" for c in mine)
        tokens = [t.token for c in mine if c.logprobs for t in c.logprobs.content]
        assert len(tokens) == 4 and "".join(tokens) == text


def test_a_prompt_longer_than_the_context_is_a_400_naming_it(chat):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(messages=[{"role": "user", "content": "hello queen " * 400}])
    assert (caught.value.body["param"], caught.value.body["code"]) == ("messages", "context_length_exceeded")
