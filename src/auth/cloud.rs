//! Login bodies for the cloud methods, as Bank-Vaults' vault-sdk (and Vault's own clients) send
//! them: `aws-iam` (a signed `sts:GetCallerIdentity`), `aws-ec2` (the instance identity document
//! with Bank-Vaults' nonce), `gcp-gce` (the metadata server's identity token), `gcp-iam` (a JWT
//! signed by IAM Credentials) and `azure` (the managed identity's token and the VM's placement).
//! Metadata requests are bounded by `VAULT_CLIENT_TIMEOUT`; errors name the service and step and
//! carry no credential, token or signature.

use crate::SecretString;
use crate::cloud::aws::sigv4::signed_post_headers;
use crate::cloud::{Clients, CloudError, aws, azure};
use crate::config::{AuthSettings, CloudAuth};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `sts:GetCallerIdentity` request Vault's aws method replays to STS.
pub const GET_CALLER_IDENTITY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
/// How long a gcp-iam JWT is valid (Vault accepts at most 15 minutes).
const IAM_JWT_TTL: Duration = Duration::from_secs(900);

/// The login body of `auth`'s cloud method; `service_account_token` for aws-ec2's nonce. The
/// error says which service and step failed.
pub async fn login_body(auth: &AuthSettings, timeout: Duration, service_account_token: Option<&SecretString>) -> Result<Value, CloudError> {
    let clients = Clients::new(timeout, timeout)?;
    let role = auth.role.as_str();
    match &auth.cloud {
        CloudAuth::AwsIam { credentials, sts, region, server_id } => {
            let credentials = credentials.fetch(&clients.metadata, &clients.api).await?;
            aws_iam_body(role, &credentials, sts, region, server_id.as_deref())
        }
        CloudAuth::AwsEc2 { imds } => {
            let pkcs7 = aws::instance_identity_pkcs7(&clients.metadata, imds).await?;
            let nonce = service_account_token.map(|t| nonce(t.expose())).unwrap_or_default();
            Ok(json!({"role": role, "pkcs7": pkcs7, "nonce": nonce}))
        }
        CloudAuth::Gcp(endpoints) if auth.method == crate::config::AuthMethod::GcpGce => {
            let jwt = endpoints.identity_token(&clients, &format!("http://vault/{role}")).await?;
            Ok(json!({"role": role, "jwt": jwt.expose()}))
        }
        CloudAuth::Gcp(endpoints) => {
            let email = endpoints.email(&clients).await?;
            let (token, _) = endpoints.access_token(&clients).await?;
            let exp = (SystemTime::now() + IAM_JWT_TTL).duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            let claims = json!({"sub": email, "aud": format!("vault/{role}"), "exp": exp});
            let jwt = endpoints.sign_jwt(&clients, &email, &token, &claims).await?;
            Ok(json!({"role": role, "jwt": jwt.expose()}))
        }
        CloudAuth::Azure(imds) => {
            let jwt = imds.token(&clients, azure::MANAGEMENT).await?;
            let compute = imds.compute(&clients).await?;
            let mut body = json!({
                "role": role, "jwt": jwt.expose(), "subscription_id": compute.subscription_id,
                "resource_group_name": compute.resource_group_name, "vm_name": compute.name,
            });
            if !compute.vm_scale_set_name.is_empty() {
                body["vmss_name"] = json!(compute.vm_scale_set_name);
            }
            Ok(body)
        }
        CloudAuth::None => Err(CloudError::Invalid("not a cloud method".into())),
    }
}

/// Bank-Vaults' aws-ec2 nonce: the hex SHA-256 of the service-account token, so that Vault's
/// client-nonce check, bound at a pod's first login, keeps passing after a switch.
pub fn nonce(service_account_token: &str) -> String {
    digest::digest(&digest::SHA256, service_account_token.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Vault's `iam_*` login fields: `GetCallerIdentity` to `sts`, signed for `region`, with the
/// server-ID header when the role wants one. Headers go as a JSON map of lists, without `host`
/// (Vault's server takes the host from the URL, as Go's clients do).
pub fn aws_iam_body(role: &str, credentials: &aws::AwsCredentials, sts: &str, region: &str, server_id: Option<&str>) -> Result<Value, CloudError> {
    let url = url::Url::parse(sts).map_err(|e| CloudError::Invalid(format!("STS endpoint {sts}: {e}")))?;
    let mut extra = vec![("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
    if let Some(id) = server_id {
        extra.push(("x-vault-aws-iam-server-id", id));
    }
    let headers = signed_post_headers(&url, &extra, GET_CALLER_IDENTITY.as_bytes(), region, "sts", credentials)
        .map_err(|e| CloudError::Invalid(format!("STS endpoint {e}")))?;
    let headers: serde_json::Map<String, Value> = headers.into_iter().filter(|(k, _)| k != "host").map(|(k, v)| (k, json!([v]))).collect();
    Ok(json!({
        "role": role,
        "iam_http_request_method": "POST",
        "iam_request_url": STANDARD.encode(url.as_str()),
        "iam_request_body": STANDARD.encode(GET_CALLER_IDENTITY),
        "iam_request_headers": STANDARD.encode(Value::Object(headers).to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_vaults_nonce() {
        // echo -n token | sha256sum
        assert_eq!(nonce("token"), "3c469e9d6c5875d37a43f353d4f88e61fcf812c66eee3457465a40b0da4153e0");
    }

    #[test]
    fn aws_iam_fields() {
        let credentials = aws::AwsCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: SecretString::new("very-secret"),
            session_token: Some(SecretString::new("session")),
            expires: None,
        };
        let body = aws_iam_body("app", &credentials, "https://sts.amazonaws.com/", "us-east-1", Some("vault.example.com")).unwrap();
        let decode = |field: &str| String::from_utf8(STANDARD.decode(body[field].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!((body["role"].as_str(), body["iam_http_request_method"].as_str()), (Some("app"), Some("POST")));
        assert_eq!(decode("iam_request_url"), "https://sts.amazonaws.com/");
        assert_eq!(decode("iam_request_body"), GET_CALLER_IDENTITY);
        let headers: Value = serde_json::from_str(&decode("iam_request_headers")).unwrap();
        assert_eq!(headers["x-vault-aws-iam-server-id"], json!(["vault.example.com"]));
        assert_eq!(headers["x-amz-security-token"], json!(["session"]));
        let authorization = headers["authorization"][0].as_str().unwrap();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKID/") && authorization.contains("/us-east-1/sts/aws4_request"),
            "{authorization}"
        );
        assert!(
            authorization.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-vault-aws-iam-server-id"),
            "{authorization}"
        );
        assert!(headers.get("host").is_none());
        assert!(!body.to_string().contains("very-secret"));
    }
}
