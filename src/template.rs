//! Key templates: the `${ … }` part of `vault:PATH#Text ${.KEY | b64enc} text`.
//!
//! Bank-Vaults evaluates these with Go's `text/template` plus all of Sprig, `file`, `env`, `blob` and
//! cloud KMS calls, so a template can read the process's files, environment and network. This is a
//! small, hermetic subset of the same syntax: data access (`.KEY`, `.a.b`, `index . "KEY"`), string
//! literals, pipes, and pure string functions. Nothing here can do I/O.
//!
//! Grammar of one action (`${` PIPELINE `}`):
//! ```text
//! pipeline := command ( "|" command )*
//! command  := operand | FUNC operand*          (a piped value becomes the last argument, as in Go)
//! operand  := "." | "." FIELD ( "." FIELD )* | "\"string\"" | "`raw string`"
//! ```

use base64::Engine as _;
use serde_json::{Map, Value};

/// A parsed key template. Parsing happens once, before any Vault call, so syntax errors are
/// reported together with the other configuration errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action(Vec<Command>),
}

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Operand(Operand),
    Call(Func, Vec<Operand>),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Dot,
    Field(Vec<String>),
    Str(String),
}

/// The functions a template may call. All are pure string functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    B64Enc,
    B64Dec,
    Upper,
    Lower,
    Title,
    Trim,
    UrlQuery,
    Replace,
    TrimPrefix,
    TrimSuffix,
    Index,
}

impl Func {
    const ALL: [(&'static str, Func, usize); 11] = [
        ("b64enc", Func::B64Enc, 1),
        ("b64dec", Func::B64Dec, 1),
        ("upper", Func::Upper, 1),
        ("lower", Func::Lower, 1),
        ("title", Func::Title, 1),
        ("trim", Func::Trim, 1),
        ("urlquery", Func::UrlQuery, 1),
        ("replace", Func::Replace, 3),
        ("trimPrefix", Func::TrimPrefix, 2),
        ("trimSuffix", Func::TrimSuffix, 2),
        ("index", Func::Index, 2),
    ];

    fn lookup(name: &str) -> Option<(Func, usize)> {
        Self::ALL.iter().find(|(n, _, _)| *n == name).map(|&(_, f, arity)| (f, arity))
    }

    fn names() -> String {
        Self::ALL.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template: unterminated action: \"${{\" without a closing \"}}\"")]
    Unterminated,
    #[error("template: empty action \"${{}}\"")]
    EmptyAction,
    #[error("template: unterminated string literal")]
    UnterminatedString,
    #[error("template: unexpected {0:?}")]
    Unexpected(String),
    #[error("template: function {0:?} is not available (vault-env templates cannot read files, the environment or the network; available: {1})")]
    UnknownFunction(String, String),
    #[error("template: {func} takes {want} argument(s), got {got}")]
    Arity { func: &'static str, want: usize, got: usize },
    #[error("key {key:?} not found (keys: {available})")]
    KeyNotFound { key: String, available: String },
    #[error("template: {0}")]
    Eval(String),
}

/// The most text one action, or one rendered template, may produce; checked before `replace`
/// allocates (a 137-byte pipeline of replaces could otherwise ask for gigabytes).
pub const MAX_OUTPUT: usize = 1024 * 1024;
/// The most commands in one pipeline.
pub const MAX_PIPELINE: usize = 16;

fn too_long() -> TemplateError {
    TemplateError::Eval(format!("the result would be longer than {MAX_OUTPUT} bytes"))
}

/// True when a key part must be read as a template (the Bank-Vaults rule: it holds `${` and `}`).
pub fn is_template(key: &str) -> bool {
    key.contains("${") && key.contains('}')
}

impl Template {
    pub fn parse(src: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let body = &rest[start + 2..];
            let end = action_end(body)?;
            parts.push(Part::Action(parse_pipeline(&body[..end])?));
            rest = &body[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Renders the template against one secret's key/value map.
    pub fn render(&self, data: &Map<String, Value>) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Action(cmds) => out.push_str(&to_text(&run_pipeline(cmds, data)?, "result")?),
            }
            if out.len() > MAX_OUTPUT {
                return Err(too_long());
            }
        }
        Ok(out)
    }
}

/// Index of the `}` closing an action, skipping braces inside string literals.
fn action_end(body: &str) -> Result<usize, TemplateError> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '`' => quote = Some(c),
            None if c == '}' => return Ok(i),
            None => {}
        }
    }
    Err(TemplateError::Unterminated)
}

#[derive(Debug, PartialEq)]
enum Token {
    Pipe,
    Word(String),
    Str(String),
}

fn tokenize(src: &str) -> Result<Vec<Token>, TemplateError> {
    let mut tokens = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' {
            chars.next();
            tokens.push(Token::Pipe);
        } else if c == '`' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('`') => break,
                    Some(ch) => s.push(ch),
                    None => return Err(TemplateError::UnterminatedString),
                }
            }
            tokens.push(Token::Str(s));
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some('r') => s.push('\r'),
                        Some(e @ ('\\' | '"')) => s.push(e),
                        Some(e) => return Err(TemplateError::Unexpected(format!("\\{e}"))),
                        None => return Err(TemplateError::UnterminatedString),
                    },
                    Some(ch) => s.push(ch),
                    None => return Err(TemplateError::UnterminatedString),
                }
            }
            tokens.push(Token::Str(s));
        } else {
            let mut w = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() || ch == '|' || ch == '"' || ch == '`' {
                    break;
                }
                w.push(ch);
                chars.next();
            }
            tokens.push(Token::Word(w));
        }
    }
    Ok(tokens)
}

fn parse_pipeline(src: &str) -> Result<Vec<Command>, TemplateError> {
    let tokens = tokenize(src)?;
    if tokens.is_empty() {
        return Err(TemplateError::EmptyAction);
    }
    if tokens.iter().filter(|t| **t == Token::Pipe).count() >= MAX_PIPELINE {
        return Err(TemplateError::Eval(format!("a pipeline may have at most {MAX_PIPELINE} commands")));
    }
    let mut commands = Vec::new();
    for (i, group) in tokens.split(|t| *t == Token::Pipe).enumerate() {
        commands.push(parse_command(group, i > 0)?);
    }
    Ok(commands)
}

fn parse_command(tokens: &[Token], piped: bool) -> Result<Command, TemplateError> {
    let Some((head, rest)) = tokens.split_first() else {
        return Err(TemplateError::Unexpected("|".into()));
    };
    if let Token::Word(w) = head
        && !w.starts_with('.')
    {
        let (func, arity) = Func::lookup(w).ok_or_else(|| TemplateError::UnknownFunction(w.clone(), Func::names()))?;
        let args = rest.iter().map(parse_operand).collect::<Result<Vec<_>, _>>()?;
        let got = args.len() + usize::from(piped);
        if got != arity {
            let name = Func::ALL.iter().find(|(_, f, _)| *f == func).map_or("?", |(n, _, _)| n);
            return Err(TemplateError::Arity { func: name, want: arity, got });
        }
        return Ok(Command::Call(func, args));
    }
    if piped {
        return Err(TemplateError::Eval("only a function can follow \"|\"".into()));
    }
    match rest {
        [] => Ok(Command::Operand(parse_operand(head)?)),
        [next, ..] => Err(TemplateError::Unexpected(token_text(next))),
    }
}

fn token_text(t: &Token) -> String {
    match t {
        Token::Pipe => "|".into(),
        Token::Word(w) => w.clone(),
        Token::Str(_) => "string literal".into(),
    }
}

fn parse_operand(token: &Token) -> Result<Operand, TemplateError> {
    match token {
        Token::Str(s) => Ok(Operand::Str(s.clone())),
        Token::Word(w) if w == "." => Ok(Operand::Dot),
        Token::Word(w) if w.starts_with('.') => {
            let fields: Vec<String> = w[1..].split('.').map(str::to_string).collect();
            if fields.iter().any(String::is_empty) {
                return Err(TemplateError::Unexpected(w.clone()));
            }
            Ok(Operand::Field(fields))
        }
        other => Err(TemplateError::Unexpected(token_text(other))),
    }
}

fn key_not_found(key: &str, map: &Map<String, Value>) -> TemplateError {
    TemplateError::KeyNotFound { key: key.to_string(), available: key_list(map) }
}

/// The key names of a secret, for error messages (names only, never values).
pub fn key_list(map: &Map<String, Value>) -> String {
    let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys.is_empty() { "none".into() } else { keys.join(", ") }
}

fn eval_operand(op: &Operand, data: &Map<String, Value>) -> Result<Value, TemplateError> {
    match op {
        Operand::Dot => Ok(Value::Object(data.clone())),
        Operand::Str(s) => Ok(Value::String(s.clone())),
        Operand::Field(path) => {
            let mut map = data;
            let Some((last, parents)) = path.split_last() else { return Ok(Value::Object(data.clone())) };
            for field in parents {
                match map.get(field) {
                    Some(Value::Object(inner)) => map = inner,
                    Some(_) => return Err(TemplateError::Eval(format!("{field:?} is not a map"))),
                    None => return Err(key_not_found(field, map)),
                }
            }
            map.get(last).cloned().ok_or_else(|| key_not_found(last, map))
        }
    }
}

fn run_pipeline(cmds: &[Command], data: &Map<String, Value>) -> Result<Value, TemplateError> {
    let mut piped: Option<Value> = None;
    for cmd in cmds {
        piped = Some(match cmd {
            Command::Operand(op) => eval_operand(op, data)?,
            Command::Call(func, args) => {
                let mut values = args.iter().map(|a| eval_operand(a, data)).collect::<Result<Vec<_>, _>>()?;
                values.extend(piped.take());
                call(*func, values)?
            }
        });
    }
    Ok(piped.unwrap_or(Value::Null))
}

/// A value that is a list or a map where text is wanted: `what` names it ("key \"a\"",
/// "argument", "result").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is a {shape}, not text")]
pub struct NotText {
    pub what: String,
    /// `list` or `map`.
    pub shape: &'static str,
}

impl From<NotText> for TemplateError {
    fn from(e: NotText) -> TemplateError {
        TemplateError::Eval(e.to_string())
    }
}

/// A value as text. Scalars are stringified as Go's `cast.ToString` does; maps and lists are an error.
pub fn to_text(value: &Value, what: &str) -> Result<String, NotText> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        Value::Array(_) => Err(NotText { what: what.into(), shape: "list" }),
        Value::Object(_) => Err(NotText { what: what.into(), shape: "map" }),
    }
}

fn call(func: Func, args: Vec<Value>) -> Result<Value, TemplateError> {
    let text = |i: usize| to_text(&args[i], "argument");
    let s = match func {
        Func::B64Enc => base64::engine::general_purpose::STANDARD.encode(text(0)?),
        Func::B64Dec => {
            // Never base64's own error: it names the offending byte and its offset, which would
            // tell a secret's characters one by one.
            let raw = base64::engine::general_purpose::STANDARD
                .decode(text(0)?.trim())
                .map_err(|_| TemplateError::Eval("b64dec: not valid base64".into()))?;
            String::from_utf8(raw).map_err(|_| TemplateError::Eval("b64dec: decoded bytes are not UTF-8 text".into()))?
        }
        Func::Upper => text(0)?.to_uppercase(),
        Func::Lower => text(0)?.to_lowercase(),
        Func::Title => title(&text(0)?),
        Func::Trim => text(0)?.trim().to_string(),
        Func::UrlQuery => query_escape(&text(0)?),
        Func::Replace => {
            let (old, new, s) = (text(0)?, text(1)?, text(2)?);
            let count = if old.is_empty() { s.chars().count() + 1 } else { s.matches(old.as_str()).count() };
            let grows = new.len().saturating_sub(old.len()).saturating_mul(count);
            if s.len().saturating_add(grows) > MAX_OUTPUT {
                return Err(too_long());
            }
            s.replace(&old, &new)
        }
        Func::TrimPrefix => {
            let s = text(1)?;
            s.strip_prefix(text(0)?.as_str()).map_or(s.clone(), str::to_string)
        }
        Func::TrimSuffix => {
            let s = text(1)?;
            s.strip_suffix(text(0)?.as_str()).map_or(s.clone(), str::to_string)
        }
        Func::Index => {
            let key = text(1)?;
            return match &args[0] {
                Value::Object(map) => map.get(&key).cloned().ok_or_else(|| key_not_found(&key, map)),
                _ => Err(TemplateError::Eval("index: first argument is not a map".into())),
            };
        }
    };
    if s.len() > MAX_OUTPUT {
        return Err(too_long());
    }
    Ok(Value::String(s))
}

/// Go's `strings.Title`: the first letter of every word upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_word_start = true;
    for c in s.chars() {
        if at_word_start && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_word_start = !(c.is_alphanumeric() || c == '_');
    }
    out
}

/// Go's `url.QueryEscape` (what `urlquery` does in Go templates): space becomes `+`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> Map<String, Value> {
        json!({
            "AWS_ACCESS_KEY_ID": "secretId",
            "DOCKER_USERNAME": "john doe",
            "password": "p@ss word/+",
            "port": 5432,
            "enabled": true,
            "nested": {"inner": "deep"},
            "list": [1, 2],
            "b64": "aGVsbG8=",
            "DB-PASS": "dash",
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    fn render(src: &str) -> Result<String, TemplateError> {
        Template::parse(src)?.render(&data())
    }

    #[test]
    fn lists_and_maps_are_not_text_and_say_which() {
        assert_eq!(to_text(&json!([1]), "key \"a\""), Err(NotText { what: "key \"a\"".into(), shape: "list" }));
        assert_eq!(to_text(&json!({"b": 1}), "result").unwrap_err().to_string(), "result is a map, not text");
        assert_eq!(to_text(&json!(null), "x").as_deref(), Ok(""));
        assert_eq!(render("${.list}").unwrap_err(), TemplateError::Eval("result is a list, not text".into()));
        assert_eq!(render("${upper .nested}").unwrap_err(), TemplateError::Eval("argument is a map, not text".into()));
    }

    #[test]
    fn template_render_table() {
        let cases = [
            ("${.AWS_ACCESS_KEY_ID}", "secretId"),
            ("AWS key in base64: ${.AWS_ACCESS_KEY_ID | b64enc}", "AWS key in base64: c2VjcmV0SWQ="),
            ("My username on DockerHub is: ${title .DOCKER_USERNAME}", "My username on DockerHub is: John Doe"),
            ("${ .password | urlquery }", "p%40ss+word%2F%2B"),
            ("${.b64 | b64dec}", "hello"),
            ("${upper .DOCKER_USERNAME}-${lower \"ABC\"}", "JOHN DOE-abc"),
            ("${.port}:${.enabled}", "5432:true"),
            ("${.nested.inner}", "deep"),
            ("${index . \"DB-PASS\"}", "dash"),
            ("${.DB-PASS}", "dash"),
            ("${replace \"o\" \"0\" .DOCKER_USERNAME}", "j0hn d0e"),
            ("${.DOCKER_USERNAME | trimPrefix \"john \"}", "doe"),
            ("${.DOCKER_USERNAME | trimSuffix `doe` | trim | upper}", "JOHN"),
            ("no action here }", "no action here }"),
            ("${\"a}b\"}", "a}b"),
        ];
        for (src, want) in cases {
            assert_eq!(render(src).as_deref(), Ok(want), "template {src:?}");
        }
    }

    #[test]
    fn template_errors_table() {
        type Check = fn(&TemplateError) -> bool;
        let cases: [(&str, Check); 10] = [
            ("${.missing}", |e| matches!(e, TemplateError::KeyNotFound { key, .. } if key == "missing")),
            ("${env \"HOME\"}", |e| matches!(e, TemplateError::UnknownFunction(f, _) if f == "env")),
            ("${file \"/etc/passwd\"}", |e| matches!(e, TemplateError::UnknownFunction(..))),
            ("${.a", |e| *e == TemplateError::Unterminated),
            ("${}", |e| *e == TemplateError::EmptyAction),
            ("${b64enc}", |e| matches!(e, TemplateError::Arity { want: 1, got: 0, .. })),
            ("${.list}", |e| matches!(e, TemplateError::Eval(m) if m.contains("list"))),
            ("${.nested}", |e| matches!(e, TemplateError::Eval(m) if m.contains("map"))),
            ("${.password | .port}", |e| matches!(e, TemplateError::Eval(_))),
            ("${\"abc}", |e| *e == TemplateError::Unterminated),
        ];
        for (src, check) in cases {
            let err = render(src).expect_err(src);
            assert!(check(&err), "template {src:?}: unexpected error {err:?}");
        }
    }

    /// Seven chained replaces of a 10-byte string asked for 133 MB (and ten
    /// aborted the webhook); the size is now checked before anything is allocated.
    #[test]
    fn template_output_and_pipelines_are_bounded() {
        let bomb = |stages: usize| format!("${{\"aaaaaaaaaa\"{}}}", " | replace \"a\" \"aaaaaaaaaa\"".repeat(stages));
        assert_eq!(render(&bomb(5)).unwrap().len(), 1_000_000, "within the cap");
        for stages in [6, 10, 15] {
            let err = render(&bomb(stages)).unwrap_err();
            assert_eq!(err.to_string(), format!("template: the result would be longer than {MAX_OUTPUT} bytes"), "{stages} stages");
        }
        let err = render(&bomb(16)).unwrap_err();
        assert_eq!(err.to_string(), format!("template: a pipeline may have at most {MAX_PIPELINE} commands"));
        // An empty pattern inserts at every character boundary, as in Go.
        assert_eq!(render("${\"ab\" | replace \"\" \"-\"}").unwrap(), "-a-b-");
        let wide = format!("${{\"{}\" | replace \"\" \"xxxxxxxxxx\"}}", "a".repeat(200_000));
        assert!(render(&wide).is_err());
        // Many actions, each under the cap, are capped together.
        let many = "${\"aaaaaaaaaa\" | replace \"a\" \"aaaaaaaaaa\" | replace \"a\" \"aaaaaaaaaa\" | replace \"a\" \"aaaaaaaaaa\" | replace \"a\" \"aaaaaaaaaa\" | replace \"a\" \"aaaaaaaaaa\"}".repeat(2);
        assert!(render(&many).is_err());
    }

    /// base64's error used to name the offending byte and its offset (a secret's, in a key template).
    #[test]
    fn b64dec_errors_do_not_describe_the_input() {
        let err = render("${.password | b64dec}").unwrap_err().to_string();
        assert_eq!(err, "template: b64dec: not valid base64");
    }

    #[test]
    fn template_key_not_found_lists_names_not_values() {
        let msg = render("${.nope}").unwrap_err().to_string();
        assert!(msg.contains("AWS_ACCESS_KEY_ID") && msg.contains("password"), "{msg}");
        assert!(!msg.contains("secretId") && !msg.contains("p@ss"), "{msg}");
    }

    #[test]
    fn is_template_needs_both_delimiters() {
        assert!(is_template("${.a}"));
        assert!(is_template("x ${ .a } y"));
        assert!(!is_template("plainkey"));
        assert!(!is_template("${open"));
    }

    #[test]
    fn query_escape_matches_go() {
        assert_eq!(query_escape("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn title_matches_go_strings_title() {
        assert_eq!(title("hello wORLD-foo_bar 1st"), "Hello WORLD-Foo_bar 1st");
    }
}
