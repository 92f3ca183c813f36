//! The `vault-role` annotation's Go template, limited to what Bank-Vaults documents.

/// Renders `{{.namespace}}`, `{{ .name }}`, `{{.serviceaccount}}`, `{{.authmethod}}`, `{{.path}}`
/// (missing keys are errors; nothing else is a template).
pub fn render_role(template: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("a template: {{ is not closed")?;
        let action = after[..end].trim().trim_start_matches('-').trim_end_matches('-').trim();
        let key = action.strip_prefix('.').ok_or_else(|| format!("a supported template: {{{{{action}}}}} is not a {{{{.field}}}}"))?;
        let value = vars
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("a supported template: no field {key:?} (authmethod, name, namespace, path, serviceaccount)"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_templates() {
        let vars = [("namespace", "shop"), ("name", "web-1"), ("serviceaccount", "web")];
        assert_eq!(render_role("{{.namespace}}-reader", &vars).unwrap(), "shop-reader");
        assert_eq!(render_role("{{ .serviceaccount }}@{{.namespace}}", &vars).unwrap(), "web@shop");
        assert_eq!(render_role("plain", &vars).unwrap(), "plain");
        assert!(render_role("{{.nope}}", &vars).unwrap_err().contains("nope"));
        assert!(render_role("{{.namespace", &vars).is_err());
        assert!(render_role("{{ env \"HOME\" }}", &vars).is_err());
    }
}
