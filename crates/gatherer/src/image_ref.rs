//! Image IDs from image references, with the semantics of OpenShift library-go
//! `reference.Parse(s).ID` (the docker/distribution grammar, no normalisation,
//! go-digest validation).
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [domain "/"] path-component ["/" path-component]*     (≤ 255 chars)
//! domain     := domain-component ["." domain-component]* [":" port]
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path-component   := [a-z0-9]+ (separator [a-z0-9]+)*    separator := "." | "_" | "__" | "-"+
//! tag        := [\w][\w.-]{0,127}
//! digest     := algorithm ":" hex   (sha256/64, sha384/96, sha512/128 lowercase hex)
//! ```

const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// The digest of a canonical reference (`name@sha256:<64 hex>`), or `""` when the
/// reference does not parse or carries no digest (tag-only, upper-case path, bare digest…).
pub fn id_for_image_reference(s: &str) -> String {
    parse_digest(s).unwrap_or_default().to_owned()
}

fn parse_digest(s: &str) -> Option<&str> {
    if s.is_empty() {
        return None;
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        if !is_valid_digest(d) {
            return None;
        }
    }
    // A ':' after the last '/' starts the tag (a port is always followed by a '/').
    let last_slash = name_tag.rfind('/');
    let name = match name_tag.rfind(':') {
        Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
            if !is_tag(&name_tag[colon + 1..]) {
                return None;
            }
            &name_tag[..colon]
        }
        _ => name_tag,
    };
    if name.len() > NAME_TOTAL_LENGTH_MAX || !is_name(name) {
        return None;
    }
    digest
}

fn is_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    if parts.iter().all(|p| is_path_component(p)) {
        return true;
    }
    parts.len() >= 2 && is_domain(parts[0]) && parts[1..].iter().all(|p| is_path_component(p))
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_path_component(p: &str) -> bool {
    let b = p.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    if !is_alnum_lower(first) || !is_alnum_lower(last) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_domain(d: &str) -> bool {
    let (host, port) = match d.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    host.split('.').all(is_domain_component)
}

fn is_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && is_word(b[0])
        && b[1..].iter().all(|&x| is_word(x) || x == b'.' || x == b'-')
}

fn is_valid_digest(d: &str) -> bool {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return false;
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "3c87c572822935df60f0f5d3665bd376841a7fcfeb806b5f212de6a00e9a7b25";

    /// Test_idForImageReference of the reference operator.
    #[test]
    fn test_id_for_image_reference() {
        let hex = "abcdef1234567890abcdef1234567890abcdef1234567890abcdef1234567890";
        assert_eq!(
            id_for_image_reference(&format!("registry.io/image@sha256:{hex}")),
            format!("sha256:{hex}")
        );
        assert_eq!(id_for_image_reference("registry.io/image:latest"), "");
    }

    /// library-go TestParse cases, reduced to the ID (error ⇒ "").
    #[test]
    fn library_go_parse_cases() {
        let id = format!("sha256:{D}");
        let with_id = [
            format!("foo@{id}"),
            format!("bar/foo@{id}"),
            format!("bar/foo/baz@{id}"),
            format!("bar:5000/foo/baz@{id}"),
            format!("quay.io/org/app:v1@{id}"),
            format!("Registry.Example.COM:443/a/b@{id}"),
            format!("localhost/a__b-c--d.e@{id}"),
            // The first component may be an upper-case domain.
            format!("Upper/app@{id}"),
        ];
        for s in &with_id {
            assert_eq!(id_for_image_reference(s), id, "{s}");
        }
        let without = [
            "foo".to_owned(),
            "foo:tag".to_owned(),
            format!("sha256:{D}"),
            "bar:5000/foo/baz".to_owned(),
            "quay.io".to_owned(),
            "localhost:5000".to_owned(),
            "registry.io/foo/bar/:Tag".to_owned(),
            "https://bar:5000/foo/baz".to_owned(),
            format!("http://bar:5000/foo/baz@{id}"),
            "registry:3000/integration/imageStream:success".to_owned(),
            "registry:5000/integration/test-image-stream@sha256:00000000000000000000000000000001"
                .to_owned(),
            "abc@badid".to_owned(),
            "index.docker.io/mysql@sha256:bad".to_owned(),
            format!("@{id}"),
            ":tag".to_owned(),
            "bar/foo/baz////biz".to_owned(),
            "//foo/baz/biz".to_owned(),
            String::new(),
            format!("registry.io/Upper/app@{id}"),
            format!("registry.io/app@sha256:{}", D.to_uppercase()),
            format!("registry.io/app@md5:{D}"),
            format!("registry.io/app@{id}@{id}"),
            format!("a/-b@{id}"),
            format!("a/b.@{id}"),
            format!("a/b...c@{id}"),
            format!("-host.io/b@{id}"),
        ];
        for s in &without {
            assert_eq!(id_for_image_reference(s), "", "{s}");
        }
    }

    #[test]
    fn name_length_limit_is_255() {
        let id = format!("sha256:{D}");
        let ok = format!("bar:5000/{}/{}@{id}", "a".repeat(63), "b".repeat(182));
        assert_eq!(id_for_image_reference(&ok), id);
        let too_long = format!("bar:5000/{}/{}@{id}", "a".repeat(63), "b".repeat(183));
        assert_eq!(id_for_image_reference(&too_long), "");
    }

    #[test]
    fn other_digest_algorithms() {
        let d384 = format!("sha384:{}", "a".repeat(96));
        let d512 = format!("sha512:{}", "b".repeat(128));
        assert_eq!(id_for_image_reference(&format!("x/y@{d384}")), d384);
        assert_eq!(id_for_image_reference(&format!("x/y@{d512}")), d512);
        assert_eq!(
            id_for_image_reference(&format!("x/y@sha256:{}", "a".repeat(96))),
            ""
        );
    }
}
