"""LTI use cases: the tool's keys, OIDC login, LTI 1.3 and LTI 1.1 launches, deep linking and
the move of a course from LTI 1.1 to LTI 1.3. Protocol rules live in `gradesync.lti`."""
