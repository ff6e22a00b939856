//! Workspace-level integration tests: real `downpour` server and worker processes on loopback.
//!
//! One test binary pulls in every module (one link, one process pool); each module is
//! one capability; `support` holds the helpers they share (running the binary, reading
//! its files, processes and signals).

mod bad_pushes;
mod bench;
mod checkpoints;
mod cli_errors;
mod data;
mod denial_of_service;
mod examples;
mod fault_tolerance;
mod fuzz_corpus;
mod layers;
mod lifecycle;
mod optimizers;
mod poisoning;
mod prometheus;
mod security;
mod shards_and_staleness;
mod support;
mod training;
mod watching;
