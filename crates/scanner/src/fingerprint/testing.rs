//! Fixtures shared by the fingerprint tests.

use std::path::Path;

use super::Root;
use crate::process::ProcessFacts;

/// A root made of the given files (paths inside the root, contents as bytes).
pub(crate) fn root_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let p = dir.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap_or(Path::new("/"))).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let root = Root::open(dir.path()).unwrap();
    (dir, root)
}

/// [`root_with`] for text contents.
pub(crate) fn root_with_text(files: &[(&str, &str)]) -> (tempfile::TempDir, Root) {
    let bytes: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_bytes())).collect();
    root_with(&bytes)
}

/// A process as the scanner would describe it, working in `/app`.
pub(crate) fn process(comm: &str, exe: Option<&str>, argv: &[&str]) -> ProcessFacts {
    ProcessFacts {
        comm: comm.into(),
        exe: exe.map(Into::into),
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        cwd: Some("/app".into()),
        ..Default::default()
    }
}
