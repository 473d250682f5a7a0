from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("routing.urls")),
]

handler400 = "routing.errors.handler400"
handler404 = "routing.errors.handler404"
handler500 = "routing.errors.handler500"
