//! Fuzz target `pieces`: see [`downpour_fuzz::pieces`] for the entry point and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| downpour_fuzz::pieces(data));
