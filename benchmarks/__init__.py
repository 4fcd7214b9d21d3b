"""gradesync benchmarks: `python -m benchmarks` (see docs/benchmarks.md).

Everything runs on loopback: the sandbox LMS/SIS in its own process, gradesync (`gradesync
serve`) in its own process, and this driver in a third, so each one's CPU is measured apart.
"""
