"""A small Open edX LMS around the real `lti-consumer-xblock` package, for end-to-end tests.

It runs in its own virtual environment (see tests/openedx/README.md): Django, the package's
models, token endpoint, launch gate and AGS views, unmodified. Only the edx-platform glue that
the package isolates in `lti_consumer.plugin.compat` is replaced (`lms.compat`), together
with the XBlock runtime and course data the LMS would provide.
"""
