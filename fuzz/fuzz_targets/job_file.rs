//! Fuzz target `job_file`: see [`downpour_fuzz::job_file`] for the entry point and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    downpour_fuzz::job_file(data);
});
