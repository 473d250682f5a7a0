from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path, re_path

from routing.errors import unknown_url

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("routing.urls")),
]
if settings.DEBUG:
    urlpatterns += staticfiles_urlpatterns()
# API clients get OpenAI's envelope for unknown URLs, even with DEBUG on.
urlpatterns.append(re_path(r"^(v1|worker)(/.*)?$", unknown_url))

handler400 = "routing.errors.handler400"
handler404 = "routing.errors.handler404"
handler500 = "routing.errors.handler500"
