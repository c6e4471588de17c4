//! A process's identity: its PID plus its start time (field 22 of `/proc/<pid>/stat`, clock
//! ticks after boot). A PID alone can be reused; the pair cannot within one boot. The scanner
//! reports the pair for every container, and whoever holds a result checks it with
//! [`parse_stat`] before trusting it again.
//!
//! `/proc/<pid>/stat` of a container's process is hostile input: `comm` (field 2) is chosen by
//! the process and may hold spaces, parentheses and newlines, so parsing starts after the
//! *last* `)`.

use std::io::Read as _;
use std::path::Path;

/// Longest `stat` line read (a real one is under 1 KiB).
pub const MAX_STAT_BYTES: u64 = 4096;

/// The fields of `/proc/<pid>/stat` that identify a process and its place in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: `R`, `S`, `Z`, ...
    pub state: char,
    /// Field 4.
    pub ppid: u32,
    /// Field 22.
    pub start_time: u64,
}

impl Stat {
    /// A zombie or a dead process no longer runs the workload it was scanned for.
    pub fn is_running(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// Parse one `stat` line; `None` when it is not one.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let close = text.rfind(')')?;
    let rest = text.get(close.checked_add(1)?..)?;
    let mut fields = rest.split_ascii_whitespace();
    // `rest` starts at field 3 (state); ppid is field 4 and starttime field 22.
    let state = single_char(fields.next()?)?;
    let ppid = fields.next()?.parse().ok()?;
    let start_time = fields.nth(17)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        start_time,
    })
}

fn single_char(field: &str) -> Option<char> {
    let mut chars = field.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

/// Read and parse `<proc_root>/<pid>/stat`, bounded. `None` when the process is gone or the
/// file is not a `stat` line.
pub fn read_stat(proc_root: &Path, pid: u32) -> Option<Stat> {
    let file = std::fs::File::open(proc_root.join(pid.to_string()).join("stat")).ok()?;
    let mut text = String::new();
    file.take(MAX_STAT_BYTES).read_to_string(&mut text).ok()?;
    parse_stat(&text)
}

/// The process `pid` that started at `start_time` still runs, as seen through `proc_root`.
pub fn still_running(proc_root: &Path, pid: u32, start_time: u64) -> bool {
    pid > 0
        && read_stat(proc_root, pid).is_some_and(|s| s.is_running() && s.start_time == start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_comm_does_not_shift_fields() {
        let text = "42 (a) b) (c) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        let s = parse_stat(text).unwrap();
        assert_eq!(
            s,
            Stat {
                state: 'S',
                ppid: 7,
                start_time: 123456
            }
        );
        assert!(s.is_running());
        let nl = "9 (x\n) Z 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0";
        let z = parse_stat(nl).unwrap();
        assert_eq!((z.state, z.start_time), ('Z', 77));
        assert!(!z.is_running());
    }

    #[test]
    fn not_a_stat_line() {
        for bad in [
            "",
            "garbage",
            "1 (x) S",
            "1 (x) SS 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",
            "1 (x) S -1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",
            "1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -5",
            "1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn this_process_is_running_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let stat = read_stat(Path::new("/proc"), me).unwrap();
        assert!(still_running(Path::new("/proc"), me, stat.start_time));
        assert!(!still_running(
            Path::new("/proc"),
            me,
            stat.start_time.wrapping_add(1)
        ));
        assert!(!still_running(Path::new("/proc"), 0, stat.start_time));
    }
}
