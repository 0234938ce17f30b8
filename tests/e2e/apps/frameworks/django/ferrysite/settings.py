"""Settings of the e2e Django project: production mode (DEBUG off), no database (sessions are
signed cookies), CSRF protection on, uploads past 64 KiB spooled to a temp file, the request
log and tracebacks on stderr (which ferry captures)."""

DEBUG = False
SECRET_KEY = "ferry-e2e-django-" + "x" * 40
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "ferrysite.urls"
WSGI_APPLICATION = None

INSTALLED_APPS = [
    "django.contrib.sessions",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

DATABASES = {}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
USE_TZ = True

# Small enough that the 300 kB upload of the tests goes through TemporaryFileUploadHandler (a
# file in $TMPDIR, removed when the request ends).
FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "loggers": {"django": {"handlers": ["stderr"], "level": "WARNING"}},
}
