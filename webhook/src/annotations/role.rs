//! The `vault-role` annotation's Go template, limited to what Bank-Vaults documents.

/// Why a `vault-role` template cannot be rendered; the text completes "expected …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleTemplateError {
    #[error("a template: {{{{ is not closed")]
    Unclosed,
    #[error("a supported template: {{{{{0}}}}} is not a {{{{.field}}}}")]
    NotAField(String),
    #[error("a supported template: no field {0:?} (authmethod, name, namespace, path, serviceaccount)")]
    UnknownField(String),
}

/// Renders `{{.namespace}}`, `{{ .name }}`, `{{.serviceaccount}}`, `{{.authmethod}}`, `{{.path}}`
/// (missing keys are errors; nothing else is a template).
pub fn render_role(template: &str, vars: &[(&str, &str)]) -> Result<String, RoleTemplateError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(RoleTemplateError::Unclosed)?;
        let action = after[..end].trim().trim_start_matches('-').trim_end_matches('-').trim();
        let key = action.strip_prefix('.').ok_or_else(|| RoleTemplateError::NotAField(action.to_string()))?;
        let value = vars.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).ok_or_else(|| RoleTemplateError::UnknownField(key.to_string()))?;
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
        assert_eq!(render_role("{{.nope}}", &vars), Err(RoleTemplateError::UnknownField("nope".into())));
        assert_eq!(render_role("{{.namespace", &vars), Err(RoleTemplateError::Unclosed));
        assert_eq!(render_role("{{ env \"HOME\" }}", &vars), Err(RoleTemplateError::NotAField("env \"HOME\"".into())));
        // The texts a denial gives.
        assert_eq!(RoleTemplateError::Unclosed.to_string(), "a template: {{ is not closed");
        assert_eq!(RoleTemplateError::NotAField("env".into()).to_string(), "a supported template: {{env}} is not a {{.field}}");
    }
}
