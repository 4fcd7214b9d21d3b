"""Repositories: one module per aggregate, every class sharing the unit of work's connection.

Every query filters by tenant: a repository method never returns another tenant's row.
"""
