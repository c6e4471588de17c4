//! TODO: being written.
use super::Root;

/// `ID` and `VERSION_ID` of the container's os-release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
}

pub fn detect(_root: &Root) -> Option<OsRelease> {
    None
}
