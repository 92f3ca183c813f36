//! AWS Signature Version 4 on `ring`, the project's one crypto provider (no AWS SDK: `aws-sigv4`
//! would bring a second crypto stack). Checked against AWS's `get-vanilla` vector and a request
//! botocore signed.

use super::credentials::AwsCredentials;
use ring::{digest, hmac};
use std::time::SystemTime;

/// A request to sign. `headers` are lowercase names with trimmed values, and include `host`
/// and `x-amz-date`; their order does not matter.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// `YYYYMMDDTHHMMSSZ`, as in the `x-amz-date` header.
    pub amz_date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_sha256(key: &[u8], data: &str) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
}

/// The `Authorization` header of AWS Signature Version 4 (no query string: ECR's JSON API has
/// none).
pub fn sign(request: &Request<'_>, credentials: &AwsCredentials) -> String {
    let mut headers: Vec<(&str, &str)> = request.headers.to_vec();
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(";");
    let body_hash = hex(digest::digest(&digest::SHA256, request.body).as_ref());
    let canonical = format!("{}\n{}\n\n{canonical_headers}\n{signed_headers}\n{body_hash}", request.method, request.path);
    let date = request.amz_date.get(..8).unwrap_or(request.amz_date);
    let scope = format!("{date}/{}/{}/aws4_request", request.region, request.service);
    let to_sign = format!("AWS4-HMAC-SHA256\n{}\n{scope}\n{}", request.amz_date, hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref()));
    let key = [date, request.region, request.service, "aws4_request"]
        .iter()
        .fold(format!("AWS4{}", credentials.secret_access_key.expose()).into_bytes(), |key, part| hmac_sha256(&key, part).as_ref().to_vec());
    let signature = hex(hmac_sha256(&key, &to_sign).as_ref());
    format!("AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}", credentials.access_key_id)
}

/// An endpoint URL without a host, which nothing can be signed for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{url}: no host")]
pub struct NoHost {
    pub url: String,
}

/// The headers of a POST of `body` to `url`, signed for `service` in `region`: `host`,
/// `x-amz-date`, the session token if any, `extra` (lowercase names), and `authorization`.
pub fn signed_post_headers(
    url: &url::Url,
    extra: &[(&str, &str)],
    body: &[u8],
    region: &str,
    service: &str,
    credentials: &AwsCredentials,
) -> Result<Vec<(String, String)>, NoHost> {
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(NoHost { url: url.to_string() }),
    };
    let date = amz_date(SystemTime::now());
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    headers.extend([("host", host.as_str()), ("x-amz-date", date.as_str())]);
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token", token.expose()));
    }
    let request = Request { method: "POST", path: url.path(), headers: &headers, body, amz_date: &date, region, service };
    let authorization = sign(&request, credentials);
    let mut out: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    out.push(("authorization".into(), authorization));
    Ok(out)
}

/// `2026-11-22T19:34:18Z` → `20261122T193418Z`.
pub fn amz_date(now: SystemTime) -> String {
    humantime::format_rfc3339_seconds(now).to_string().replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretString;
    use std::time::{Duration, UNIX_EPOCH};

    fn example(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SecretString::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: token.map(SecretString::new),
            expires: None,
        }
    }

    #[test]
    fn aws_test_vector_get_vanilla() {
        // From AWS's SigV4 test suite (get-vanilla).
        let request = Request {
            method: "GET",
            path: "/",
            headers: &[("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")],
            body: b"",
            amz_date: "20150830T123600Z",
            region: "us-east-1",
            service: "service",
        };
        assert_eq!(
            sign(&request, &example(None)),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn get_authorization_token_as_botocore_signs_it() {
        // The same request signed by botocore's SigV4Auth (1.43), session token included.
        let headers = [
            ("x-amz-target", "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"),
            ("content-type", "application/x-amz-json-1.1"),
            ("host", "api.ecr.us-east-1.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            ("x-amz-security-token", "session-token"),
        ];
        let request =
            Request { method: "POST", path: "/", headers: &headers, body: b"{}", amz_date: "20150830T123600Z", region: "us-east-1", service: "ecr" };
        let signed = sign(&request, &example(Some("session-token")));
        assert!(
            signed.ends_with(
                "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
             Signature=8102772839ac0eddeaadc71c776a7ea98f9507dcefa6da58d36088a9d49c6943"
            ),
            "{signed}"
        );
        assert!(!format!("{:?}", example(None)).contains("EXAMPLEKEY"));
    }

    #[test]
    fn amz_dates() {
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(1_440_938_160)), "20150830T123600Z");
    }
}
