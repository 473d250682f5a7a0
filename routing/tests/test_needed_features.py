"""Which features a request's fields need (routing/features.py), without a database."""

from routing.features import needed_features

TOOL = {"type": "function", "function": {"name": "f"}}


def test_a_plain_request_needs_no_feature():
    assert needed_features({"messages": [], "seed": 1, "stop": "x", "n": 1, "logprobs": False, "response_format": {"type": "text"}}) == {}


def test_it_names_the_field_that_needs_each_feature():
    data = {
        "tools": [TOOL],
        "response_format": {"type": "json_schema"},
        "logprobs": True,
        "n": 2,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
    }
    assert needed_features(data) == {"tools": "tools", "json_schema": "response_format", "logprobs": "logprobs", "n": "n", "vision": "messages"}


def test_legacy_functions_need_tools():
    assert needed_features({"functions": [{"name": "f"}]}) == {"tools": "functions"}


def test_a_completions_logprobs_count_of_zero_still_needs_logprobs():
    assert needed_features({"prompt": "hi", "logprobs": 0}) == {"logprobs": "logprobs"}
