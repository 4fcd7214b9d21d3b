"""The JSON the API answers and the command line prints with --json for the same thing, built
once (docs/operations.md: the same keys, nesting and value formats). Both entrypoints import
it and neither owns it: the command line does not import the web layer for it."""
