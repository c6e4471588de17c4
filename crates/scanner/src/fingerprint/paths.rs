//! Container paths as strings: joined, split and named the same way by every detector.
//! Pure string work: `..` and symlinks are resolved later, inside the container, by the
//! [`Root`](super::Root) that opens them.

/// `rel` against `base`; an absolute `rel` stands alone.
pub fn join_path(base: &str, rel: &str) -> String {
    if rel.starts_with('/') || base.is_empty() || base == "." {
        rel.to_owned()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), rel)
    }
}

/// Directory part of a path: `/a/b.jar` → `/a`, `b.jar` → `.`, `/b.jar` → `/`.
pub fn parent_dir(path: &str) -> &str {
    let path = path.trim_end_matches('/');
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => path.get(..i).unwrap_or("/"),
        None => ".",
    }
}

/// Directory of an executable's path, absolute: `/usr/bin/node` → `/usr/bin`; a bare name
/// or `/node` → `/`.
pub fn dirname(path: &str) -> String {
    match parent_dir(path) {
        "." => "/".to_owned(),
        dir => dir.to_owned(),
    }
}

/// Last component of a path, ignoring trailing slashes: `/usr/bin/node` → `node`,
/// `/a/b/` → `b`.
pub fn file_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_split_and_name() {
        assert_eq!(
            join_path("/quarkus-app", "quarkus-run.jar"),
            "/quarkus-app/quarkus-run.jar"
        );
        assert_eq!(join_path("/", "a"), "/a");
        assert_eq!(join_path("/x/", "/abs"), "/abs");
        assert_eq!(join_path(".", "a"), "a");
        assert_eq!(parent_dir("/a/b.jar"), "/a");
        assert_eq!(parent_dir("/b.jar"), "/");
        assert_eq!(parent_dir("b.jar"), ".");
        assert_eq!(parent_dir("/a/b/"), "/a");
        assert_eq!(dirname("/usr/bin/node"), "/usr/bin");
        assert_eq!(dirname("/node"), "/");
        assert_eq!(dirname("node"), "/");
        assert_eq!(file_name("/usr/bin/node"), "node");
        assert_eq!(file_name("/a/b/"), "b");
        assert_eq!(file_name("node"), "node");
        assert_eq!(file_name(""), "");
    }
}
