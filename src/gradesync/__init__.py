"""gradesync: one-way, reliable grade sync from where learners earn grades into the
gradebooks that count (LTI 1.3 AGS, LTI 1.1 Outcomes, OneRoster 1.2)."""

__version__ = "0.1.0"
