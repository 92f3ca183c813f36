//! Who the caller is: the names in the client certificate that `TLS_CLIENT_CA_FILE` verified
//! (its subject's common name and its DNS subject alternative names), checked against
//! `TLS_CLIENT_ALLOWED_NAMES`. A cluster's client CA signs every kubelet's and user's
//! certificate too; without this check each of them would be served like the API server.
//!
//! The certificate has been verified by rustls before it is read here; this reader still treats
//! it as untrusted bytes (every length is checked, nothing panics).

/// The names allowed by default: the common names the API server's client certificate has in
/// kubeadm-made clusters and in the chart's documentation.
pub const DEFAULT_ALLOWED_NAMES: [&str; 2] = ["kube-apiserver", "kube-apiserver-kubelet-client"];

/// Which verified certificates count as the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct AllowedNames(pub Vec<String>);

impl Default for AllowedNames {
    fn default() -> Self {
        AllowedNames(DEFAULT_ALLOWED_NAMES.map(String::from).to_vec())
    }
}

impl AllowedNames {
    /// `TLS_CLIENT_ALLOWED_NAMES`: comma-separated names, or `*` for any certificate the CA signed.
    pub fn parse(text: &str) -> Option<AllowedNames> {
        let names: Vec<String> = text.split(',').map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect();
        (!names.is_empty()).then_some(AllowedNames(names))
    }

    /// Whether the leaf certificate `der` names an allowed caller.
    pub fn allows(&self, der: &[u8]) -> bool {
        if self.0.iter().any(|n| n == "*") {
            return true;
        }
        names(der).iter().any(|name| self.0.iter().any(|allowed| allowed == name))
    }
}

/// One DER element: its tag, contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The elements of a constructed value's contents.
fn children(mut input: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let Some((tag, contents, rest)) = element(input) {
        out.push((tag, contents));
        input = rest;
    }
    out
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const EXTENSIONS: u8 = 0xa3;
const DNS_NAME: u8 = 0x82;
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// The subject's common names and the DNS subject alternative names of a certificate.
pub fn names(der: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some((SEQUENCE, certificate, _)) = element(der) else { return out };
    let Some((SEQUENCE, tbs, _)) = element(certificate) else { return out };
    let fields = children(tbs);
    // [0] version is optional; then serial, signature, issuer, validity, subject.
    let skip = usize::from(fields.first().is_some_and(|(tag, _)| *tag == 0xa0));
    if let Some((SEQUENCE, subject)) = fields.get(skip + 4) {
        for (_, set) in children(subject).into_iter().filter(|(tag, _)| *tag == SET) {
            for (_, attribute) in children(set).into_iter().filter(|(tag, _)| *tag == SEQUENCE) {
                if let [(OID, COMMON_NAME), (_, value), ..] = children(attribute).as_slice() {
                    out.extend(std::str::from_utf8(value).ok().map(String::from));
                }
            }
        }
    }
    for (_, extensions) in fields.iter().filter(|(tag, _)| *tag == EXTENSIONS) {
        let Some((SEQUENCE, list, _)) = element(extensions) else { continue };
        for (_, extension) in children(list) {
            let parts = children(extension);
            let (Some((OID, SUBJECT_ALT_NAME)), Some((OCTET_STRING, value))) = (parts.first().copied(), parts.last().copied()) else { continue };
            let Some((SEQUENCE, general_names, _)) = element(value) else { continue };
            for (tag, name) in children(general_names) {
                if tag == DNS_NAME {
                    out.extend(std::str::from_utf8(name).ok().map(String::from));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate made by `openssl req -x509 -subj /O=system:nodes/CN=system:node:worker-1
    /// -addext subjectAltName=DNS:worker-1.example,IP:10.0.0.1` (EC P-256), base64 DER.
    const NODE: &str = "MIIB4zCCAYqgAwIBAgIUbgRs3eNRZ3fSpCvjzo5hjTCPXZAwCgYIKoZIzj0EAwIwNjEVMBMGA1UECgwMc3lzdGVtOm5vZGVzMR0wGwYDVQQDDBRzeXN0ZW06bm9kZTp3b3JrZXItMTAeFw0yNjEyMDYwODUxMDNaFw0yNjEyMDgwODUxMDNaMDYxFTATBgNVBAoMDHN5c3RlbTpub2RlczEdMBsGA1UEAwwUc3lzdGVtOm5vZGU6d29ya2VyLTEwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARerQ8KPqAhfkn19xf8TSTJeB+G4Fh94Jr7aAkOr0fkYmCOWupwzsuRBBeykPC6/DE/7c/kUuFM/NxGd9gL7K80o3YwdDAdBgNVHQ4EFgQUlSMrJVUDa87adABshsR+DB2mlOIwHwYDVR0jBBgwFoAUlSMrJVUDa87adABshsR+DB2mlOIwDwYDVR0TAQH/BAUwAwEB/zAhBgNVHREEGjAYghB3b3JrZXItMS5leGFtcGxlhwQKAAABMAoGCCqGSM49BAMCA0cAMEQCIGnOE7LHMeVwH+/9JhmVBGNcXvloWCxqk652SOt/mKmGAiBdwWdu293s5ETR559VN6mGDWlVJX8RjwVwYeCs/K7GBQ==";

    #[test]
    fn names_are_the_common_name_and_dns_alternative_names() {
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD.decode(NODE).unwrap();
        assert_eq!(names(&der), ["system:node:worker-1", "worker-1.example"]);
        assert!(!AllowedNames::default().allows(&der));
        assert!(AllowedNames::parse("system:node:worker-1").unwrap().allows(&der));
        assert!(AllowedNames::parse("worker-1.example, other").unwrap().allows(&der));
        assert!(AllowedNames::parse("*").unwrap().allows(&der));
        assert_eq!(AllowedNames::parse(" , "), None);
    }

    #[test]
    fn any_bytes_are_read_without_panicking() {
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD.decode(NODE).unwrap();
        for cut in 0..der.len() {
            let _ = names(&der[..cut]);
        }
        for i in 0..der.len() {
            let mut bent = der.clone();
            bent[i] ^= 0xff;
            let _ = names(&bent);
        }
        assert!(names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
    }
}
