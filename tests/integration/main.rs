//! All integration tests link into this one binary (see Cargo.toml [[test]]).
mod bad_input;
mod bundle;
mod cli;
mod e2e;
mod golden;
mod support;
