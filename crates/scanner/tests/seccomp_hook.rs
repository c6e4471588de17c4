//! A reader that is made to misbehave after its confinement is installed (a hook compiled into
//! this test binary only, which acts as its own sandbox helper): `execve`, `fork`, `socket` and
//! `ptrace` each kill it with SIGSYS before they do anything, and nothing it tried to run ran.
//! A reader that spins forever past its deadline, reading a uid-1000 workload, dies at the
//! deadline by its own SIGKILL timer although the scanner holds no CAP_KILL.
//! Needs root (the helper joins a mount namespace); fails elsewhere. No libtest harness: the
//! helper must start single-threaded.

use std::process::Command;
use std::time::Duration;

use scanner::process::Procfs;
use scanner::sandbox::{self, JobMode, SandboxConfig, SandboxError};

const MARKER: &str = "/tmp/runtime-insights-seccomp-hook-ran";

fn exec_hook() {
    let sh = c"/bin/sh";
    let script = std::ffi::CString::new(format!("touch {MARKER}")).unwrap_or_default();
    let _ = nix::unistd::execv(sh, &[sh, c"-c", script.as_c_str()]);
}

#[allow(unsafe_code)] // fork(2) as the misbehaviour under test; the child only exits
fn fork_hook() {
    // SAFETY: the helper is single-threaded; the child calls only _exit.
    if let Ok(nix::unistd::ForkResult::Child) = unsafe { nix::unistd::fork() } {
        std::process::exit(0);
    }
}

fn socket_hook() {
    let _ = std::net::TcpStream::connect("127.0.0.1:9");
}

#[allow(unsafe_code)] // the raw ptrace(2) call under test
fn ptrace_hook() {
    // SAFETY: PTRACE_SEIZE takes no pointer arguments; the call only asks the kernel.
    let _ = unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_SEIZE, 1, 0, 0) };
}

fn spin_hook() {
    loop {
        std::hint::spin_loop();
    }
}

/// Processes other than this one running this test binary (helpers left behind).
fn helpers_alive() -> Vec<u32> {
    let me = std::process::id();
    let exe = std::env::current_exe().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_ref() == Some(&exe))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(sandbox::HELPER_ARG) {
        let hook: Option<sandbox::Hook> = match args.get(2).map(String::as_str) {
            Some("exec") => Some(exec_hook),
            Some("fork") => Some(fork_hook),
            Some("socket") => Some(socket_hook),
            Some("ptrace") => Some(ptrace_hook),
            Some("spin") => Some(spin_hook),
            _ => None,
        };
        std::process::exit(sandbox::helper_main_with(hook));
    }
    testkit::rootfs::require_root("seccomp hook");
    let _ = std::fs::remove_file(MARKER);
    let mut target = Command::new("sleep").arg("300").spawn().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = |hook: &str| SandboxConfig {
        helper: std::env::current_exe().unwrap(),
        helper_args: vec![sandbox::HELPER_ARG.to_owned(), hook.to_owned()],
        timeout: Duration::from_secs(10),
        ..SandboxConfig::default()
    };
    let run = |hook: &str| {
        let pinned = Procfs::default().pin(target.id()).unwrap();
        rt.block_on(sandbox::run(&config(hook), &pinned, JobMode::Container))
    };
    // Without misbehaviour the same helper answers: the kills below are the filter's.
    let report = run("none").unwrap();
    assert!(report.privileges.seccomp);
    for hook in ["exec", "fork", "socket", "ptrace"] {
        match run(hook) {
            Err(SandboxError::Failed { status, .. }) => {
                assert!(status.contains("SIGSYS"), "{hook}: {status}");
                println!("{hook}: killed ({status})");
            }
            other => panic!("{hook}: not killed by seccomp: {other:?}"),
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !std::path::Path::new(MARKER).exists(),
        "the program the reader tried to execute ran"
    );
    let _ = target.kill();
    let _ = target.wait();

    // The deadline without CAP_KILL: capabilities are per thread, and this runtime runs on
    // this thread only.
    use std::os::unix::process::CommandExt as _;
    let mut user = Command::new("sleep")
        .arg("300")
        .uid(1000)
        .gid(1000)
        .spawn()
        .unwrap();
    caps::drop(None, caps::CapSet::Effective, caps::Capability::CAP_KILL).unwrap();
    let pinned = Procfs::default().pin(user.id()).unwrap();
    let mut spin = config("spin");
    spin.timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let err = rt
        .block_on(sandbox::run(&spin, &pinned, JobMode::Container))
        .unwrap_err();
    assert!(matches!(err, SandboxError::Timeout(_)), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        helpers_alive().is_empty(),
        "spinning helper outlived its deadline: {:?}",
        helpers_alive()
    );
    assert_eq!(sandbox::stuck_helpers(), 0);
    println!(
        "spin: killed by its own timer after {:?}",
        started.elapsed()
    );
    caps::raise(None, caps::CapSet::Effective, caps::Capability::CAP_KILL).unwrap();
    let _ = user.kill();
    let _ = user.wait();
    println!("seccomp_hook: ok");
}
