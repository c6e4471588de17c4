//! The real `runtime-extractor scanner` daemon, started by tests. testkit cannot name the
//! extractor's binary itself (the extractor's tests depend on testkit), so callers pass
//! `env!("CARGO_BIN_EXE_runtime-extractor")`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// A running scanner; killed on drop.
pub struct ScannerDaemon {
    pub child: Child,
    /// Its unix socket (accepting connections once `start` returns).
    pub socket: PathBuf,
}

impl ScannerDaemon {
    /// `binary scanner --socket <socket> --cri-socket <cri_socket>`, then wait until the
    /// socket accepts connections (at most 20 s).
    pub fn start(binary: &Path, cri_socket: &Path, socket: &Path) -> anyhow::Result<Self> {
        let child = Command::new(binary)
            .args(["scanner", "--log", "warn", "--socket"])
            .arg(socket)
            .arg("--cri-socket")
            .arg(cri_socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {} scanner", binary.display()))?;
        let mut daemon = ScannerDaemon {
            child,
            socket: socket.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            if let Some(status) = daemon.child.try_wait()? {
                bail!("the scanner exited before listening ({status})");
            }
            if Instant::now() > deadline {
                bail!(
                    "the scanner did not listen on {} within 20 s",
                    socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(daemon)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ScannerDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}
