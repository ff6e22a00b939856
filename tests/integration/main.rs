//! Workspace-level integration tests: real `downpour` server and worker processes on loopback.
//!
//! One test binary pulls in every module (one link, one process pool); each module is
//! one capability.

mod bad_pushes;
mod bench;
mod cli_errors;
mod lifecycle;
mod support;
mod training;
