"""Pure domain: model, policy, ledger and diagnosis rules. Imports nothing of gradesync's
outer layers and does no I/O."""
