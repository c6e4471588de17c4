//! Daemons the tests start and how tests talk to them: the real `runtime-extractor scanner`
//! ([`ScannerDaemon`]), any other process held by a kill-on-drop guard ([`TestProcess`]),
//! ports free on several loopback addresses, readiness waits, a plain GET of a health port and
//! Prometheus samples. testkit cannot name the extractor's binary itself (the extractor's
//! tests depend on testkit), so callers pass `env!("CARGO_BIN_EXE_runtime-extractor")`.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rustix::process::{kill_process, Pid, Signal};

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

/// A process a test started: resumed if the test had stopped it, then killed by PID and reaped
/// on drop, so a failing assertion leaves nothing running.
pub struct TestProcess {
    child: Option<Child>,
    what: String,
}

impl TestProcess {
    /// Spawn `cmd`; `what` names it in messages.
    pub fn spawn(cmd: &mut Command, what: &str) -> anyhow::Result<TestProcess> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        Ok(TestProcess {
            child: Some(child),
            what: what.to_owned(),
        })
    }

    /// Its PID (panics once [`Self::kill_now`] has ended it).
    pub fn pid(&self) -> u32 {
        match &self.child {
            Some(child) => child.id(),
            None => panic!("{} already ended", self.what),
        }
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing.
    pub fn stop(&self) {
        self.signal(Signal::STOP);
    }

    /// SIGCONT after [`Self::stop`].
    pub fn resume(&self) {
        self.signal(Signal::CONT);
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.pid() as i32).expect("a child's PID is positive");
        if let Err(e) = kill_process(pid, signal) {
            panic!("{signal:?} to {}: {e}", self.what);
        }
    }

    /// SIGKILL and reap now.
    pub fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The exit status if it has ended on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for TestProcess {
    fn drop(&mut self) {
        // A stopped process would not die until continued.
        if self.exited().is_none() {
            if let Some(pid) = self
                .child
                .as_ref()
                .and_then(|c| Pid::from_raw(c.id() as i32))
            {
                let _ = kill_process(pid, Signal::CONT);
            }
        }
        self.kill_now();
    }
}

/// `127.0.0.<last>`: posing as a node's pod IP.
pub fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP port free on every one of `ips` (extractor pods share one port, as pod IPs do).
pub fn free_port(ips: &[IpAddr]) -> u16 {
    for _ in 0..50 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding an ephemeral port on 127.0.0.1")
            .port();
        if ips
            .iter()
            .all(|ip| TcpListener::bind(SocketAddr::new(*ip, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// Poll `ready` every 10 ms; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Plain HTTP/1.1 GET (serve's health port): status and body; `None` if nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The value of one sample of a Prometheus text exposition, `series` written as it appears
/// (`name{label="v"}`); 0 when absent, as a counter never incremented.
pub fn metric(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| {
            v.trim()
                .parse()
                .unwrap_or_else(|e| panic!("sample {series} = {v:?}: {e}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_reads_the_exact_series() {
        let text = "# HELP x\nx_total 3\nx_total{result=\"ok\"} 7\nx_total_other 9\n";
        assert_eq!(metric(text, "x_total"), 3.0);
        assert_eq!(metric(text, "x_total{result=\"ok\"}"), 7.0);
        assert_eq!(metric(text, "y_total"), 0.0);
    }

    #[test]
    fn a_stopped_process_is_still_ended_on_drop() {
        let p = TestProcess::spawn(Command::new("sleep").arg("3600"), "sleep").unwrap();
        let pid = p.pid();
        p.stop();
        drop(p);
        // Reaped: the PID no longer names our child (a zombie would still be listed).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!stat.contains("(sleep)"), "{stat}");
    }
}
