//! Fuzz target `csv`: see [`downpour_fuzz::csv`] for the entry point and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    downpour_fuzz::csv(data);
});
