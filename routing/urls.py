from django.urls import path

from workers.views import WorkerDetailView

from . import responses_views, views

urlpatterns = [
    path("v1/chat/completions", views.ChatCompletionsView.as_view()),
    path("v1/completions", views.CompletionsView.as_view()),
    path("v1/embeddings", views.EmbeddingsView.as_view()),
    path("v1/images/generations", views.ImagesView.as_view()),
    path("v1/responses", responses_views.ResponsesView.as_view()),
    path("v1/responses/<str:response_id>", responses_views.ResponseDetailView.as_view()),
    path("v1/responses/<str:response_id>/input_items", responses_views.ResponseInputItemsView.as_view()),
    path("v1/models", views.ModelsView.as_view()),
    path("v1/models/<path:model_id>", views.ModelDetailView.as_view()),
    path("worker/stats", views.WorkerStatsView.as_view()),
    path("worker/detail", WorkerDetailView.as_view()),
]
