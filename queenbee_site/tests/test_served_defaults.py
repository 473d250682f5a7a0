"""A served process with DEBUG unset: not in DEBUG, yet what DEBUG used to give still works.

Static files (the admin's and the docs page's) are served by the process itself,
the answers are production's (no debug pages), and the localhost names are
allowed. Under both supported servers.
"""

import re

import httpx
import pytest

from testkit.server import SERVERS, QueenProcess


@pytest.fixture(scope="module", params=SERVERS)
def plain_queen(request, server_env):
    assert "DEBUG" not in server_env
    process = QueenProcess(server_env, name=f"plain-queen-{request.param}", server=request.param).start()
    yield process
    process.stop()


def test_it_serves_the_admins_static_files(plain_queen):
    response = httpx.get(f"{plain_queen.url}/static/admin/css/base.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert "body" in response.text


def test_it_serves_every_static_file_the_docs_page_uses(plain_queen):
    page = httpx.get(f"{plain_queen.url}/v1/docs")
    assert page.status_code == 200
    assets = set(re.findall(r'"(/static/[^"]+)"', page.text))
    assert any(asset.endswith(".js") for asset in assets), page.text[:500]
    for asset in assets:
        assert httpx.get(f"{plain_queen.url}{asset}").status_code == 200, asset


def test_it_is_not_in_debug(plain_queen):
    """With DEBUG on, Django answers an unknown URL with its technical 404 page."""
    response = httpx.get(f"{plain_queen.url}/no/such/page")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "URLconf" not in response.text


@pytest.mark.parametrize("host, status", [("localhost", 200), ("127.0.0.1", 200), ("queenbee.example.com", 400)])
def test_it_answers_the_localhost_names_only(plain_queen, host, status):
    response = httpx.get(f"{plain_queen.url}/healthz", headers={"Host": f"{host}:{plain_queen.port}"})
    assert response.status_code == status
