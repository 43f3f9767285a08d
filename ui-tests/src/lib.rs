//! Test-only crate; see `tests/ui.rs`.
