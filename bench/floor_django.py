"""The framework floor: Queenbee's own settings, but every URL is one empty async
view that answers like a worker would. BENCH_FLOOR_MIDDLEWARE=default keeps the
project's middleware stack; by default it runs with none."""

import json
import os

from django.http import HttpResponse, StreamingHttpResponse
from django.urls import re_path

from bench.swarm import _reply

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.floor_django")

from queenbee_site.settings import *  # noqa: E402,F403

ROOT_URLCONF = "bench.floor_django"
if os.environ.get("BENCH_FLOOR_MIDDLEWARE") != "default":
    MIDDLEWARE = []


async def answer(request):
    req = json.loads(request.body) if request.body else {"messages": [{"content": ""}]}
    frames = _reply(req)
    if not req.get("stream"):
        return HttpResponse(frames[0], content_type="application/json")

    async def events():
        for frame in frames[:-1]:
            yield f"data: {frame}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingHttpResponse(events(), content_type="text/event-stream")


urlpatterns = [re_path(r"", answer)]



