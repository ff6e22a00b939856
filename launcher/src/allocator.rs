//! Allocator settings for every downpour process.
//!
//! A step allocates and frees buffers as large as the model: the encoded gradient, gRPC's
//! message buffers, the decoded parameters. glibc hands allocations above its mmap
//! threshold (at most 32 MiB) straight back to the OS when freed, so a 10-million-parameter
//! model (40 MB a tensor set) pays page faults on every fresh buffer, every step: about
//! 25 ms per 40 MB buffer on the machine in docs/benchmarks.md, several buffers per transfer.
//! Keeping large buffers on the heap lets the next step reuse pages already mapped.

/// Keeps allocations up to 1 GiB on the heap, and freed heap memory in the process
/// (up to 1 GiB at its top) for the next step to reuse. glibc on Linux only; elsewhere
/// a no-op.
pub fn keep_large_buffers_on_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator tunables; it is called before any other
    // thread exists, and both values are within glibc's accepted ranges.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
