//! The Docker Compose mode, as instructions: the commands that run the same sweep with
//! a CPU quota per worker container (`cpus: ${WORKER_CPUS}` in compose.yaml), so that N
//! workers on one box behave like N small machines instead of sharing all its cores.
//!
//! `downpour bench` does not start Docker itself: building the image and starting
//! containers is minutes per configuration on a small machine, and the compose server
//! publishes no port for the lab's status polling. The printed commands are to be run by
//! hand; the server's log holds each run's throughput.

use std::fmt::Write as _;

use crate::config::BenchConfig;

/// The CPU quota per worker that lets the largest sweep fit on `cores` cores, leaving half
/// a core to the server: `(cores - 0.5) / max_workers`, rounded down to 0.01.
#[must_use]
pub fn worker_cpus(cores: usize, max_workers: usize) -> f64 {
    let share = (cores as f64 - 0.5).max(0.1) / max_workers.max(1) as f64;
    (share * 100.0).floor().max(1.0) / 100.0
}

/// The commands, one configuration and repeat per line, with an explanation.
#[must_use]
pub fn commands(config: &BenchConfig, cores: usize) -> String {
    let max = config.worker_counts.last().copied().unwrap_or(1);
    let cpus = worker_cpus(cores, max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Speedup lab under Docker Compose: every worker container gets {cpus} CPUs, so that\n\
         # {max} workers fit on {cores} cores beside the server: N small machines on one box.\n\
         # Uses compose.yaml (WORKERS, MODE, WORKER_CPUS); the image runs its default job.\n\
         # Throughput is in the server's log: `docker compose logs server`.\n\
         docker/build-image.sh"
    );
    for repeat in 0..config.repeats {
        for c in config.configurations() {
            let _ = writeln!(
                out,
                "WORKERS={n} MODE={mode} DOWNPOUR_PREFETCH={prefetch} WORKER_CPUS={cpus} \
                 docker compose up --scale worker={n} --abort-on-container-exit   # {c}, repeat {repeat}",
                n = c.workers,
                mode = c.mode.name(),
                prefetch = c.prefetch,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_leave_room_for_the_server() {
        assert!((worker_cpus(2, 8) - 0.18).abs() < 1e-12);
        assert!((worker_cpus(16, 4) - 3.87).abs() < 1e-12);
        assert!((worker_cpus(1, 100) - 0.01).abs() < 1e-12);
    }
}
