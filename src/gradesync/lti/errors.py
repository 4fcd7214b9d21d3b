"""Why a login or launch was refused (defined with the LTI use cases, which refuse too)."""

from gradesync.services.lti.errors import LaunchRefused

__all__ = ["LaunchRefused"]
