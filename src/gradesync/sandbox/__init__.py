"""A small but strict LMS (LTI 1.3 + AGS, LTI 1.1 outcomes) and SIS (OneRoster 1.2 gradebook)
for demos, tests and benchmarks, with fault injection. See docs/sandbox.md.

A separate application: nothing here imports gradesync code outside this package.
"""

from .config import SandboxConfig

__all__ = ["SandboxConfig"]
