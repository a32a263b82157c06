//! All integration tests link into this one binary (see Cargo.toml [[test]]).
mod ansible_fleet;
mod bad_input;
mod bind;
mod bundle;
mod check;
mod cli;
mod disk_full;
mod dns_server;
mod e2e;
mod fleet;
mod fresh_host;
mod golden;
mod keys;
mod push;
mod rotate;
mod support;
mod trust;
