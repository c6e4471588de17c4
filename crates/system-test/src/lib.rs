//! Test-only crate: see `tests/` and docs/e2e.md.
