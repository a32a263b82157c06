//! All integration tests link into this one binary (see Cargo.toml [[test]]).
mod e2e;
