//! Where AWS credentials come from (vault-env's aws-iam login, the webhook's ECR lookups), in the
//! AWS SDKs' order: static keys, IRSA (STS
//! `AssumeRoleWithWebIdentity`), EKS Pod Identity (container credentials), the instance role
//! (IMDSv2). Secrets live in the core's `SecretString`.

use crate::SecretString;
use crate::cloud::{CloudError, ok_json, ok_text};
use crate::config::reader::{Lookup, Reader};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::SystemTime;

// The AWS SDKs' variable names, each declared once.
crate::names! {
    /// Every one of them, for the `--help` tests.
    ALL;
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
    AWS_WEB_IDENTITY_TOKEN_FILE,
    AWS_ROLE_ARN,
    AWS_ENDPOINT_URL_STS,
    AWS_ENDPOINT_URL,
    AWS_REGION,
    AWS_DEFAULT_REGION,
    AWS_ROLE_SESSION_NAME,
    AWS_CONTAINER_CREDENTIALS_FULL_URI,
    AWS_CONTAINER_CREDENTIALS_RELATIVE_URI,
    AWS_CONTAINER_AUTHORIZATION_TOKEN,
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE,
    AWS_EC2_METADATA_DISABLED,
    AWS_EC2_METADATA_SERVICE_ENDPOINT,
}

/// IMDS, unless `AWS_EC2_METADATA_SERVICE_ENDPOINT` says.
pub const DEFAULT_IMDS: &str = "http://169.254.169.254";

/// STS's endpoint for `region` (the AWS SDKs' regional endpoints), or the global one.
pub fn sts_endpoint(region: Option<&str>) -> String {
    match region {
        Some(r) if r.starts_with("cn-") => format!("https://sts.{r}.amazonaws.com.cn"),
        Some(r) => format!("https://sts.{r}.amazonaws.com"),
        None => "https://sts.amazonaws.com".into(),
    }
}

/// An AWS access key; never printed.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
    pub expires: Option<SystemTime>,
}

/// Where the AWS credentials come from: the first source configured, in the AWS SDKs' order.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialSource {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    Static(AwsCredentials),
    /// IRSA: STS `AssumeRoleWithWebIdentity` with the projected service-account token.
    WebIdentity { token_file: PathBuf, role_arn: String, session_name: String, sts: String },
    /// EKS Pod Identity (and ECS): the agent's endpoint, with its authorization token.
    Container { uri: String, token: Option<SecretString>, token_file: Option<PathBuf> },
    /// The instance role, through IMDSv2 at this endpoint.
    InstanceRole(String),
    /// `AWS_EC2_METADATA_DISABLED=true` and nothing else.
    Disabled,
}

impl CredentialSource {
    /// `session_name`: the IRSA session name unless `AWS_ROLE_SESSION_NAME` says.
    pub fn read<S: Lookup + ?Sized>(r: &mut Reader<'_, S>, session_name: &str) -> CredentialSource {
        let mut var = |name: &str| r.text(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) = (var(AWS_ACCESS_KEY_ID), var(AWS_SECRET_ACCESS_KEY)) {
            let session_token = var(AWS_SESSION_TOKEN).map(SecretString::new);
            return CredentialSource::Static(AwsCredentials {
                access_key_id: id,
                secret_access_key: SecretString::new(secret),
                session_token,
                expires: None,
            });
        }
        if let (Some(file), Some(role_arn)) = (var(AWS_WEB_IDENTITY_TOKEN_FILE), var(AWS_ROLE_ARN)) {
            let sts = var(AWS_ENDPOINT_URL_STS)
                .or_else(|| var(AWS_ENDPOINT_URL))
                .unwrap_or_else(|| sts_endpoint(var(AWS_REGION).or_else(|| var(AWS_DEFAULT_REGION)).as_deref()));
            let session_name = var(AWS_ROLE_SESSION_NAME).unwrap_or_else(|| session_name.into());
            return CredentialSource::WebIdentity { token_file: file.into(), role_arn, session_name, sts };
        }
        let container = var(AWS_CONTAINER_CREDENTIALS_FULL_URI)
            .or_else(|| var(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI).map(|r| format!("http://169.254.170.2{r}")));
        if let Some(uri) = container {
            let token = var(AWS_CONTAINER_AUTHORIZATION_TOKEN).map(SecretString::new);
            return CredentialSource::Container { uri, token, token_file: var(AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE).map(PathBuf::from) };
        }
        match var(AWS_EC2_METADATA_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            true => CredentialSource::Disabled,
            false => CredentialSource::InstanceRole(var(AWS_EC2_METADATA_SERVICE_ENDPOINT).unwrap_or_else(|| DEFAULT_IMDS.into())),
        }
    }
}

impl CredentialSource {
    /// The credentials of this source: `imds` reaches the metadata services (never proxied),
    /// `api` the AWS APIs. Errors say which step failed; they carry no secret.
    pub async fn fetch(&self, imds: &reqwest::Client, api: &reqwest::Client) -> Result<AwsCredentials, CloudError> {
        match self {
            CredentialSource::Static(c) => Ok(c.clone()),
            CredentialSource::Disabled => {
                Err(CloudError::Invalid("no AWS credentials: AWS_EC2_METADATA_DISABLED is set and no other source is".into()))
            }
            CredentialSource::InstanceRole(base) => instance_role(imds, base.trim_end_matches('/')).await,
            CredentialSource::Container { uri, token, token_file } => container(imds, uri, token.as_ref(), token_file.as_ref()).await,
            CredentialSource::WebIdentity { token_file, role_arn, session_name, sts } => {
                web_identity(api, token_file, role_arn, session_name, sts).await
            }
        }
    }
}

/// The credentials answer of IMDS and of the container credentials endpoint.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentials {
    #[serde(default)]
    code: Option<String>,
    access_key_id: String,
    secret_access_key: String,
    token: Option<String>,
    expiration: Option<String>,
}

impl RoleCredentials {
    fn into_credentials(self) -> AwsCredentials {
        AwsCredentials {
            access_key_id: self.access_key_id,
            secret_access_key: SecretString::new(self.secret_access_key),
            session_token: self.token.filter(|t| !t.is_empty()).map(SecretString::new),
            expires: self.expiration.as_deref().and_then(|e| humantime::parse_rfc3339_weak(e).ok()),
        }
    }
}

/// The text of the first `<tag>…</tag>` in an AWS query-API (XML) answer, entities decoded.
fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    let text = xml[start..end].trim();
    Some(text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&"))
}

/// EKS Pod Identity / ECS: `GET uri` with the agent's token as `Authorization`.
async fn container(
    imds: &reqwest::Client,
    uri: &str,
    token: Option<&SecretString>,
    token_file: Option<&PathBuf>,
) -> Result<AwsCredentials, CloudError> {
    let token = match (token_file, token) {
        (Some(file), _) => {
            Some(std::fs::read_to_string(file).map_err(|e| CloudError::Invalid(format!("container credentials: {}: {e}", file.display())))?)
        }
        (None, t) => t.map(|t| t.expose().to_string()),
    };
    let mut request = imds.get(uri);
    if let Some(token) = token {
        request = request.header("Authorization", token.trim());
    }
    let answer: RoleCredentials = ok_json(request).await.map_err(|e| CloudError::http(format_args!("container credentials ({uri})"), &e))?;
    tracing::debug!(uri, "AWS: container credentials read");
    Ok(answer.into_credentials())
}

/// IRSA: STS `AssumeRoleWithWebIdentity` (unsigned) with the service-account token.
async fn web_identity(
    api: &reqwest::Client,
    token_file: &PathBuf,
    role_arn: &str,
    session_name: &str,
    sts: &str,
) -> Result<AwsCredentials, CloudError> {
    let jwt = std::fs::read_to_string(token_file).map_err(|e| CloudError::Invalid(format!("web identity token {}: {e}", token_file.display())))?;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", role_arn)
        .append_pair("RoleSessionName", session_name)
        .append_pair("WebIdentityToken", jwt.trim())
        .finish();
    let failed = |e: reqwest::Error| CloudError::http(format_args!("STS AssumeRoleWithWebIdentity ({sts}, role {role_arn})"), &e);
    let response = api.post(sts).header("Content-Type", "application/x-www-form-urlencoded").body(body).send().await.map_err(failed)?;
    let status = response.status();
    let text = response.text().await.map_err(failed)?;
    if !status.is_success() {
        let why = [xml_value(&text, "Code"), xml_value(&text, "Message")].into_iter().flatten().collect::<Vec<_>>().join(": ");
        return Err(CloudError::status(
            status,
            format!("STS AssumeRoleWithWebIdentity ({sts}, role {role_arn}): {status} {why}").trim_end().to_string(),
        ));
    }
    let field = |tag: &str| {
        xml_value(&text, tag).ok_or_else(|| CloudError::Invalid(format!("STS AssumeRoleWithWebIdentity ({sts}): no {tag} in the answer")))
    };
    tracing::debug!(role_arn, "AWS: web identity credentials obtained");
    Ok(AwsCredentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: SecretString::new(field("SecretAccessKey")?),
        session_token: xml_value(&text, "SessionToken").map(SecretString::new),
        expires: xml_value(&text, "Expiration").and_then(|e| humantime::parse_rfc3339_weak(&e).ok()),
    })
}

/// The instance role's credentials through IMDSv2.
async fn instance_role(imds: &reqwest::Client, base: &str) -> Result<AwsCredentials, CloudError> {
    let step = |what: &'static str| move |e: reqwest::Error| CloudError::http(format_args!("instance metadata ({base}): {what}"), &e);
    let session = imds.put(format!("{base}/latest/api/token")).header("X-aws-ec2-metadata-token-ttl-seconds", "21600");
    let token = ok_text(session).await.map_err(step("session token"))?;
    let get = |path: String| imds.get(format!("{base}{path}")).header("X-aws-ec2-metadata-token", token.trim());
    let roles = ok_text(get("/latest/meta-data/iam/security-credentials/".into()))
        .await
        .map_err(step("instance role (does the node have an instance profile?)"))?;
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| CloudError::Refused(format!("instance metadata ({base}): no instance role")))?;
    let answer: RoleCredentials =
        ok_json(get(format!("/latest/meta-data/iam/security-credentials/{role}"))).await.map_err(step("role credentials"))?;
    if let Some(code) = answer.code.as_deref().filter(|c| *c != "Success") {
        return Err(CloudError::Refused(format!("instance metadata ({base}): credentials of role {role}: {code}")));
    }
    tracing::debug!(role, "AWS: instance role credentials read");
    Ok(answer.into_credentials())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_sources_in_sdk_order() {
        let source = |vars: &[(&str, &str)]| CredentialSource::read(&mut Reader::new(vars), "vault-secrets-webhook");
        let irsa = [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_REGION", "eu-central-1"),
        ];
        let keys = [("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "very-secret")];
        let all: Vec<_> = keys.iter().chain(&irsa).copied().collect();
        assert!(matches!(source(&all), CredentialSource::Static(c) if c.access_key_id == "AKID"));
        assert!(!format!("{:?}", source(&all)).contains("very-secret"));
        match source(&irsa) {
            CredentialSource::WebIdentity { sts, session_name, .. } => {
                assert_eq!((sts.as_str(), session_name.as_str()), ("https://sts.eu-central-1.amazonaws.com", "vault-secrets-webhook"))
            }
            other => panic!("{other:?}"),
        }
        let pod_identity =
            [("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials"), ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok3n")];
        assert!(matches!(source(&pod_identity), CredentialSource::Container { uri, .. } if uri.ends_with("/v1/credentials")));
        assert!(!format!("{:?}", source(&pod_identity)).contains("tok3n"));
        assert!(
            matches!(source(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/c")]), CredentialSource::Container { uri, .. } if uri == "http://169.254.170.2/v2/c")
        );
        assert!(matches!(source(&[]), CredentialSource::InstanceRole(e) if e == "http://169.254.169.254"));
        assert!(matches!(source(&[("AWS_EC2_METADATA_DISABLED", "true")]), CredentialSource::Disabled));
    }

    #[test]
    fn sts_answers() {
        let ok = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
            <SessionToken>tok&amp;en</SessionToken><AccessKeyId>ASIA1</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(xml_value(ok, "SessionToken").as_deref(), Some("tok&en"));
        assert_eq!(xml_value(ok, "AccessKeyId").as_deref(), Some("ASIA1"));
        assert_eq!(xml_value(ok, "Expiration"), None);
        assert_eq!(xml_value("<Code>x", "Code"), None);
    }
}
