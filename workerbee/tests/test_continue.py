"""The "continue" feature: a chat's final assistant message is continued in place."""

import pytest

from workerbee.inference import continued_transcript, continues_final_message, fallback_chat_prompt

HI = [{"role": "user", "content": "hello queen"}]


def test_a_continued_transcript_is_the_original_prompt_followed_by_the_delivered_text():
    original = fallback_chat_prompt(HI)
    continued = fallback_chat_prompt([*HI, {"role": "assistant", "content": " hello world"}], continue_final=True)
    assert continued.text == original.text + " hello world"
    assert continued.stop == original.stop


def test_only_a_final_assistant_message_marked_for_continuation_is_continued():
    assert continues_final_message({"messages": [*HI, {"role": "assistant", "content": "x"}], "continue_final_message": True})
    assert not continues_final_message({"messages": [*HI, {"role": "assistant", "content": "x"}]})
    assert not continues_final_message({"messages": HI, "continue_final_message": True})


def test_a_template_transcript_is_cut_after_the_message_even_when_the_template_trims_it():
    rendered = "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nOnce upon a<end_of_turn>\n"
    assert continued_transcript(rendered, "Once upon a") == "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nOnce upon a"
    assert continued_transcript(rendered, "Once upon a ").endswith("model\nOnce upon a ")
    with pytest.raises(ValueError):
        continued_transcript(rendered, "something else")


llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from workerbee.catalog import Places  # noqa: E402
from workerbee.inference import Engine, LlamaSettings  # noqa: E402
from workerbee.tests.tiny_model import write_tiny_llama  # noqa: E402

REPO = "workerbee-test/tiny-words-2m-GGUF"
TEMPLATE = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"


def engine(tmp_path, *, chat_template: str = "") -> Engine:
    write_tiny_llama(tmp_path / "models" / REPO / "tiny-words-2m-f32.gguf", words_only=True, chat_template=chat_template)
    return Engine(places=Places(tmp_path / "models", tmp_path / "hf"), settings=LlamaSettings(ctx_size=256, threads=1))


def chat(eng: Engine, messages: list, **extra) -> str:
    reply = eng.run("/v1/chat/completions", {"model": f"{REPO}:f32", "messages": messages, "temperature": 0, **extra})
    return reply["choices"][0]["message"]["content"]


@pytest.mark.worker
def test_a_greedy_answer_continued_from_its_start_reads_on_exactly(tmp_path):
    eng = engine(tmp_path)  # no chat template: the fallback transcript, as the packaged Gemma
    whole = chat(eng, HI, max_tokens=12)
    words = whole.split(" ")
    start = " ".join(words[:5])
    rest = chat(eng, [*HI, {"role": "assistant", "content": start}], max_tokens=12 - 4, continue_final_message=True, add_generation_prompt=False)
    assert start + rest == whole


@pytest.mark.worker
def test_a_chat_template_continues_the_message_without_a_new_turn(tmp_path):
    eng = engine(tmp_path, chat_template=TEMPLATE)
    llm = eng._load(f"{REPO}:f32")
    prompt = eng._chat_prompt(llm, [*HI, {"role": "assistant", "content": "hello world"}], continue_final=True)
    assert prompt.text.endswith("user: hello queen\nassistant: hello world")
