from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("json", views.echo_json),
    path("upload", views.upload),
    path("stream", views.stream),
    path("redirect", views.to_json),
    path("session", views.count),
    path("boom", views.boom),
    path("csrf", views.csrf_token),
    path("protected", views.protected),
    path("meta", views.meta),
    path("echo/<str:word>", views.echo_word),
    path("download", views.download),
    path("finished", views.finished),
]
