//! Any string through the reference grammar and, for each parsed template, a render against a
//! small secret: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_env::reference::{Key, parse_value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(value) = parse_value(text) else { return };
    let secret = serde_json::json!({"a": "x", "b": 1, "m": {"k": "v"}});
    let secret = secret.as_object().unwrap();
    for r in value.references() {
        let _ = r.to_string();
        let _ = r.fetch();
        if let Some(Key::Template { template, .. }) = r.key() {
            let _ = template.render(secret);
        }
    }
});
