//! Validators for annotation and setting values that several parts read.

pub const EXPECTED_PULL_POLICY: &str = "Always, IfNotPresent or Never";

pub fn pull_policy(s: &str) -> Option<String> {
    // Bank-Vaults' getPullPolicy takes `always`, `ifnotpresent` and `never` too; the pod gets the
    // spelling the API server accepts.
    ["Always", "IfNotPresent", "Never"].into_iter().find(|p| p.eq_ignore_ascii_case(s)).map(String::from)
}

/// A Kubernetes resource quantity: a decimal number with an optional SI/binary suffix or exponent.
pub fn is_quantity(s: &str) -> bool {
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let digits = number.strip_prefix(['+', '-']).unwrap_or(number);
    let number_ok = !digits.is_empty() && digits.matches('.').count() <= 1 && digits != "." && !digits.contains(['+', '-']);
    let suffix_ok = matches!(suffix, "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei")
        || (suffix.len() > 1
            && suffix.starts_with(['e', 'E'])
            && suffix[1..].trim_start_matches(['+', '-']).chars().all(|c| c.is_ascii_digit())
            && !suffix[1..].trim_start_matches(['+', '-']).is_empty());
    number_ok && suffix_ok
}
