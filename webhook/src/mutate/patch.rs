//! RFC 6902 JSONPatch as the answer carries it: JSON text. Pod patches are written straight to
//! text as they are built ([`AddOps`]): no `Value` tree per operation and no second
//! serialization pass, which is most of the webhook's CPU time per pod otherwise.

use serde::Serialize;

/// A patch as JSON text, and how many operations it holds (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPatch {
    pub json: Vec<u8>,
    pub ops: usize,
}

/// Why a patch cannot be written; or, for a pod, why it is refused.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// A JSON value that serde cannot write (an internal error: every value here came from JSON).
    #[error("cannot encode the patch{at}: {error}")]
    Encode { at: String, error: serde_json::Error },
    #[error("the pod has a volume named {0:?} of its own, which vault-env's binary would be copied into: rename it")]
    VolumeTaken(&'static str),
}

impl JsonPatch {
    /// A patch from `json_patch` (the objects' diff); `None` when it is empty.
    pub fn from_patch(patch: &json_patch::Patch) -> Result<Option<JsonPatch>, PatchError> {
        if patch.0.is_empty() {
            return Ok(None);
        }
        let json = serde_json::to_vec(patch).map_err(|error| PatchError::Encode { at: String::new(), error })?;
        Ok(Some(JsonPatch { json, ops: patch.0.len() }))
    }
}

/// `add` operations written as they come.
pub struct AddOps {
    json: Vec<u8>,
    ops: usize,
    /// The JSON pointer of the operations being written, and the same as a JSON string.
    pointer: String,
    pointer_json: Vec<u8>,
    error: Option<PatchError>,
}

impl Default for AddOps {
    fn default() -> Self {
        AddOps { json: Vec::with_capacity(8 * 1024), ops: 0, pointer: String::new(), pointer_json: Vec::new(), error: None }
    }
}

impl AddOps {
    /// `{"op":"add","path":"/a/b~1c","value":…}`; `path` holds unescaped reference tokens.
    pub fn add(&mut self, path: &[&str], value: &impl Serialize) {
        self.point_at(path);
        self.push_op(|out| serde_json::to_writer(out, value));
    }

    /// One `add` at `path` for each value, JSON text written before (vault-env's variables,
    /// the same for several containers, each appended with `…/-`).
    pub fn add_json_each(&mut self, path: &[&str], values: &[Vec<u8>]) {
        self.point_at(path);
        for json in values {
            self.push_op(|out| {
                out.extend_from_slice(json);
                Ok(())
            });
        }
    }

    /// `values` (JSON text) after the elements of the list at `path`, whose JSON text (the one
    /// there now) is `list`: one `add` of the whole list, written back as it came, then them,
    /// instead of one operation per value. A single value is appended on its own (`…/-`: one
    /// operation either way, and the smaller), as is each value when `list` is not an array.
    pub fn add_to_list(&mut self, path: &[&str], list: &str, values: &[Vec<u8>]) {
        let head = list.trim_end().strip_suffix(']').filter(|h| h.trim_start().starts_with('['));
        let Some(head) = head.filter(|_| values.len() > 1) else {
            let mut each = path.to_vec();
            each.push("-");
            return self.add_json_each(&each, values);
        };
        let empty = head.trim_start()[1..].trim().is_empty();
        self.point_at(path);
        self.push_op(|out| {
            out.extend_from_slice(head.as_bytes());
            for (i, value) in values.iter().enumerate() {
                if i > 0 || !empty {
                    out.push(b',');
                }
                out.extend_from_slice(value);
            }
            out.push(b']');
            Ok(())
        });
    }

    fn point_at(&mut self, path: &[&str]) {
        self.pointer.clear();
        for token in path {
            self.pointer.push('/');
            if !token.contains(['~', '/']) {
                self.pointer.push_str(token);
                continue;
            }
            for ch in token.chars() {
                match ch {
                    '~' => self.pointer.push_str("~0"),
                    '/' => self.pointer.push_str("~1"),
                    c => self.pointer.push(c),
                }
            }
        }
        self.pointer_json.clear();
        if let Err(e) = serde_json::to_writer(&mut self.pointer_json, &self.pointer) {
            self.error.get_or_insert_with(|| PatchError::Encode { at: format!(" at {}", self.pointer), error: e });
        }
    }

    fn push_op(&mut self, write_value: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>) {
        let start = self.json.len();
        self.json.extend_from_slice(if self.ops == 0 { b"[" } else { b"," });
        self.json.extend_from_slice(br#"{"op":"add","path":"#);
        self.json.extend_from_slice(&self.pointer_json);
        self.json.extend_from_slice(br#","value":"#);
        match write_value(&mut self.json) {
            Ok(()) => {
                self.json.push(b'}');
                self.ops += 1;
            }
            Err(e) => {
                self.json.truncate(start);
                self.error.get_or_insert_with(|| PatchError::Encode { at: format!(" at {}", self.pointer), error: e });
            }
        }
    }

    /// The patch, `None` when nothing was added.
    pub fn finish(mut self) -> Result<Option<JsonPatch>, PatchError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.ops == 0 {
            return Ok(None);
        }
        self.json.push(b']');
        Ok(Some(JsonPatch { json: self.json, ops: self.ops }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn written_ops_are_the_patch_json_patch_reads() {
        let mut ops = AddOps::default();
        assert!(matches!(AddOps::default().finish(), Ok(None)));
        ops.add(&["metadata", "annotations", "a/b~c"], &"x\"y");
        ops.add(&["spec", "list", "-"], &json!({"k": [1, 2]}));
        let patch = ops.finish().unwrap().unwrap();
        assert_eq!(patch.ops, 2);
        let parsed: json_patch::Patch = serde_json::from_slice(&patch.json).unwrap();
        let mut doc = json!({"metadata": {"annotations": {}}, "spec": {"list": [0]}});
        json_patch::patch(&mut doc, &parsed).unwrap();
        assert_eq!(doc, json!({"metadata": {"annotations": {"a/b~c": "x\"y"}}, "spec": {"list": [0, {"k": [1, 2]}]}}));
        let text: Value = serde_json::from_slice(&patch.json).unwrap();
        assert_eq!(text[0]["path"], "/metadata/annotations/a~1b~0c");
    }

    /// A list written back with values after its elements, in one operation, whatever its
    /// spacing; empty lists get no stray comma; what is not an array gets one append per value.
    #[test]
    fn values_added_to_a_list_follow_its_elements_in_one_operation() {
        let values = [br#"{"n":"V1"}"#.to_vec(), br#"{"n":"V2"}"#.to_vec()];
        for (list, want) in [
            (r#"[{"n":"A","x":{"unknown":[1]}}]"#, json!([{"n": "A", "x": {"unknown": [1]}}, {"n": "V1"}, {"n": "V2"}])),
            (" [ {\"n\" : \"A\"} ,{\"n\":\"B\"}\n] \n", json!([{"n": "A"}, {"n": "B"}, {"n": "V1"}, {"n": "V2"}])),
            ("[]", json!([{"n": "V1"}, {"n": "V2"}])),
            ("[ \n ]", json!([{"n": "V1"}, {"n": "V2"}])),
        ] {
            let mut ops = AddOps::default();
            ops.add_to_list(&["spec", "containers", "0", "env"], list, &values);
            let patch = ops.finish().unwrap().unwrap();
            assert_eq!(patch.ops, 1, "{list}");
            let mut doc = json!({"spec": {"containers": [{"env": serde_json::from_str::<Value>(list).unwrap()}]}});
            json_patch::patch(&mut doc, &serde_json::from_slice::<json_patch::Patch>(&patch.json).unwrap()).unwrap();
            assert_eq!(doc["spec"]["containers"][0]["env"], want, "{list}");
        }
        let mut ops = AddOps::default();
        ops.add_to_list(&["env"], r#"{"a":1}"#, &values);
        let text: Value = serde_json::from_slice(&ops.finish().unwrap().unwrap().json).unwrap();
        assert_eq!((text[0]["path"].as_str(), text[1]["path"].as_str(), text.as_array().unwrap().len()), (Some("/env/-"), Some("/env/-"), 2));
    }

    #[test]
    fn a_value_that_cannot_be_written_is_an_error_not_a_broken_patch() {
        let mut ops = AddOps::default();
        ops.add(&["a"], &1);
        let bad: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        ops.add(&["b"], &bad);
        let err = ops.finish().unwrap_err();
        assert!(matches!(&err, PatchError::Encode { at, .. } if at == " at /b"), "{err}");
        assert!(err.to_string().starts_with("cannot encode the patch at /b: "), "{err}");
        let diff = json_patch::diff(&json!({"a": 1}), &json!({"a": 2}));
        let from = JsonPatch::from_patch(&diff).unwrap().unwrap();
        assert_eq!(from.ops, 1);
        assert_eq!(JsonPatch::from_patch(&json_patch::Patch(vec![])).unwrap(), None);
    }
}
