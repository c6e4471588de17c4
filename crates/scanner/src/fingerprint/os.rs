//! Operating system of a container, from its os-release file.
//!
//! Like the reference (`fpr_os`), `ID` and `VERSION_ID` from `/etc/os-release`, parsed as
//! properties; unlike it, `/usr/lib/os-release` is tried when `/etc/os-release` is missing
//! (os-release(5) says so), and single quotes are stripped as well as double quotes.

use super::Root;

/// Most bytes of os-release read (real files are under 1 KB).
const MAX_OS_RELEASE: u64 = 64 * 1024;
const PATHS: &[&str] = &["/etc/os-release", "/usr/lib/os-release"];

/// `ID` and `VERSION_ID` of the container's os-release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
}

/// The OS of the container under `root`; `None` when no os-release file can be read. A file
/// without the keys gives empty fields (the reference writes an empty `os.txt` then).
pub fn detect(root: &Root) -> Option<OsRelease> {
    for path in PATHS {
        match root.read_string_bounded(path, MAX_OS_RELEASE) {
            Ok(text) => return Some(parse(&text)),
            Err(e) => tracing::debug!(path, error = %e, "os-release not usable"),
        }
    }
    None
}

pub(crate) fn parse(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for (key, value) in properties(text) {
        match key {
            "ID" => os.id = value.to_owned(),
            "VERSION_ID" => os.version_id = value.to_owned(),
            _ => {}
        }
    }
    os
}

/// `key=value` lines: blank and `#` lines skipped, split at the first `=`, spaces trimmed,
/// then quotes (`"` and `'`) trimmed from both ends of key and value. Later keys win.
fn properties(text: &str) -> impl Iterator<Item = (&str, &str)> {
    fn unquote(s: &str) -> &str {
        s.trim().trim_matches(|c| c == '"' || c == '\'')
    }
    text.lines().filter_map(move |line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (key, value) = line.split_once('=')?;
        Some((unquote(key), unquote(value)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::testing::root_with_text as root_with;
    use std::os::unix::fs::symlink;

    fn os(id: &str, version: &str) -> Option<OsRelease> {
        Some(OsRelease {
            id: id.into(),
            version_id: version.into(),
        })
    }

    #[test]
    fn real_world_files() {
        let ubi = "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"8.10 (Ootpa)\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"8.10\"\n";
        let (_d, root) = root_with(&[("/etc/os-release", ubi)]);
        assert_eq!(detect(&root), os("rhel", "8.10"));
        let alpine = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.2\nPRETTY_NAME=\"Alpine Linux v3.20\"\n";
        let (_d, root) = root_with(&[("/etc/os-release", alpine)]);
        assert_eq!(detect(&root), os("alpine", "3.20.2"));
    }

    #[test]
    fn quotes_comments_spaces_and_crlf() {
        let text = "# comment ID=wrong\n\n  ID = 'debian' \r\nVERSION_ID=\"12\"\r\nVERSION_CODENAME=bookworm\nnot a property\nURL=http://x/?a=b\n";
        let (_d, root) = root_with(&[("/etc/os-release", text)]);
        assert_eq!(detect(&root), os("debian", "12"));
        assert_eq!(
            properties("URL=http://x/?a=b").collect::<Vec<_>>(),
            vec![("URL", "http://x/?a=b")]
        );
    }

    #[test]
    fn falls_back_to_usr_lib() {
        let (_d, root) = root_with(&[("/usr/lib/os-release", "ID=ol\nVERSION_ID=\"10.0\"\n")]);
        assert_eq!(detect(&root), os("ol", "10.0"));
        // /etc wins when both exist.
        let (_d, root) = root_with(&[
            ("/etc/os-release", "ID=centos\nVERSION_ID=7\n"),
            ("/usr/lib/os-release", "ID=ol\n"),
        ]);
        assert_eq!(detect(&root), os("centos", "7"));
    }

    #[test]
    fn the_usual_relative_symlink_is_followed_inside_the_root() {
        let (d, root) = root_with(&[("/usr/lib/os-release", "ID=debian\nVERSION_ID=\"13\"\n")]);
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        symlink("../usr/lib/os-release", d.path().join("etc/os-release")).unwrap();
        assert_eq!(detect(&root), os("debian", "13"));
    }

    #[test]
    fn missing_keys_and_missing_file() {
        let (_d, root) = root_with(&[("/etc/os-release", "NAME=Something\n")]);
        assert_eq!(detect(&root), os("", ""));
        let (_d, root) = root_with(&[("/etc/hostname", "x")]);
        assert_eq!(detect(&root), None);
    }

    #[test]
    fn hostile_files_are_bounded_and_confined() {
        // A 1 GiB sparse file: refused by its size, without reading it.
        let (d, root) = root_with(&[]);
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        let big = std::fs::File::create(d.path().join("etc/os-release")).unwrap();
        big.set_len(1 << 30).unwrap();
        assert_eq!(detect(&root), None);

        // A FIFO nobody writes to: refused without blocking.
        let (d, root) = root_with(&[("/usr/lib/os-release", "ID=fallback\n")]);
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &d.path().join("etc/os-release"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        // Refused without blocking (the test would hang otherwise).
        assert_eq!(detect(&root), os("fallback", ""));

        // An absolute symlink to a host file resolves inside the root, where nothing is.
        let host = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(host.path(), "ID=host\nVERSION_ID=1\n").unwrap();
        let (d, root) = root_with(&[]);
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        symlink(host.path(), d.path().join("etc/os-release")).unwrap();
        assert_eq!(detect(&root), None);
        let escape = format!("../../../../../../..{}", host.path().display());
        std::fs::remove_file(d.path().join("etc/os-release")).unwrap();
        symlink(&escape, d.path().join("etc/os-release")).unwrap();
        assert_eq!(detect(&root), None);
    }
}
