//! AWS for the ECR tests: IMDS, STS, the Pod Identity agent and the ECR API
//! (tests/fixtures/aws.py checks every signature with botocore), and a CONNECT proxy.

use super::*;

/// A stand-in for ECR: the registry with basic auth as user AWS and the token's password;
/// tests/fixtures/aws.py for IMDS, STS, the Pod Identity agent and the ECR API (it checks the
/// request signatures with botocore); and an HTTPS proxy that tunnels
/// "123456789012.dkr.ecr.REGION.amazonaws.com:443" to the registry. (With a kubeconfig,
/// HTTPS_PROXY also carries the Kubernetes API calls: the proxy passes those through.)
pub struct FakeAws {
    pub _registry: Registry,
    pub api: KubeApi,
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub proxy: String,
    pub _procs: [Proc; 2],
}

pub const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
pub const ECR_PASSWORD: &str = "ecr-t0ken-pw";

impl FakeAws {
    pub fn start() -> FakeAws {
        let registry = Registry::secure("AWS", ECR_PASSWORD);
        registry.push("team/app", "1", "oci");
        registry.push("team/app", "2", "docker");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let (aws, aws_port) = python_fixture("aws.py", &[d, ECR_PASSWORD], &dir.path().join("aws.port"));
        let (proxy, proxy_port) = python_fixture(
            "connect_proxy.py",
            &[d, ".amazonaws.com", &registry.host, "public.ecr.aws", &registry.host],
            &dir.path().join("proxy.port"),
        );
        FakeAws {
            _registry: registry,
            api: KubeApi::start(),
            endpoint: format!("http://127.0.0.1:{aws_port}"),
            proxy: format!("http://127.0.0.1:{proxy_port}"),
            dir,
            _procs: [aws, proxy],
        }
    }

    /// The webhook, with `env` on top of the proxy, the endpoints and the kubeconfig.
    pub fn webhook(&self, env: &[(&str, &str)]) -> Webhook {
        let kubeconfig = self.api.kubeconfig.display().to_string();
        let mut all = vec![
            ("KUBECONFIG", kubeconfig.as_str()),
            ("HTTPS_PROXY", self.proxy.as_str()),
            ("AWS_ENDPOINT_URL_ECR", self.endpoint.as_str()),
            ("AWS_ENDPOINT_URL_ECR_PUBLIC", self.endpoint.as_str()),
            ("REGISTRY_SKIP_VERIFY", "true"),
        ];
        all.extend_from_slice(env);
        Webhook::start(&all)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aws.log")).unwrap_or_default()
    }

    /// The webhook's log and `error` hold none of the fixture's secrets.
    pub fn assert_no_secret_in(&self, hook: &Webhook, error: &str) {
        let logged = hook.log();
        let secrets =
            [ECR_PASSWORD, "secret+access+key", "session-token", "imds-session-token-1", "pod-identity-agent-token", "fixture-service-account-token"];
        for secret in secrets {
            assert!(!logged.contains(secret) && !error.contains(secret), "{secret} leaked");
        }
    }
}
