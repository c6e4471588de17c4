//! Container IDs as Kubernetes writes them in `status.containerStatuses[].containerID`.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a container ID. The message names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerIdError {
    #[error(
        "invalid container ID {0:?}: expected <runtime>://<64 lowercase hex> or 64 lowercase hex"
    )]
    Malformed(String),
}

/// A full container ID, with the runtime prefix it was given (if any).
///
/// Accepted forms: `<runtime>://<64 lowercase hex>` (`cri-o://…`, `containerd://…`,
/// `docker://…`) and the bare 64-hex form. Short IDs are rejected: the CRI only
/// matches full IDs, and a prefix match could select the wrong container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId {
    runtime: Option<String>,
    hex: String,
}

impl ContainerId {
    /// The 64-hex ID the container runtime knows.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The runtime prefix (`cri-o`, `containerd`, …) if the ID carried one.
    pub fn runtime(&self) -> Option<&str> {
        self.runtime.as_deref()
    }

    /// The ID as Kubernetes writes it, using `runtime` when the ID carried no prefix.
    pub fn kubernetes_form(&self, default_runtime: &str) -> String {
        let runtime = self.runtime.as_deref().unwrap_or(default_runtime);
        format!("{runtime}://{}", self.hex)
    }

    /// Build from a runtime name and a 64-hex ID (as listed by the CRI).
    pub fn from_parts(runtime: &str, hex: &str) -> Result<Self, ContainerIdError> {
        format!("{runtime}://{hex}").parse()
    }
}

fn is_runtime_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn is_full_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl FromStr for ContainerId {
    type Err = ContainerIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || ContainerIdError::Malformed(truncate_for_error(s));
        let (runtime, hex) = match s.split_once("://") {
            Some((runtime, hex)) if is_runtime_name(runtime) => (Some(runtime.to_owned()), hex),
            Some(_) => return Err(malformed()),
            None => (None, s),
        };
        if !is_full_hex(hex) {
            return Err(malformed());
        }
        Ok(ContainerId {
            runtime,
            hex: hex.to_owned(),
        })
    }
}

/// Error messages echo the input; keep a hostile 1 MiB "ID" from flooding logs.
fn truncate_for_error(s: &str) -> String {
    const MAX: usize = 100;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.runtime {
            Some(r) => write!(f, "{r}://{}", self.hex),
            None => f.write_str(&self.hex),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn accepts_prefixed_and_bare_forms() {
        for runtime in ["cri-o", "containerd", "docker"] {
            let id: ContainerId = format!("{runtime}://{HEX}").parse().unwrap();
            assert_eq!(id.runtime(), Some(runtime));
            assert_eq!(id.hex(), HEX);
            assert_eq!(id.to_string(), format!("{runtime}://{HEX}"));
            assert_eq!(id.kubernetes_form("other"), format!("{runtime}://{HEX}"));
        }
        let bare: ContainerId = HEX.parse().unwrap();
        assert_eq!(bare.runtime(), None);
        assert_eq!(bare.to_string(), HEX);
        assert_eq!(bare.kubernetes_form("cri-o"), format!("cri-o://{HEX}"));
    }

    #[test]
    fn rejects_everything_else() {
        let upper = HEX.to_uppercase();
        let short = &HEX[..12];
        let long = format!("{HEX}0");
        let cases = [
            String::new(),
            short.to_owned(),
            long,
            upper,
            format!("cri-o://{short}"),
            format!("://{HEX}"),
            format!("CRI-O://{HEX}"),
            format!("cri o://{HEX}"),
            format!("cri-o:/{HEX}"),
            format!("cri-o://{HEX} "),
            format!("cri-o://cri-o://{HEX}"),
            "cri-o://test-container-1".to_owned(),
        ];
        for case in cases {
            let err = case.parse::<ContainerId>().unwrap_err();
            assert!(err.to_string().contains("invalid container ID"), "{case:?}");
        }
    }

    #[test]
    fn error_message_is_bounded() {
        let huge = "x".repeat(1 << 20);
        let err = huge.parse::<ContainerId>().unwrap_err().to_string();
        assert!(err.len() < 300, "{}", err.len());
    }
}
