//! The machine a benchmark ran on: cores, CPU, memory, load. With N worker processes on
//! C cores, compute speedup cannot exceed C, so every report starts with these.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The hardware and its load, as far as this process can see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical cores available to this process (its CPU affinity and quota).
    pub cores: usize,
    /// The CPU's model name (`/proc/cpuinfo`), when known.
    pub cpu_model: Option<String>,
    /// Total memory in GiB (`/proc/meminfo`), when known.
    pub memory_gib: Option<f64>,
    /// The 1-minute load average when the sweep started (`/proc/loadavg`), when known:
    /// other processes competing for the same cores.
    pub load_at_start: Option<f64>,
    /// The 1-minute load average when it ended.
    pub load_at_end: Option<f64>,
    /// The operating system and architecture.
    pub os: String,
    /// Threads per process: workers compute on one (a current-thread runtime); the
    /// server runs two runtime threads.
    pub threads: String,
    /// Accelerators used: none (the models run on the CPU).
    pub accelerator: String,
}

impl Machine {
    /// Looks at this machine now.
    #[must_use]
    pub fn detect() -> Self {
        Self {
            cores: cores(),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|t| cpu_model(&t)),
            memory_gib: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|t| memory_gib(&t)),
            load_at_start: load_average(),
            load_at_end: None,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            threads: "worker: 1 compute thread (current-thread runtime); server: 2 runtime threads"
                .to_string(),
            accelerator: "none (CPU only)".to_string(),
        }
    }

    /// Records the load when the sweep ends.
    pub fn finish(&mut self) {
        self.load_at_end = load_average();
    }
}

/// Cumulative CPU time of all cores, from `/proc/stat`: (busy, total) in clock ticks.
#[must_use]
pub fn cpu_ticks() -> Option<(u64, u64)> {
    parse_cpu_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The fraction of all cores busy between two [`cpu_ticks`] readings.
#[must_use]
pub fn busy_between(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1)?;
    let busy = after.0.checked_sub(before.0)?;
    (total > 0).then(|| busy as f64 / total as f64)
}

fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPU time of this process and of its reaped children (the lab's servers and workers),
/// from `/proc/self/stat`, in the clock ticks of `/proc/stat`.
#[must_use]
pub fn own_ticks() -> Option<u64> {
    parse_own_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn parse_own_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name (which may hold spaces), from field 3 (state):
    // utime, stime, cutime and cstime are fields 14 to 17.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum()
}

/// Measures the share of all cores that processes other than this one and its children
/// used while a run was going on.
#[derive(Debug, Clone, Copy)]
pub struct OthersProbe {
    /// The machine's ticks at the start.
    machine: (u64, u64),
    /// This process's and its children's ticks at the start.
    own: u64,
}

impl OthersProbe {
    /// Starts measuring.
    #[must_use]
    pub fn start() -> Option<Self> {
        Some(Self {
            machine: cpu_ticks()?,
            own: own_ticks()?,
        })
    }

    /// Others' share of all cores since the start; children count once reaped.
    #[must_use]
    pub fn finish(self) -> Option<f64> {
        let machine = cpu_ticks()?;
        let own = own_ticks()?.checked_sub(self.own)?;
        let total = machine.1.checked_sub(self.machine.1)?;
        let busy = machine.0.checked_sub(self.machine.0)?;
        (total > 0).then(|| busy.saturating_sub(own) as f64 / total as f64)
    }
}

/// Measures how busy the machine is over one second, again and again until it is below
/// `threshold` or `max_wait` has passed; returns the last measurement. Called between
/// runs, when none of the lab's processes is running, it measures other processes' load.
pub async fn wait_for_quiet(max_wait: Duration, threshold: f64) -> Option<f64> {
    let deadline = Instant::now() + max_wait;
    loop {
        let before = cpu_ticks()?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = busy_between(before, cpu_ticks()?)?;
        if busy < threshold || Instant::now() >= deadline {
            return Some(busy);
        }
    }
}

/// Logical cores available to this process.
#[must_use]
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// The 1-minute load average.
#[must_use]
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn memory_gib(meminfo: &str) -> Option<f64> {
    let kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cpu_model_and_memory() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t: avx\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_cpu_ticks(stat), Some((150, 1000)));
        assert_eq!(busy_between((150, 1000), (250, 1200)), Some(0.5));
        assert_eq!(busy_between((150, 1000), (150, 1000)), None);
        let own = "4242 (down pour) S 1 2 3 4 5 6 7 8 9 10 100 20 7 3 20 0 1 0";
        assert_eq!(parse_own_ticks(own), Some(130));
        let meminfo = "MemTotal:       24576000 kB\nMemFree: 1 kB\n";
        let gib = memory_gib(meminfo).unwrap();
        assert!((gib - 23.4375).abs() < 1e-9, "{gib}");
        assert!(cores() >= 1);
    }
}
