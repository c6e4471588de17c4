//! Writing the report: `--output DIR` → `DIR/config/…`, `--output X.tar.gz` → the same
//! paths in a reproducible gzip'd tar (fixed mtime, mode and owner). Files are written
//! to a temporary name and renamed, so a reader never sees half a report.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

pub const WORKLOAD_INFO_PATH: &str = "config/workload_info.json";
pub const STATUS_PATH: &str = "config/gather_status.json";
/// 2000-01-01T00:00:00Z: a fixed mtime makes archives of identical reports identical.
const FIXED_MTIME: u64 = 946_684_800;
/// Reading an archive back refuses entries larger than this.
const MAX_ENTRY_BYTES: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot write {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("archive {path}: entry {entry} is larger than {max} bytes")]
    EntryTooLarge {
        path: PathBuf,
        entry: String,
        max: u64,
    },
}

/// Where the report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    Directory(PathBuf),
    TarGz(PathBuf),
}

impl OutputTarget {
    /// `*.tar.gz` and `*.tgz` are archives; anything else is a directory.
    pub fn from_path(path: &Path) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase());
        match name {
            Some(n) if n.ends_with(".tar.gz") || n.ends_with(".tgz") => {
                OutputTarget::TarGz(path.to_owned())
            }
            _ => OutputTarget::Directory(path.to_owned()),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_owned(),
        cause: source,
    }
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `contents` to `path` through a temporary file and a rename.
fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), ArchiveError> {
    let tmp = temp_name(path);
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// Writes the report files (`(archive path, contents)`) to the target; returns the
/// path of the written `workload_info.json` (or of the archive).
pub fn write_report(
    target: &OutputTarget,
    files: &[(&str, &[u8])],
) -> Result<PathBuf, ArchiveError> {
    match target {
        OutputTarget::Directory(dir) => {
            for (name, contents) in files {
                let path = dir.join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                write_atomic(&path, |w| w.write_all(contents))?;
            }
            Ok(dir.join(WORKLOAD_INFO_PATH))
        }
        OutputTarget::TarGz(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            write_atomic(path, |w| {
                let mut tar = tar::Builder::new(GzEncoder::new(w, Compression::default()));
                tar.mode(tar::HeaderMode::Deterministic);
                let mut dirs: Vec<&str> = files
                    .iter()
                    .filter_map(|(name, _)| name.rsplit_once('/').map(|(d, _)| d))
                    .collect();
                dirs.dedup();
                for d in dirs {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_mtime(FIXED_MTIME);
                    h.set_size(0);
                    tar.append_data(&mut h, format!("{d}/"), std::io::empty())?;
                }
                for (name, contents) in files {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_mtime(FIXED_MTIME);
                    h.set_size(contents.len() as u64);
                    tar.append_data(&mut h, name, *contents)?;
                }
                tar.into_inner()?.finish()?;
                Ok(())
            })?;
            Ok(path.clone())
        }
    }
}

/// Reads the regular files of a report archive back (used by tests and for checks).
pub fn read_tar_gz(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, ArchiveError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut out = BTreeMap::new();
    for entry in archive.entries().map_err(io_err(path))? {
        let entry = entry.map_err(io_err(path))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry
            .path()
            .map_err(io_err(path))?
            .to_string_lossy()
            .into_owned();
        if entry.header().size().map_err(io_err(path))? > MAX_ENTRY_BYTES {
            return Err(ArchiveError::EntryTooLarge {
                path: path.to_owned(),
                entry: name,
                max: MAX_ENTRY_BYTES,
            });
        }
        let mut buf = Vec::new();
        entry
            .take(MAX_ENTRY_BYTES)
            .read_to_end(&mut buf)
            .map_err(io_err(path))?;
        out.insert(name, buf);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_kind_from_the_path() {
        assert_eq!(
            OutputTarget::from_path(Path::new("/x/report.tar.gz")),
            OutputTarget::TarGz("/x/report.tar.gz".into())
        );
        assert_eq!(
            OutputTarget::from_path(Path::new("r.TGZ")),
            OutputTarget::TarGz("r.TGZ".into())
        );
        assert_eq!(
            OutputTarget::from_path(Path::new("/x/out")),
            OutputTarget::Directory("/x/out".into())
        );
    }

    #[test]
    fn directory_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let p = write_report(
            &OutputTarget::Directory(out.clone()),
            &[(WORKLOAD_INFO_PATH, b"{}"), (STATUS_PATH, b"{\"s\":1}")],
        )
        .unwrap();
        assert_eq!(p, out.join("config/workload_info.json"));
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        assert_eq!(std::fs::read(out.join(STATUS_PATH)).unwrap(), b"{\"s\":1}");
        let leftovers: Vec<_> = std::fs::read_dir(out.join("config"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn tar_gz_round_trips_and_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("sub/a.tar.gz");
        let b = dir.path().join("b.tar.gz");
        let files: [(&str, &[u8]); 2] =
            [(WORKLOAD_INFO_PATH, b"{\"pods\":1}"), (STATUS_PATH, b"{}")];
        write_report(&OutputTarget::TarGz(a.clone()), &files).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        write_report(&OutputTarget::TarGz(b.clone()), &files).unwrap();
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "byte-identical"
        );
        let back = read_tar_gz(&a).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[WORKLOAD_INFO_PATH], b"{\"pods\":1}");
        let mut archive = tar::Archive::new(GzDecoder::new(File::open(&a).unwrap()));
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.mtime().unwrap(), FIXED_MTIME);
            let mode = h.mode().unwrap();
            assert!(mode == 0o644 || mode == 0o755, "{mode:o}");
            assert_eq!(h.uid().unwrap(), 0);
        }
    }

    #[test]
    fn unwritable_target_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let e = write_report(
            &OutputTarget::Directory(blocker.join("out")),
            &[(WORKLOAD_INFO_PATH, b"{}")],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("cannot write"), "{e}");
    }
}
