//! All integration tests link into this one binary (see Cargo.toml [[test]]).
mod bad_input;
mod cli;
mod e2e;
mod golden;
mod support;
