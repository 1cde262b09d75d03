"""A minimal Django project in one module."""

from __future__ import annotations

import json
import os

import django
from django.conf import settings

HERE = os.path.dirname(os.path.abspath(__file__))

settings.configure(
    DEBUG=False,
    SECRET_KEY="not-a-secret-only-for-tests",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
    ],
    INSTALLED_APPS=[],
    USE_TZ=True,
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402 - settings first
from django.http import (  # noqa: E402
    FileResponse,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


def hello(request):
    return HttpResponse("Hello from Django", content_type="text/plain")


def info(request):
    return JsonResponse({
        "method": request.method,
        "path": request.path,
        "query": request.GET.dict(),
        "host": request.get_host(),
        "secure": request.is_secure(),
        "header": request.headers.get("X-Test"),
    })


@csrf_exempt
def submit(request):
    if request.method != "POST":
        return HttpResponse(status=405)
    if request.content_type == "application/json":
        return JsonResponse({"json": json.loads(request.body)})
    return JsonResponse({"form": request.POST.dict()})


def protected(request):
    return HttpResponse("should need a CSRF token")


def stream(request):
    return StreamingHttpResponse((f"row {i}\n" for i in range(5)),
                                 content_type="text/plain")


def file_view(request):
    return FileResponse(open(os.path.join(HERE, "apps.py"), "rb"),
                        content_type="text/x-python")


urlpatterns = [
    path("hello/", hello),
    path("info/", info),
    path("submit/", submit),
    path("protected/", protected),
    path("stream/", stream),
    path("file/", file_view),
]

application = get_wsgi_application()
