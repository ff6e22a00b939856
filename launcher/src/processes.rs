//! Child processes of the launcher: started with their output in a log file, tied to the
//! launcher's life, stopped politely (SIGTERM) and then firmly (SIGKILL).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

/// One child process and where its output goes.
#[derive(Debug)]
pub struct ChildProcess {
    /// A label for messages (`server`, `worker-2`).
    pub name: String,
    /// The process. `kill_on_drop` is set, so dropping it kills the process.
    child: Child,
    /// Its stdout and stderr, interleaved.
    pub log: PathBuf,
    /// Its exit status, once reaped.
    exited: Option<ExitStatus>,
}

impl ChildProcess {
    /// Starts `program args…` with stdout and stderr appended to `log`, and the launcher's
    /// environment changed by `env`: `(name, Some(value))` sets a variable (secrets travel
    /// this way, never in argv, which `ps` shows), `(name, None)` removes it.
    ///
    /// On Linux the child receives SIGTERM if the launcher dies, so no process is orphaned
    /// even when the launcher is killed with SIGKILL.
    ///
    /// # Errors
    /// The OS error when the log cannot be created or the program cannot start.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, Option<&str>)],
        log: PathBuf,
    ) -> std::io::Result<Self> {
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C at the terminal reaches the launcher only, which
            // then stops the workers, saves the last version and stops the servers in order.
            .process_group(0);
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        #[cfg(target_os = "linux")]
        // SAFETY: the closure runs in the forked child before exec and calls only
        // `prctl`, which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
            exited: None,
        })
    }

    /// Its exit status if it has exited, without waiting.
    ///
    /// # Errors
    /// The OS error from `waitpid`.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    /// Asks it to stop (SIGTERM), waits up to `grace`, then kills it (SIGKILL).
    pub async fn stop(&mut self, grace: Duration) {
        if matches!(self.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: `kill` with a pid we own and a valid signal number has no memory effects.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => self.exited = Some(status),
            _ => {
                let _ = self.child.kill().await;
                self.exited = self.child.try_wait().ok().flatten();
            }
        }
    }

    /// The last `lines` lines of its log.
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
