from django.urls import path

from . import views

urlpatterns = [
    path("v1/files", views.FilesView.as_view()),
    path("v1/files/<str:file_id>", views.FileView.as_view()),
    path("v1/files/<str:file_id>/content", views.FileContentView.as_view()),
    path("v1/fine_tuning/jobs", views.JobsView.as_view()),
    path("v1/fine_tuning/jobs/<str:job_id>", views.JobView.as_view()),
    path("v1/fine_tuning/jobs/<str:job_id>/cancel", views.JobCancelView.as_view()),
    path("v1/fine_tuning/jobs/<str:job_id>/events", views.JobEventsView.as_view()),
    path("v1/fine_tuning/jobs/<str:job_id>/checkpoints", views.JobCheckpointsView.as_view()),
    # Not under /v1: no API key, the signature in the URL is the credential.
    path("files/signed/<str:token>", views.signed_download, name="finetune-signed-download"),
]
