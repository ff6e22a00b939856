//! Fuzz target `idx`: see [`downpour_fuzz::idx`] for the entry point and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    downpour_fuzz::idx(data);
});
