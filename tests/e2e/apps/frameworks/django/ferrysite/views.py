"""The routes of the framework e2e tests (the same as the Flask and Sinatra apps), plus
Django's own: CSRF protection, build_absolute_uri, the request's view of host and scheme."""
import hashlib
import json
import time

from django.core.signals import request_finished
from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST


@require_GET
def index(request):
    return HttpResponse("hello from django", content_type="text/plain")


@csrf_exempt
@require_POST
def echo_json(request):
    return JsonResponse({
        "got": json.loads(request.body),
        "args": request.GET.dict(),
        "path": request.path_info,
        "script_root": request.META["SCRIPT_NAME"],
        "url": request.build_absolute_uri(),
    })


@csrf_exempt
@require_POST
def upload(request):
    f = request.FILES["file"]
    digest = hashlib.sha256()
    for chunk in f.chunks():
        digest.update(chunk)
    return JsonResponse({"name": f.name, "sha256": digest.hexdigest(),
                         "form": request.POST.dict(),
                         "spooled": hasattr(f, "temporary_file_path")})


def stream(request):
    """Five lines (or ?n=), ?gap= seconds apart (default none), sent as they are made."""
    gap = float(request.GET.get("gap", "0"))
    count = int(request.GET.get("n", "5"))

    def lines():
        for i in range(count):
            if i and gap:
                time.sleep(gap)
            yield "line %d\n" % i
    return StreamingHttpResponse(lines(), content_type="text/plain")


def to_json(request):
    return redirect("/json?from=redirect")


def count(request):
    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse(str(request.session["n"]), content_type="text/plain")


def boom(request):
    raise RuntimeError("kaboom from django")


def csrf_token(request):
    """Sets the csrftoken cookie and returns the (masked) token for the form/header."""
    return HttpResponse(get_token(request), content_type="text/plain")


@require_POST
def protected(request):
    """Not CSRF-exempt: only a POST carrying the token of /csrf gets through."""
    return HttpResponse("accepted " + request.POST.get("v", ""), content_type="text/plain")


def meta(request):
    return JsonResponse({
        "host": request.get_host(),
        "port": request.get_port(),
        "secure": request.is_secure(),
        "scheme": request.scheme,
        "remote_addr": request.META.get("REMOTE_ADDR"),
        "absolute": request.build_absolute_uri("/x/y?z=1"),
        "full_path": request.get_full_path(),
        "path": request.path,
        "user_agent": request.headers.get("User-Agent"),
        "custom": request.headers.get("X-Custom-Thing"),
        "method": request.method,
    })


def echo_word(request, word):
    """A path segment, percent-decoded and UTF-8 decoded by Django from PEP 3333's latin-1
    PATH_INFO."""
    return JsonResponse({"word": word, "path": request.path})


def download(request):
    """This file, as an attachment: Django hands the open file to wsgi.file_wrapper and relies
    on the server calling the wrapper's close() to close it and end the request."""
    return FileResponse(open(__file__, "rb"), as_attachment=True, filename="views.py")


_finished = [0]
request_finished.connect(lambda sender, **kwargs: _finished.__setitem__(0, _finished[0] + 1),
                         weak=False)


def finished(request):
    """How many requests have ended (Django's request_finished signal, sent from the response's
    close()) before this one."""
    return HttpResponse(str(_finished[0]), content_type="text/plain")
