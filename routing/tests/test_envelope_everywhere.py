"""Every error on every API path and method is OpenAI's JSON envelope, never an HTML page.

The API is authenticated with bearer keys, so CSRF does not apply to it; the
admin keeps its CSRF protection.
"""

import httpx
import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from api.errors import is_api_path

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ENVELOPE_KEYS = {"message", "type", "param", "code"}


def assert_envelope(response, status: int) -> dict:
    assert response.status_code == status, (response.request.method, response.request.url, response.text[:300])
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type == "application/json" or media_type.endswith("+json"), response.text[:300]
    error = response.json()["error"]
    assert set(error) == ENVELOPE_KEYS and error["message"]
    return error


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("path", ["/v1/conversations", "/v1/nothing/here", "/v1/chat/completion", "/v1", "/worker/nope"])
def test_an_unknown_api_path_is_a_json_404_for_every_method(http, method, path):
    error = assert_envelope(http.request(method, path, json={"model": "x", "input": "hi"}), 404)
    assert error["code"] == "unknown_url" and path in error["message"]


@pytest.mark.parametrize("path", ["/v1/conversations", "/v1/assistants", "/v1/threads/runs"])
def test_an_unknown_post_without_a_key_or_cookie_is_a_json_404(queen, path):
    """As a browser-less SDK sends it: no CSRF cookie, no Referer, no key."""
    assert_envelope(httpx.post(f"{queen.url}{path}", json={"input": "hi"}), 404)


def test_the_official_sdk_gets_a_not_found_error_for_an_api_queenbee_lacks(client):
    import openai

    with pytest.raises(openai.NotFoundError) as raised:
        client.conversations.create()
    assert raised.value.body["code"] == "unknown_url"


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/v1/chat/completions"),
        ("PUT", "/v1/completions"),
        ("DELETE", "/v1/embeddings"),
        ("PATCH", "/v1/images/generations"),
        ("POST", "/v1/models"),
        ("DELETE", "/v1/models/some/model"),
        ("POST", "/worker/stats"),
        ("PUT", "/v1/fine_tuning/jobs"),
        ("PATCH", "/v1/files"),
        ("POST", "/v1/usage"),
        ("POST", "/v1/openapi.json"),
        ("DELETE", "/v1/docs"),
    ],
)
def test_a_wrong_method_on_a_known_path_is_a_json_405(http, method, path):
    assert_envelope(http.request(method, path, json={}), 405)


def api_views():
    """(route, view) for every URL pattern under the API's paths."""

    def walk(patterns, prefix=""):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, route)
            elif isinstance(p, URLPattern):
                yield route, p.callback

    return [(route, view) for route, view in walk(get_resolver().url_patterns) if is_api_path("/" + route.lstrip("^"))]


def test_every_api_view_is_exempt_from_csrf():
    views = api_views()
    assert len(views) > 10
    assert [route for route, view in views if not getattr(view, "csrf_exempt", False)] == []


def test_the_admin_still_checks_csrf(queen):
    response = httpx.post(f"{queen.url}/admin/login/", data={"username": "a", "password": "b"})
    assert response.status_code == 403
    assert "text/html" in response.headers["content-type"] and "CSRF" in response.text
