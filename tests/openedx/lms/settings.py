"""Django settings of the test LMS. Everything that varies comes from the environment set by
`lms.serve`: the LMS's own address and the SQLite file."""

from __future__ import annotations

import os

BASE_URL = os.environ["OPENEDX_HARNESS_BASE_URL"]
DATA_DIR = os.environ["OPENEDX_HARNESS_DATA_DIR"]

SECRET_KEY = "openedx-harness-only"  # a loopback test server: nothing to protect
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.openedx.lms.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "django_filters",
    "config_models",
    "waffle",
    "lti_consumer",
    "tests.openedx.lms.apps.HarnessConfig",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "crum.CurrentRequestUserMiddleware",
    "edx_django_utils.cache.middleware.RequestCacheMiddleware",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(DATA_DIR, "lms.sqlite3"),
        # Score POSTs arrive concurrently: take the write lock at BEGIN and wait for it,
        # rather than failing with "database is locked" on the upgrade from a read.
        "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
    }
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

REST_FRAMEWORK = {"UNAUTHENTICATED_USER": None}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"lti_consumer": {"level": "INFO"}},
}

# What edx-platform's LMS settings give the package.
SERVICE_VARIANT = "lms"
PLATFORM_NAME = "Open edX (test harness)"
LMS_ROOT_URL = BASE_URL
LEARNING_MICROFRONTEND_URL = BASE_URL
LTI_CUSTOM_PARAM_TEMPLATES: dict[str, tuple[str, str]] = {}
USAGE_ID_PATTERN = r"(?P<usage_id>(?:i4x://?[^/]+/[^/]+/[^/]+/[^@]+(?:@[^/]+)?)|(?:[^/]+))"
