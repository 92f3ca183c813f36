//! AWS without an AWS SDK: the credential chain ([`credentials`]) and Signature Version 4 on
//! `ring` ([`sigv4`]), shared by vault-env's `aws-iam` login and the webhook's ECR lookups; and
//! the instance identity document (`aws-ec2`).

pub mod credentials;
pub mod sigv4;

pub use credentials::{AwsCredentials, CredentialSource};

/// The EC2 instance identity document, signed (PKCS#7, base64 without line breaks), through
/// IMDSv2 at `base` (`AWS_EC2_METADATA_SERVICE_ENDPOINT`).
pub async fn instance_identity_pkcs7(imds: &reqwest::Client, base: &str) -> Result<String, super::CloudError> {
    let base = base.trim_end_matches('/');
    let step = |what: &'static str| move |e: reqwest::Error| super::CloudError::http(format_args!("instance metadata ({base}): {what}"), &e);
    let token = super::ok_text(imds.put(format!("{base}/latest/api/token")).header("X-aws-ec2-metadata-token-ttl-seconds", "300"))
        .await
        .map_err(step("session token"))?;
    let pkcs7 = super::ok_text(imds.get(format!("{base}/latest/dynamic/instance-identity/pkcs7")).header("X-aws-ec2-metadata-token", token.trim()))
        .await
        .map_err(step("instance identity document"))?;
    Ok(pkcs7.split_whitespace().collect())
}
