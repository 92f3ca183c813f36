//! The guard on `vault-addr` annotations of objects the webhook resolves with its **own** Vault
//! identity (Secrets, ConfigMaps, custom objects): without it, anybody who may create a ConfigMap
//! could send the webhook's credentials to a server of their choice, or make it reach the cloud
//! metadata service. Same rules as Bank-Vaults' `ValidateObjectAddr` (v1.23.1+).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// Why an address is refused; the text is the reason an object's denial gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrRefused {
    #[error("the address is empty")]
    Empty,
    #[error("not an http:// or https:// address with a host")]
    NotAnAddress,
    #[error("scheme {0:?} is not allowed (http or https only)")]
    Scheme(String),
    #[error("credentials in the address are not allowed")]
    Credentials,
    #[error("a query or fragment is not allowed")]
    QueryOrFragment,
    #[error("the address has no host")]
    NoHost,
    #[error("host {0:?} is refused (local or metadata service)")]
    LocalHost(String),
    #[error("numeric IP forms other than dotted decimal are refused")]
    NumericForm,
    #[error("{0} is refused (a special-purpose address)")]
    Special(IpAddr),
    #[error("{0} is refused (link-local, metadata or non-unicast address)")]
    NotUnicast(IpAddr),
    #[error("{0} is a loopback or private address (allowed only with VAULT_ALLOW_PRIVATE_ADDR=true)")]
    Private(IpAddr),
    #[error("VAULT_ADDR_ALLOWLIST is empty: objects may only use the webhook's VAULT_ADDR")]
    NoAllowlist,
    #[error("not in VAULT_ADDR_ALLOWLIST")]
    NotAllowlisted,
}

/// Lower-case scheme and host, default port dropped, no trailing `/`: how addresses are compared.
pub fn normalize(addr: &str) -> String {
    match Url::parse(addr.trim()) {
        Ok(u) if u.has_host() => u.as_str().trim_end_matches('/').to_string(),
        _ => addr.trim().trim_end_matches('/').to_ascii_lowercase(),
    }
}

/// Which Vault addresses an object's annotation may name (the webhook's `VAULT_ADDR`,
/// `VAULT_ADDR_ALLOWLIST`, `VAULT_ALLOW_PRIVATE_ADDR`); addresses are kept normalized.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AddrPolicy {
    pub own: String,
    pub allowlist: Vec<String>,
    pub allow_private: bool,
}

impl AddrPolicy {
    pub fn new(own: &str, allowlist: &str, allow_private: bool) -> AddrPolicy {
        let allowlist = allowlist.split(',').map(str::trim).filter(|a| !a.is_empty()).map(normalize).collect();
        AddrPolicy { own: normalize(own), allowlist, allow_private }
    }
}

/// An address vault-env can use: http(s), a host, no credentials, query or fragment.
pub fn usable(addr: &str) -> Result<Url, AddrRefused> {
    let url = Url::parse(addr).map_err(|_| AddrRefused::NotAnAddress)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(AddrRefused::Scheme(url.scheme().to_string()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AddrRefused::Credentials);
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(AddrRefused::QueryOrFragment);
    }
    if !url.has_host() || addr.contains(' ') {
        return Err(AddrRefused::NotAnAddress);
    }
    Ok(url)
}

/// Host names that always mean "this machine" or a metadata service.
const REFUSED_HOSTS: &[&str] = &["localhost", "metadata", "metadata.google.internal", "instance-data", "metadata.azure.internal"];

/// The address an object's `vault-addr` annotation may use, normalized, or why not.
pub fn check(addr: &str, policy: &AddrPolicy) -> Result<String, AddrRefused> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err(AddrRefused::Empty);
    }
    let normalized = normalize(addr);
    if normalized == policy.own {
        return Ok(normalized);
    }
    let url = usable(addr)?;
    match url.host() {
        None => return Err(AddrRefused::NoHost),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            if REFUSED_HOSTS.contains(&d) || d.ends_with(".localhost") {
                return Err(AddrRefused::LocalHost(d.to_string()));
            }
        }
        Some(Host::Ipv4(ip)) => {
            // WHATWG parsing turns 2130706433, 0x7f000001 and 0177.0.0.1 into 127.0.0.1: only the
            // plain dotted form is accepted, so an allowlist can't be dodged by spelling.
            if raw_host(addr) != ip.to_string() {
                return Err(AddrRefused::NumericForm);
            }
            check_ipv4(ip, policy.allow_private)?;
        }
        Some(Host::Ipv6(ip)) => match embedded_ipv4(ip) {
            Some(v4) => check_ipv4(v4, policy.allow_private)?,
            None => check_ipv6(ip, policy.allow_private)?,
        },
    }
    if policy.allowlist.contains(&normalized) {
        Ok(normalized)
    } else if policy.allowlist.is_empty() {
        Err(AddrRefused::NoAllowlist)
    } else {
        Err(AddrRefused::NotAllowlisted)
    }
}

/// The host as written: between `://` (and any userinfo) and the port or path, lower-cased.
fn raw_host(addr: &str) -> String {
    let rest = addr.split_once("://").map_or(addr, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    host.to_ascii_lowercase()
}

/// The IPv4 address an IPv6 address carries, in every form that reaches it:
/// IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, IPv4-translated
/// `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and `64:ff9b:1::/48`, and 6to4 `2002:AABB:CCDD::`.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, _, _] if !ip.is_loopback() && !ip.is_unspecified() => Some(low),
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 1, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

fn check_ipv4(ip: Ipv4Addr, allow_private: bool) -> Result<(), AddrRefused> {
    let o = ip.octets();
    // 0.0.0.0/8 ("this network"), 192.0.0.0/24 (IETF protocol assignments), 198.18.0.0/15
    // (benchmarking), 240.0.0.0/4 (reserved): RFC 6890's special ranges that are never a Vault.
    let special = o[0] == 0 || (o[0] == 192 && o[1] == 0 && o[2] == 0) || (o[0] == 198 && (o[1] & 0xfe) == 18) || o[0] >= 240;
    if special {
        return Err(AddrRefused::Special(ip.into()));
    }
    if ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(AddrRefused::NotUnicast(ip.into()));
    }
    let cgnat = o[0] == 100 && (64..128).contains(&o[1]);
    if (ip.is_loopback() || ip.is_private() || cgnat) && !allow_private {
        return Err(AddrRefused::Private(ip.into()));
    }
    Ok(())
}

fn check_ipv6(ip: Ipv6Addr, allow_private: bool) -> Result<(), AddrRefused> {
    let first = ip.segments()[0];
    // fe80::/10 link-local, fec0::/10 (deprecated site-local), the EC2 metadata address.
    if ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
    {
        return Err(AddrRefused::NotUnicast(ip.into()));
    }
    if (ip.is_loopback() || (first & 0xfe00) == 0xfc00) && !allow_private {
        return Err(AddrRefused::Private(ip.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(allowlist: &str, allow_private: bool) -> AddrPolicy {
        AddrPolicy::new("https://vault.vault:8200", allowlist, allow_private)
    }

    /// Forms that used to pass the guard when allowlisted. Tested as a function:
    /// nothing connects anywhere.
    #[test]
    fn embedded_and_special_addresses_are_refused_even_when_allowlisted() {
        let forms = [
            "http://[::a9fe:a9fe]",
            "http://[64:ff9b::a9fe:a9fe]",
            "http://[64:ff9b:1::a9fe:a9fe]",
            "http://[2002:a9fe:a9fe::1]",
            "http://[::ffff:0:a9fe:a9fe]",
            "http://[fec0::1]",
            "http://0.1.2.3",
            "http://198.18.0.1",
            "http://192.0.0.192",
        ];
        for addr in forms {
            let policy = AddrPolicy::new("https://vault.vault:8200", addr, true);
            assert!(check(addr, &policy).is_err(), "{addr} passed");
        }
        // Still refused as before.
        for addr in
            ["http://[::ffff:a9fe:a9fe]", "http://0.0.0.0", "http://[::]", "http://localhost.", "http://vault.localhost", "http://[fd00:ec2::254]"]
        {
            let policy = AddrPolicy::new("https://vault.vault:8200", addr, true);
            assert!(check(addr, &policy).is_err(), "{addr} passed");
        }
        // Ordinary allowlisted addresses still pass.
        for addr in ["https://10.0.0.5:8200", "https://[2001:db8::5]:8200", "http://[::1]:8200"] {
            let policy = AddrPolicy::new("https://vault.vault:8200", addr, true);
            assert!(check(addr, &policy).is_ok(), "{addr} refused: {:?}", check(addr, &policy));
        }
    }

    /// Bank-Vaults' `TestValidateObjectAddr` cases, plus IPv6 and mapped forms.
    #[test]
    fn object_addresses() {
        let list = "https://vault.prod.svc:8200,https://vault.other.svc:8200,https://169.254.169.254,http://10.0.0.5:8200";
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let rejected = [
            ("", list, false, AddrRefused::Empty),
            ("https://evil.attacker.com", list, false, AddrRefused::NotAllowlisted),
            ("https://vault.prod.svc:8200", "", false, AddrRefused::NoAllowlist),
            ("file:///etc/passwd", list, false, AddrRefused::Scheme("file".into())),
            ("169.254.169.254", list, false, AddrRefused::NotAnAddress),
            ("https://169.254.169.254", list, false, AddrRefused::NotUnicast(ip("169.254.169.254"))),
            ("http://127.0.0.1:8200", list, false, AddrRefused::Private(ip("127.0.0.1"))),
            ("http://10.0.0.5:8200", list, false, AddrRefused::Private(ip("10.0.0.5"))),
            ("http://metadata.google.internal", list, true, AddrRefused::LocalHost("metadata.google.internal".into())),
            ("http://localhost:8200", list, true, AddrRefused::LocalHost("localhost".into())),
            ("https://attacker:pw@vault.prod.svc:8200", list, false, AddrRefused::Credentials),
            ("https://vault.prod.svc:8200?x=1", list, false, AddrRefused::QueryOrFragment),
            ("https://vault.prod.svc:8200#frag", list, false, AddrRefused::QueryOrFragment),
            ("http://2130706433", list, true, AddrRefused::NumericForm),
            ("http://0177.0.0.1", list, true, AddrRefused::NumericForm),
            ("http://0x7f000001", list, true, AddrRefused::NumericForm),
            ("http://100.100.100.200", list, false, AddrRefused::Private(ip("100.100.100.200"))),
            ("http://[::1]:8200", list, false, AddrRefused::Private(ip("::1"))),
            ("http://[fe80::1]", list, true, AddrRefused::NotUnicast(ip("fe80::1"))),
            ("http://[::ffff:169.254.169.254]", list, true, AddrRefused::NotUnicast(ip("169.254.169.254"))),
            ("http://169.254.169.254/latest/meta-data/", list, true, AddrRefused::NotUnicast(ip("169.254.169.254"))),
        ];
        for (addr, allowlist, private, why) in rejected {
            assert_eq!(check(addr, &settings(allowlist, private)), Err(why), "{addr:?}");
        }
        let accepted = [
            ("https://vault.prod.svc:8200", list, false, "https://vault.prod.svc:8200"),
            ("https://Vault.Prod.SVC:8200/", list, false, "https://vault.prod.svc:8200"),
            ("https://vault.other.svc:8200", list, false, "https://vault.other.svc:8200"),
            ("http://10.0.0.5:8200", list, true, "http://10.0.0.5:8200"),
            // The webhook's own address is always fine, allowlist or not.
            ("https://VAULT.vault:8200/", "", false, "https://vault.vault:8200"),
        ];
        for (addr, allowlist, private, want) in accepted {
            assert_eq!(check(addr, &settings(allowlist, private)).as_deref(), Ok(want), "{addr:?}");
        }
        // The texts objects' denials give.
        let why = check("http://127.0.0.1:8200", &settings(list, false)).unwrap_err().to_string();
        assert!(why.contains("VAULT_ALLOW_PRIVATE_ADDR"), "{why}");
        assert!(check("https://x.example", &settings("", false)).unwrap_err().to_string().contains("VAULT_ADDR_ALLOWLIST is empty"));
    }

    #[test]
    fn addresses() {
        for ok in ["https://vault:8200", "http://10.0.0.1:8200/", "https://vault.prod.svc"] {
            assert!(usable(ok).is_ok(), "{ok}");
        }
        for bad in ["vault:8200", "file:///etc/passwd", "https://", "https://u:p@vault", "https://vault?x=1", "https://:8200"] {
            assert!(usable(bad).is_err(), "{bad}");
        }
    }
}
