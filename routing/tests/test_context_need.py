"""What a request needs of a worker's context window, counted before any worker sees it (routing/context.py)."""

from routing.context import ContextNeed, context_need, describe_too_long, tokens_at_least


def chat(*messages: str, **fields) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": m} for m in messages], **fields}


def test_each_word_and_run_of_punctuation_is_a_piece_and_three_in_four_count():
    assert tokens_at_least("word " * 400) == 300
    assert tokens_at_least("Hello, world!") == 3  # Hello / , / world / !


def test_whitespace_and_runs_of_one_character_count_for_little():
    assert tokens_at_least(" " * 4000) == 0
    assert tokens_at_least("=" * 4000) == 0  # one piece: it may well be a handful of tokens


def test_the_prompt_is_every_messages_text_and_the_tools():
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    assert context_need(chat("one two", "three four")).prompt_tokens == tokens_at_least("one two\nthree four")
    assert context_need(chat("hi", tools=[tool])).prompt_tokens > context_need(chat("hi")).prompt_tokens
    parts = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "word " * 40}]}]}
    assert context_need(parts).prompt_tokens == 30


def test_a_tool_calls_arguments_are_in_the_prompt():
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "word " * 40}}]}
    assert context_need({"model": "m", "messages": [call]}).prompt_tokens >= 30


def test_a_completions_list_of_prompts_needs_its_longest():
    assert context_need({"model": "m", "prompt": ["word " * 40, "word " * 400]}).prompt_tokens == 300


def test_max_tokens_is_an_upper_bound_not_a_need():
    assert context_need(chat("hi", max_tokens=5000)) == context_need(chat("hi"))


def test_the_refusal_names_what_is_needed_and_the_largest_window():
    message = describe_too_long(ContextNeed(6000), largest=4096, field="messages")
    assert "at least 6000 tokens for its messages" in message and "4096 tokens" in message
