//! Running the `downpour` binary and reading what it leaves behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use downpour_core::ParamSet;
use downpour_launch::report::RunReport;

/// The binary under test.
pub fn downpour() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_downpour"));
    c.env_remove("RUST_LOG");
    c
}

/// A finished `downpour train` run.
pub struct Run {
    /// The run directory (inside `_dir`).
    pub dir: PathBuf,
    /// The parsed report.
    pub report: RunReport,
    /// What the launcher printed.
    pub stdout: String,
    /// Keeps the directory alive for the test.
    _dir: tempfile::TempDir,
}

impl Run {
    /// The final weights.
    pub fn weights(&self) -> ParamSet {
        downpour_launch::weights::read_safetensors(&self.dir.join("weights.safetensors"))
            .expect("weights file")
    }

    /// The final test accuracy.
    pub fn accuracy(&self) -> f64 {
        self.report
            .final_metrics
            .test_accuracy
            .expect("a classification job")
    }
}

/// Runs `downpour train ARGS --quiet` in a fresh run directory and requires success.
pub fn train(args: &[&str]) -> Run {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("run");
    let out = downpour()
        .arg("train")
        .args(args)
        .args(["--quiet", "--run-dir"])
        .arg(&dir)
        .output()
        .expect("downpour runs");
    assert_success(&out, args);
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report written");
    let report: RunReport = serde_json::from_str(&text).expect("report parses");
    Run {
        dir,
        report,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        _dir: tmp,
    }
}

/// Panics with the process's output unless it succeeded.
pub fn assert_success(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "downpour {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `downpour server` process on a free loopback port, killed on drop.
pub struct ServerProcess {
    /// The process.
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// Holds the job file and the address file.
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts a server for the job in `job_toml` (plus extra flags).
    pub fn start(job_toml: &str, extra: &[&str]) -> Self {
        Self::start_at(job_toml, extra, "127.0.0.1:0")
    }

    /// Starts a server listening on `listen`.
    pub fn start_at(job_toml: &str, extra: &[&str], listen: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let job = dir.path().join("job.toml");
        std::fs::write(&job, job_toml).expect("job written");
        let addr_file = dir.path().join("server.addr");
        let child = downpour()
            .args(["server", "--listen", listen, "--job"])
            .arg(&job)
            .arg("--port-file")
            .arg(&addr_file)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("server starts");
        let address = wait_for_line(&addr_file, Duration::from_secs(30));
        Self {
            child,
            address,
            _dir: dir,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `downpour worker` against `address`, its output discarded.
pub fn start_worker(address: &str, name: &str) -> Child {
    downpour()
        .args(["worker", "--server", address, "--name", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker starts")
}

/// Waits until `path` holds a complete line and returns it.
pub fn wait_for_line(path: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{} not written within {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every value of every tensor, as bits, for bit-exact comparisons.
pub fn bits(params: &ParamSet) -> Vec<(String, Vec<u32>)> {
    params
        .entries()
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.tensor.data().iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

/// Pids of live processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
        if cmdline.contains(needle) && !zombie {
            pids.push(pid);
        }
    }
    pids
}

/// Sends `sig` to `pid`.
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: sending a signal has no memory effects.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Waits for `child` to exit; kills it and fails the test after `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
