"""A Django project (Debian's python3-django) for the framework e2e tests: the WSGI entry point
that ferry's loader imports, exactly as Django's own `startproject` wsgi.py does."""
import os
import sys

# The project's modules are imported below: no __pycache__ in the source tree.
sys.dont_write_bytecode = True

from django.core.wsgi import get_wsgi_application  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ferrysite.settings")

application = get_wsgi_application()
