from django.contrib import admin
from django.urls import include, path, re_path

from api.errors import unknown_url
from api.openapi import DocsView, SchemaView

from . import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("v1/openapi.json", SchemaView.as_view(), name="openapi"),
    path("v1/docs", DocsView.as_view(url_name="openapi"), name="docs"),
    path("admin/", admin.site.urls),
    path("", include("routing.urls")),
    path("", include("finetune.urls")),
    path("", include("billing.urls")),
    path("", include("pages.urls")),
]
# API clients get OpenAI's envelope for unknown URLs, even with DEBUG on.
# `[\s\S]` so a path with a newline in it matches too (`.` would not).
urlpatterns.append(re_path(r"^(v1|worker)(/[\s\S]*)?$", unknown_url, name="unknown_url"))

handler400 = "api.errors.handler400"
handler404 = "api.errors.handler404"
handler500 = "api.errors.handler500"
