"""Training files are checked on upload, and the error names the first bad line."""

import pytest

from finetune.training_data import BadTrainingFile, check_training_lines

CHAT = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}'
PAIR = b'{"prompt": "2+2", "completion": "4"}'


def check(*lines: bytes) -> int:
    return check_training_lines(line + b"\n" for line in lines)


def test_it_counts_chat_records_and_prompt_completion_pairs():
    assert check(CHAT, PAIR, CHAT) == 3


def test_trailing_blank_lines_are_fine():
    assert check(CHAT, PAIR, b"", b"  ") == 2


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((CHAT, b"{not json", CHAT), "line 2 is not valid JSON"),
        ((CHAT, b"", CHAT), "line 2 is blank"),
        ((CHAT, b"[1, 2]"), "line 2 is not a JSON object"),
        ((CHAT, b'{"text": "hi"}'), "line 2 is neither a chat record"),
        ((CHAT, b'{"prompt": "x"}'), "line 2 needs both 'prompt' and 'completion'"),
        ((CHAT, b'{"messages": []}'), "line 2 has 'messages' that is not a non-empty list"),
        ((CHAT, b'{"messages": [{"role": "wizard", "content": "x"}]}'), "line 2 has a message 0 without a valid role"),
        ((CHAT, b'{"messages": [{"role": "user", "content": 3}]}'), "line 2 has a message 0 whose content"),
        ((CHAT, b'{"messages": [{"role": "user", "content": "x"}]}'), "line 2 has no assistant message"),
        ((CHAT, b"\xff\xfe"), "line 2 is not UTF-8"),
        ((CHAT,), "at least 2 examples"),
    ],
)
def test_it_names_the_first_bad_line(lines, message):
    with pytest.raises(BadTrainingFile, match=message):
        check(*lines)


def test_a_line_longer_than_the_worker_reads_is_refused():
    long = b'{"prompt": "' + b"x" * 300_000 + b'", "completion": "y"}'
    with pytest.raises(BadTrainingFile, match="line 2 is longer"):
        check(PAIR, long)
