"""The use cases, once, between the entry points (`cli/`, `server/`) and the engine and store.

- `commands`: every change a person asks for (start, stop/abandon/retry, transitions,
  approvals, rollback, users), with its preconditions, audited;
- `queries`: the read models the CLI, the API and the dashboard share.

The CLI and the server import this package, the model and their own helpers, never
`conveyor.store` or `conveyor.engine` (tests/unit/test_purity.py holds them to it). Nothing
here is imported at package import: the CLI's light paths pay only for what they use.
"""
