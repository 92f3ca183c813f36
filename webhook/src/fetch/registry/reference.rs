//! Image references (`registry/repository:tag@digest`) read by hand, with Docker's grammar.
//!
//! `oci-client`'s own parser (oci-spec's `Reference::from_str`) compiles one regular expression
//! on first use and keeps it for the life of the process: its tag, `\w[\w.-]{0,127}`, is a bounded
//! repetition of Unicode's word class, and that automaton took 30 MB of memory and tens of
//! milliseconds on the webhook's first image lookup. This reads the same language (with ASCII
//! `\w`, as Docker's and containerd's grammar has it: Go's `\w` is ASCII) into the same
//! [`Reference`], with the same errors, and allocates only the parts.

use oci_client::{ParseError, Reference};

/// `NAME_TOTAL_LENGTH_MAX` of Docker's grammar: the repository, `library/` included.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const MAX_TAG: usize = 128;

/// The image as oci-client's `Reference` (`docker.io` and `library/` filled in, `latest` when
/// neither a tag nor a digest is given).
pub fn parse(image: &str) -> Result<Reference, ParseError> {
    if image.is_empty() {
        return Err(ParseError::NameEmpty);
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) if is_digest(digest) => (rest, Some(digest)),
        Some(_) => return Err(ParseError::ReferenceInvalidFormat),
        None => (image, None),
    };
    // A ':' after the last '/' starts the tag; one before it is the registry's port.
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    if tag.is_some_and(|t| !is_tag(t)) || !is_name(name) {
        return Err(ParseError::ReferenceInvalidFormat);
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ParseError::NameTooLong);
    }
    if let Some(digest) = digest {
        let (algorithm, hex) = digest.split_once(':').unwrap_or_default();
        let expected = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(ParseError::DigestUnsupported),
        };
        if hex.len() != expected {
            return Err(ParseError::DigestInvalidLength);
        }
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into()),
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest.into()),
        (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or("latest").into()),
    })
}

/// `[\w][\w.-]{0,127}`, ASCII.
fn is_tag(tag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    tag.len() <= MAX_TAG && tag.starts_with(word) && tag.chars().all(|c| word(c) || c == '.' || c == '-')
}

/// `algorithm:hex`: `[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else { return false };
    hex.len() >= 32
        && hex.bytes().all(|c| c.is_ascii_hexdigit())
        && algorithm
            .split(['-', '_', '+', '.'])
            .all(|part| part.starts_with(|c: char| c.is_ascii_alphabetic()) && part.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The name: path components, the first of which may instead be a registry host (with a port).
fn is_name(name: &str) -> bool {
    match name.split_once('/') {
        None => is_path_component(name),
        Some((first, rest)) => rest.split('/').all(is_path_component) && (is_path_component(first) || is_domain(first)),
    }
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn is_path_component(part: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    part.starts_with(alnum)
        && part.ends_with(alnum)
        && part.split(alnum).all(|separator| matches!(separator, "." | "_" | "__") || separator.chars().all(|c| c == '-'))
}

/// Host name labels (letters, digits, inner hyphens) joined by `.`, then an optional `:port`.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let label_ok = |l: &str| l.starts_with(alnum) && l.ends_with(alnum) && l.chars().all(|c| alnum(c) || c == '-');
    host.split('.').all(label_ok) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

/// Docker Hub's defaults: a first component without `.` or `:` (and not `localhost`) is part of
/// the repository, on `docker.io`; a one-component repository there is under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((left, right)) if left.contains(['.', ':']) || left == "localhost" => (left.to_string(), right.to_string()),
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".into();
    }
    if domain == "docker.io" && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// oci-client's own parser (a regular expression) as the reference.
    fn theirs(image: &str) -> Result<Reference, ParseError> {
        image.parse::<Reference>()
    }

    #[test]
    fn reads_as_oci_client_did() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cases = [
            "busybox".to_string(),
            "busybox:1.36".into(),
            "library/busybox".into(),
            "docker.io/busybox".into(),
            "index.docker.io/library/busybox:latest".into(),
            "test.com:tag".into(),
            "test.com:5000".into(),
            "test.com/repo:tag".into(),
            "test:5000/repo".into(),
            "test:5000/repo:tag".into(),
            "localhost/a".into(),
            "localhost:5000/a/b/c:v1.2-rc_3".into(),
            "127.0.0.1:5000/app:1".into(),
            "my-registry.example.com:443/team/app__x.y-z---w:tag".into(),
            format!("ghcr.io/a/b@{digest}"),
            format!("ghcr.io/a/b:1@{digest}"),
            format!("b@{digest}"),
            "a@sha384:0123456789abcdef0123456789abcdef".into(),
            format!("a@sha384:{}", "cd".repeat(48)),
            format!("a@sha512:{}", "ab".repeat(64)),
            format!("a@sha512:{}", "ab".repeat(63)),
            format!("a:1@Sha-256+x.y_z:{}", "ef".repeat(32)),
            "a@md5:0123456789abcdef0123456789abcdef".into(),
            "a@sha256:0123456789abcdef0123456789abcdef".into(),
            "a@sha256:xyz".into(),
            "a@sha256".into(),
            "a@".into(),
            "@sha256:0123456789abcdef0123456789abcdef".into(),
            "".into(),
            "Uppercase".into(),
            "UPPER.io/a".into(),
            "a/Upper".into(),
            "a:".into(),
            ":tag".into(),
            "a:-tag".into(),
            "a:.tag".into(),
            "a:_tag".into(),
            format!("a:{}", "t".repeat(128)),
            format!("a:{}", "t".repeat(129)),
            format!("a/{}", "b".repeat(249)),
            format!("a/{}", "b".repeat(254)),
            "b".repeat(250),
            "a//b".into(),
            "a/b/".into(),
            "/a".into(),
            "a..b".into(),
            "a._b".into(),
            "a___b".into(),
            "a__b".into(),
            "a-b".into(),
            "a--b".into(),
            "-a".into(),
            "a-".into(),
            "-host.io/a".into(),
            "host-.io/a".into(),
            "host..io/a".into(),
            "host.io:/a".into(),
            "host.io:x/a".into(),
            "host.io:5000:1/a".into(),
            "host.io/a:b/c".into(),
            "a b".into(),
            "a:b c".into(),
            "[::1]:5000/a".into(),
            "é".into(),
        ];
        for image in &cases {
            assert_eq!(parse(image), theirs(image), "{image:?}");
        }
    }

    /// Many strings made of the grammar's characters: every answer (the reference or the error)
    /// is oci-client's.
    #[test]
    fn generated_references_read_as_oci_client_did() {
        let hex = "0123456789abcdef".repeat(4);
        let words = format!("a b z 0 9 A Z . _ __ - -- / : @ 5000 io localhost docker.io index.docker.io library sha256: {} {hex}", &hex[..32]);
        let pieces: Vec<&str> = words.split(' ').collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..200_000 {
            let len = 1 + next() % 8;
            let image: String = (0..len).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect();
            let ours = parse(&image);
            assert_eq!(ours, theirs(&image), "{image:?}");
            accepted += usize::from(ours.is_ok());
        }
        assert!(accepted > 10_000, "too few valid references were generated ({accepted}) to compare");
    }

    /// Reading a reference allocates its parts and nothing else. oci-client's parser built an
    /// automaton of about 30 MB on its first use, kept for the life of the process.
    #[test]
    fn reading_a_reference_allocates_only_its_parts() {
        let before = crate::test_alloc::allocated();
        let r = parse("registry.example.com:5000/team/app:1.2.3").unwrap();
        let used = crate::test_alloc::allocated() - before;
        assert!(used < 1024, "reading one reference allocated {used} bytes");
        assert_eq!((r.registry(), r.repository(), r.tag(), r.digest()), ("registry.example.com:5000", "team/app", Some("1.2.3"), None));
    }

    /// The one difference, on purpose: a tag is ASCII, as in Docker's grammar.
    #[test]
    fn a_tag_is_ascii() {
        assert!(theirs("app:vé").is_ok());
        assert_eq!(parse("app:vé"), Err(ParseError::ReferenceInvalidFormat));
    }
}
