//! Fuzz target `libsvm`: see [`downpour_fuzz::libsvm`] for the entry point and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    downpour_fuzz::libsvm(data);
});
