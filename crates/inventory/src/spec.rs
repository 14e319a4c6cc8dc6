//! OpenAPI 3.0/3.1 documents: load them, and match observed endpoints against them.
//!
//! [`Spec::load`] (a file) and [`Spec::parse`] (text) read a YAML or JSON document (told apart
//! by content, not by file name) into a small [`Spec`]: its [`Server`]s (variables substituted
//! by their defaults, split into host and base path) and one [`Operation`] per path template
//! and method (operation id, deprecation, [`Parameter`]s, request body media types, response
//! codes). Local `$ref`s (`#/components/...`) are followed, at most [`MAX_REF_DEPTH`] deep and
//! never around a cycle. Problems that make the document unusable are a [`SpecError`] naming
//! the file and, where there is one, the JSON pointer of the bad part; smaller problems (an
//! unresolvable parameter `$ref`, say) are skipped and noted in [`Spec::warnings`].
//!
//! A [`SpecSet`] holds the loaded specs and compiles, per host, a segment tree of every full
//! path template (server base path + spec path), so matching one endpoint costs a hash lookup
//! per host and a walk of a few tree nodes. [`SpecSet::find`] answers a [`SpecMatch`]: the
//! [`Match`]ing operation, or [`SpecMatch::PathOnly`] when the path is known but the method
//! is not.
//!
//! Rules, in one place:
//! - **Hosts.** A spec applies to the hosts of its absolute `servers` URLs, unless the caller
//!   passes hosts of its own to [`SpecSet::add`] (they replace the servers' hosts; the
//!   servers' base paths still apply). Relative server URLs, and a spec without servers and
//!   without configured hosts, apply to every host. Hosts compare case-insensitively, without
//!   a trailing dot and without the default ports 80 and 443; a server host without a port
//!   also covers that host on any port; `*.example.com` (configured) covers every subdomain
//!   and `*` every host.
//! - **Paths.** Matched segment by segment; a literal segment beats a mixed one
//!   (`{name}.json`) which beats a whole-segment parameter, so `/pets/mine` wins over
//!   `/pets/{petId}`. A parameter segment matches any non-empty segment, including a
//!   template's own `{id}`, so observed templates match too. A trailing slash is ignored on
//!   both sides (`/pets/` is `/pets`); empty segments inside a path are kept and only match
//!   empty literals. Case matters; a percent-encoded segment also matches its decoded form.
//!   A query string or fragment on the input is ignored.
//! - **Methods** compare case-insensitively. The first template (in precedence order) that
//!   has the method wins, so `DELETE /pets/mine` finds `DELETE /pets/{petId}` when
//!   `/pets/mine` has only `GET`; when no template has the method the answer is `PathOnly`
//!   for the best template.
//! - **Templates returned** ([`Match::template`], [`SpecSet::templates_for_host`]) include the
//!   server base path, like the paths seen on the wire (`/v2/pets/{petId}`);
//!   [`Match::spec_path`] is the key as written under `paths` (`/pets/{petId}`).
//!
//! ```
//! use apiscope_inventory::spec::{Spec, SpecMatch, SpecSet};
//!
//! let yaml = r#"
//! openapi: 3.0.3
//! info: {title: Pets, version: "1"}
//! servers: [{url: "https://api.example.com/v2"}]
//! paths:
//!   /pets/{petId}:
//!     get: {operationId: getPet, responses: {"200": {description: ok}}}
//!   /pets/mine:
//!     get: {operationId: myPets, deprecated: true, responses: {"200": {description: ok}}}
//! "#;
//! let spec = Spec::parse(yaml, "pets.yaml").unwrap();
//! let mut specs = SpecSet::new();
//! specs.add(spec, &[]);
//!
//! match specs.find("api.example.com", "get", "/v2/pets/42") {
//!     Some(SpecMatch::Operation(m)) => {
//!         assert_eq!(m.template, "/v2/pets/{petId}");
//!         assert_eq!(m.operation_id, Some("getPet"));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! let Some(SpecMatch::Operation(m)) = specs.find("api.example.com", "GET", "/v2/pets/mine")
//! else { panic!() };
//! assert!(m.deprecated);
//! assert!(matches!(
//!     specs.find("api.example.com", "PUT", "/v2/pets/42"),
//!     Some(SpecMatch::PathOnly(_))
//! ));
//! assert!(specs.find("api.example.com", "GET", "/v2/owners").is_none());
//! assert!(specs.find("other.example.com", "GET", "/v2/pets/42").is_none());
//! let templates: Vec<&str> = specs.templates_for_host("api.example.com").collect();
//! assert_eq!(templates, ["/v2/pets/mine", "/v2/pets/{petId}"]);
//! ```

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use serde_json::{Map, Value};

/// How many `$ref` hops are followed before giving up on a reference.
pub const MAX_REF_DEPTH: usize = 32;

/// Spec files larger than this are refused ([`SpecError::TooLarge`]).
pub const MAX_SPEC_BYTES: u64 = 64 * 1024 * 1024;

/// Paths with more segments than this never match (and are not compiled).
pub const MAX_PATH_SEGMENTS: usize = 256;

/// The HTTP methods an OpenAPI 3.0/3.1 path item can hold, as written in the document.
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Why a spec could not be loaded. Every variant names the file (or the name the caller gave
/// the text); `Malformed` also names the JSON pointer of the bad part (`#/paths/~1pets`).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("{file}: cannot read: {error}")]
    Io {
        /// File name.
        file: String,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// The file is larger than [`MAX_SPEC_BYTES`].
    #[error("{file}: {bytes} bytes is larger than the {MAX_SPEC_BYTES}-byte limit for a spec")]
    TooLarge {
        /// File name.
        file: String,
        /// Its size.
        bytes: u64,
    },
    /// The text starts like JSON (`{`) but is not valid JSON.
    #[error("{file}: not valid JSON: {message}")]
    Json {
        /// File name.
        file: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The text is not valid YAML (or uses YAML that has no JSON equivalent).
    #[error("{file}: not valid YAML: {message}")]
    Yaml {
        /// File name.
        file: String,
        /// The parser's message, with line and column where known.
        message: String,
    },
    /// The document has no top-level `openapi` field (or is not an object at all).
    #[error("{file}: not an OpenAPI document: {why}")]
    NotOpenApi {
        /// File name.
        file: String,
        /// What is missing.
        why: String,
    },
    /// A Swagger 2.0 document (`swagger: "2.0"`).
    #[error(
        "{file}: Swagger {version} is not supported: convert it to OpenAPI 3 \
         (for example with swagger2openapi) and load that"
    )]
    Swagger2 {
        /// File name.
        file: String,
        /// The `swagger` field's value.
        version: String,
    },
    /// `openapi` is not 3.0.x or 3.1.x.
    #[error("{file}: #/openapi: unsupported OpenAPI version {version:?} (3.0.x and 3.1.x are supported)")]
    UnsupportedVersion {
        /// File name.
        file: String,
        /// The `openapi` field's value.
        version: String,
    },
    /// A part the matcher needs is broken: `paths` not an object, a path that does not start
    /// with `/` or has unbalanced braces, a server URL with an undefined variable, ...
    #[error("{file}: #{pointer}: {message}")]
    Malformed {
        /// File name.
        file: String,
        /// JSON pointer (RFC 6901) of the bad part, `""` for the whole document.
        pointer: String,
        /// What is wrong.
        message: String,
    },
}

/// Something in a spec that was skipped while loading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecWarning {
    /// JSON pointer of the skipped part.
    pub pointer: String,
    /// What was wrong with it.
    pub message: String,
}

/// One entry of `servers`, after substituting variables by their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The URL after substitution (`https://api.example.com/v2`).
    pub url: String,
    /// Normalised host (lower case, default port removed, `api.example.com` or
    /// `api.example.com:8443`); `None` for a relative URL.
    pub host: Option<String>,
    /// Path prefix without a trailing slash (`/v2`), `""` for none.
    pub base_path: String,
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamLocation {
    /// A `{name}` in the path template.
    Path,
    /// The query string.
    Query,
    /// A request header.
    Header,
    /// A cookie.
    Cookie,
}

impl ParamLocation {
    /// The OpenAPI `in` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParamLocation::Path => "path",
            ParamLocation::Query => "query",
            ParamLocation::Header => "header",
            ParamLocation::Cookie => "cookie",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "path" => ParamLocation::Path,
            "query" => ParamLocation::Query,
            "header" => ParamLocation::Header,
            "cookie" => ParamLocation::Cookie,
            _ => return None,
        })
    }
}

/// A parameter of an operation (path-level ones merged in, operation-level ones winning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// Its name.
    pub name: String,
    /// Where it goes.
    pub location: ParamLocation,
    /// Whether it is required (always true for path parameters).
    pub required: bool,
    /// The schema's `type` (`string`, `integer`, ...; for a 3.1 type list, the first that is
    /// not `null`), `None` when the schema does not say.
    pub schema_type: Option<String>,
}

/// One operation: a method on a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The path template as written under `paths` (`/pets/{petId}`).
    pub path: String,
    /// The method, upper case (`GET`).
    pub method: String,
    /// `operationId`, if any.
    pub operation_id: Option<String>,
    /// `deprecated: true` on the operation, or `x-deprecated: true` on it or its path item.
    pub deprecated: bool,
    /// Path, query, header and cookie parameters, path-level and operation-level merged.
    pub parameters: Vec<Parameter>,
    /// Media types of the request body (`application/json`, ...).
    pub request_content_types: Vec<String>,
    /// Response keys as written (`200`, `4XX`, `default`).
    pub responses: Vec<String>,
    /// Servers of the path item or operation when they override the document's.
    pub servers: Option<Vec<Server>>,
}

/// A loaded OpenAPI document, reduced to what matching and comparison need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The file it came from (or the name given to [`Spec::parse`]).
    pub file: String,
    /// The `openapi` version (`3.0.3`).
    pub version: String,
    /// `info.title`, if any.
    pub title: Option<String>,
    /// The document's servers; empty when it has none (OpenAPI then means `/`).
    pub servers: Vec<Server>,
    /// Every operation, in document order of paths, then [`METHODS`] order.
    pub operations: Vec<Operation>,
    /// What was skipped while loading.
    pub warnings: Vec<SpecWarning>,
}

impl Spec {
    /// Reads and parses a spec file. Errors: [`SpecError::Io`], [`SpecError::TooLarge`], and
    /// every error of [`Spec::parse`].
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let file = path.display().to_string();
        let io = |error| SpecError::Io {
            file: file.clone(),
            error,
        };
        let bytes = std::fs::metadata(path).map_err(io)?.len();
        if bytes > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge { file, bytes });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Spec::parse(&text, &file)
    }

    /// Parses a spec from text; `file` names it in errors. JSON when the first non-blank
    /// character is `{`, YAML otherwise.
    pub fn parse(text: &str, file: &str) -> Result<Spec, SpecError> {
        let doc = parse_document(text, file)?;
        Spec::from_value(&doc, file)
    }

    /// Builds a spec from a document already parsed into JSON values.
    pub fn from_value(doc: &Value, file: &str) -> Result<Spec, SpecError> {
        Loader {
            doc,
            file,
            warnings: Vec::new(),
        }
        .load()
    }
}

/// Parses JSON or YAML text into a JSON value (YAML keys that are numbers or booleans become
/// strings, as `200:` under `responses` must).
fn parse_document(text: &str, file: &str) -> Result<Value, SpecError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        // JSON; but a YAML flow mapping (`{openapi: 3.1.0, ...}`) starts the same way, so
        // try YAML before reporting the JSON error.
        return serde_json::from_str(text).or_else(|e| {
            parse_yaml(text, file).map_err(|_| SpecError::Json {
                file: file.to_owned(),
                message: e.to_string(),
            })
        });
    }
    parse_yaml(text, file)
}

fn parse_yaml(text: &str, file: &str) -> Result<Value, SpecError> {
    let yaml_err = |message: String| SpecError::Yaml {
        file: file.to_owned(),
        message,
    };
    let mut yaml: yaml_serde::Value =
        yaml_serde::from_str(text).map_err(|e| yaml_err(e.to_string()))?;
    yaml.apply_merge().map_err(|e| yaml_err(e.to_string()))?;
    yaml_to_json(yaml).map_err(yaml_err)
}

fn yaml_to_json(v: yaml_serde::Value) -> Result<Value, String> {
    use yaml_serde::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => yaml_number(&n),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_owned(),
                    Y::Tagged(t) => match t.value {
                        Y::String(s) => s,
                        _ => return Err("a mapping key that is not a scalar".to_owned()),
                    },
                    _ => return Err("a mapping key that is not a scalar".to_owned()),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value)?,
    })
}

fn yaml_number(n: &yaml_serde::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::from(i)
    } else if let Some(u) = n.as_u64() {
        Value::from(u)
    } else {
        n.as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(n.to_string()), Value::Number)
    }
}

/// Escapes one JSON pointer token (RFC 6901).
fn escape_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

struct Loader<'d> {
    doc: &'d Value,
    file: &'d str,
    warnings: Vec<SpecWarning>,
}

impl<'d> Loader<'d> {
    fn malformed(&self, pointer: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError::Malformed {
            file: self.file.to_owned(),
            pointer: pointer.into(),
            message: message.into(),
        }
    }

    fn warn(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(SpecWarning {
            pointer: pointer.into(),
            message: message.into(),
        });
    }

    fn load(mut self) -> Result<Spec, SpecError> {
        let file = self.file.to_owned();
        let Some(root) = self.doc.as_object() else {
            return Err(SpecError::NotOpenApi {
                file,
                why: "the document is not a mapping".to_owned(),
            });
        };
        let version = match root.get("openapi") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(SpecError::UnsupportedVersion {
                    file,
                    version: other.to_string(),
                })
            }
            None => {
                if let Some(v) = root.get("swagger") {
                    let version = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    return Err(SpecError::Swagger2 { file, version });
                }
                return Err(SpecError::NotOpenApi {
                    file,
                    why: "the top level has no `openapi` field".to_owned(),
                });
            }
        };
        let supported = ["3.0", "3.1"].iter().any(|p| {
            version
                .strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        });
        if !supported {
            return Err(SpecError::UnsupportedVersion { file, version });
        }
        let is_30 = version.starts_with("3.0");
        let title = root
            .get("info")
            .and_then(|i| i.get("title"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let servers = self
            .servers(root.get("servers"), "/servers")?
            .unwrap_or_default();

        let mut operations = Vec::new();
        match root.get("paths") {
            None if is_30 => {
                return Err(self.malformed("", "an OpenAPI 3.0 document needs `paths`"))
            }
            None | Some(Value::Null) => {}
            Some(Value::Object(paths)) => {
                for (path, item) in paths {
                    if path.starts_with("x-") {
                        continue;
                    }
                    self.path_item(path, item, &mut operations)?;
                }
            }
            Some(_) => return Err(self.malformed("/paths", "`paths` is not a mapping")),
        }
        Ok(Spec {
            file,
            version,
            title,
            servers,
            operations,
            warnings: self.warnings,
        })
    }

    /// Follows `$ref`s from `v` (found at `pointer`) to a non-reference value. Returns the
    /// value and its pointer, or why the reference cannot be followed.
    fn resolve(&self, mut v: &'d Value, pointer: &str) -> Result<(&'d Value, String), String> {
        let mut at = pointer.to_owned();
        let mut seen = HashSet::new();
        for _ in 0..=MAX_REF_DEPTH {
            let Some(r) = v.get("$ref") else {
                return Ok((v, at));
            };
            let Some(r) = r.as_str() else {
                return Err("`$ref` is not a string".to_owned());
            };
            let Some(fragment) = r.strip_prefix('#') else {
                return Err(format!("external reference {r:?} is not followed"));
            };
            let target = percent_decode(fragment).into_owned();
            if !seen.insert(target.clone()) {
                return Err(format!("reference cycle through {r:?}"));
            }
            v = self
                .doc
                .pointer(&target)
                .ok_or_else(|| format!("reference {r:?} points to nothing"))?;
            at = target;
        }
        Err(format!("more than {MAX_REF_DEPTH} nested references"))
    }

    fn servers(
        &mut self,
        v: Option<&Value>,
        pointer: &str,
    ) -> Result<Option<Vec<Server>>, SpecError> {
        let list = match v {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(self.malformed(pointer, "`servers` is not a list")),
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            let at = format!("{pointer}/{i}");
            let Some(url) = s.get("url").and_then(Value::as_str) else {
                return Err(self.malformed(at, "a server without a `url` string"));
            };
            let url = self.substitute(url, s.get("variables"), &at)?;
            let (host, base_path) = split_server_url(&url);
            out.push(Server {
                url,
                host,
                base_path,
            });
        }
        Ok(Some(out))
    }

    fn substitute(&self, url: &str, vars: Option<&Value>, at: &str) -> Result<String, SpecError> {
        let mut out = String::with_capacity(url.len());
        let mut rest = url;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                return Err(self.malformed(format!("{at}/url"), "unbalanced `{` in the server URL"));
            };
            let name = &rest[open + 1..open + close];
            let default = vars
                .and_then(|v| v.get(name))
                .and_then(|v| v.get("default"))
                .and_then(|d| match d {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                });
            let Some(default) = default else {
                return Err(self.malformed(
                    format!("{at}/variables"),
                    format!("server variable {name:?} has no default"),
                ));
            };
            out.push_str(&default);
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn path_item(
        &mut self,
        path: &str,
        item: &'d Value,
        ops: &mut Vec<Operation>,
    ) -> Result<(), SpecError> {
        let at = format!("/paths/{}", escape_token(path));
        if !path.starts_with('/') {
            return Err(self.malformed(at, "a path must start with `/`"));
        }
        if let Err(why) = parse_template(path) {
            return Err(self.malformed(at, why));
        }
        let (item, item_at) = match self.resolve(item, &at) {
            Ok(r) => r,
            Err(why) => {
                self.warn(at, why);
                return Ok(());
            }
        };
        let Some(item) = item.as_object() else {
            return Err(self.malformed(item_at, "a path item is not a mapping"));
        };
        let path_deprecated = item.get("x-deprecated").and_then(Value::as_bool) == Some(true);
        let path_params =
            self.parameters(item.get("parameters"), &format!("{item_at}/parameters"))?;
        let path_servers = self.servers(item.get("servers"), &format!("{item_at}/servers"))?;
        for method in METHODS {
            let Some((key, op)) = item.iter().find(|(k, _)| k.eq_ignore_ascii_case(method)) else {
                continue;
            };
            let op_at = format!("{item_at}/{}", escape_token(key));
            let Some(op) = op.as_object() else {
                return Err(self.malformed(op_at, "an operation is not a mapping"));
            };
            let mut parameters = path_params.clone();
            for p in self.parameters(op.get("parameters"), &format!("{op_at}/parameters"))? {
                match parameters
                    .iter_mut()
                    .find(|q| q.name == p.name && q.location == p.location)
                {
                    Some(q) => *q = p,
                    None => parameters.push(p),
                }
            }
            let flag = |k: &str| op.get(k).and_then(Value::as_bool) == Some(true);
            let request_content_types = match op.get("requestBody") {
                None => Vec::new(),
                Some(body) => match self.resolve(body, &format!("{op_at}/requestBody")) {
                    Ok((body, _)) => body
                        .get("content")
                        .and_then(Value::as_object)
                        .map(|c| c.keys().cloned().collect())
                        .unwrap_or_default(),
                    Err(why) => {
                        self.warn(format!("{op_at}/requestBody"), why);
                        Vec::new()
                    }
                },
            };
            let responses = op
                .get("responses")
                .and_then(Value::as_object)
                .map(|r| r.keys().filter(|k| !k.starts_with("x-")).cloned().collect())
                .unwrap_or_default();
            let servers = match self.servers(op.get("servers"), &format!("{op_at}/servers"))? {
                Some(s) => Some(s),
                None => path_servers.clone(),
            };
            ops.push(Operation {
                path: path.to_owned(),
                method: method.to_ascii_uppercase(),
                operation_id: op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                deprecated: path_deprecated || flag("deprecated") || flag("x-deprecated"),
                parameters,
                request_content_types,
                responses,
                servers,
            });
        }
        Ok(())
    }

    fn parameters(&mut self, v: Option<&'d Value>, at: &str) -> Result<Vec<Parameter>, SpecError> {
        let list = match v {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(self.malformed(at, "`parameters` is not a list")),
        };
        let mut out: Vec<Parameter> = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            let p_at = format!("{at}/{i}");
            let (p, _) = match self.resolve(p, &p_at) {
                Ok(r) => r,
                Err(why) => {
                    self.warn(p_at, why);
                    continue;
                }
            };
            let name = p.get("name").and_then(Value::as_str);
            let location = p
                .get("in")
                .and_then(Value::as_str)
                .and_then(ParamLocation::parse);
            let (Some(name), Some(location)) = (name, location) else {
                self.warn(p_at, "a parameter without a `name` or a valid `in`");
                continue;
            };
            let required = location == ParamLocation::Path
                || p.get("required").and_then(Value::as_bool) == Some(true);
            let schema = p.get("schema").or_else(|| {
                p.get("content")
                    .and_then(Value::as_object)
                    .and_then(|c| c.values().next())
                    .and_then(|m| m.get("schema"))
            });
            let schema_type = schema.and_then(|s| self.schema_type(s, &p_at));
            let param = Parameter {
                name: name.to_owned(),
                location,
                required,
                schema_type,
            };
            match out
                .iter_mut()
                .find(|q| q.name == param.name && q.location == param.location)
            {
                Some(q) => *q = param,
                None => out.push(param),
            }
        }
        Ok(out)
    }

    fn schema_type(&mut self, schema: &'d Value, at: &str) -> Option<String> {
        let schema = match self.resolve(schema, at) {
            Ok((s, _)) => s,
            Err(why) => {
                self.warn(format!("{at}/schema"), why);
                return None;
            }
        };
        match schema.get("type")? {
            Value::String(t) => Some(t.clone()),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .map(str::to_owned),
            _ => None,
        }
    }
}

/// Splits a server URL into (normalised host, base path). Relative URLs have no host.
fn split_server_url(url: &str) -> (Option<String>, String) {
    let url = url.trim();
    let (scheme, rest) = match url.find("://") {
        Some(i)
            if url[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            (Some(url[..i].to_ascii_lowercase()), Some(&url[i + 3..]))
        }
        _ => match url.strip_prefix("//") {
            Some(rest) => (None, Some(rest)),
            None => (None, None),
        },
    };
    let Some(rest) = rest else {
        return (None, normalize_base_path(url));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = normalize_host_with_scheme(authority, scheme.as_deref());
    (Some(host), normalize_base_path(&rest[end..]))
}

fn normalize_base_path(path: &str) -> String {
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let path = path.strip_prefix('.').unwrap_or(path);
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        String::new()
    } else if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into host and optional port text.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        if let Some(close) = authority.find(']') {
            let port = authority[close + 1..].strip_prefix(':');
            return (&authority[..=close], port);
        }
        return (authority, None);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (authority, None),
    }
}

fn normalize_host_with_scheme(authority: &str, scheme: Option<&str>) -> String {
    let (host, port) = split_port(authority.trim());
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let default = match (scheme, port) {
        (_, None) | (_, Some("")) => true,
        (Some("http" | "ws"), Some(p)) => p == "80",
        (Some("https" | "wss"), Some(p)) => p == "443",
        (Some(_), Some(_)) => false,
        (None, Some(p)) => p == "80" || p == "443",
    };
    match port {
        Some(p) if !default => format!("{host}:{p}"),
        _ => host,
    }
}

/// Normalises a host as seen on the wire (a `Host` header) or configured: lower case, no
/// trailing dot, ports 80 and 443 dropped (the scheme is not known).
pub fn normalize_host(host: &str) -> String {
    normalize_host_with_scheme(host, None)
}

// ---------------------------------------------------------------------------------------------
// Path templates and the segment tree.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(Box<str>),
    Param,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(Box<str>),
    Param,
    /// A segment mixing literals and parameters (`{name}.{ext}`, `v{version}`).
    Mixed(Vec<Piece>),
}

/// Splits a path into segments: leading `/` dropped, one trailing empty segment dropped, query
/// and fragment cut off.
fn split_path(path: &str) -> impl Iterator<Item = &str> {
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    let empty = path.is_empty();
    path.split('/').filter(move |_| !empty)
}

/// Parses a path template into segments; `Err` says why the braces are wrong.
fn parse_template(path: &str) -> Result<Vec<Seg>, String> {
    split_path(path).map(parse_segment).collect()
}

fn parse_segment(seg: &str) -> Result<Seg, String> {
    if !seg.contains(['{', '}']) {
        return Ok(Seg::Lit(seg.into()));
    }
    let mut pieces = Vec::new();
    let mut rest = seg;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                pieces.push(Piece::Lit(rest.into()));
                rest = "";
            }
            Some(i) if rest.as_bytes()[i] == b'}' => {
                return Err(format!("unbalanced `}}` in path segment {seg:?}"))
            }
            Some(i) => {
                if i > 0 {
                    pieces.push(Piece::Lit(rest[..i].into()));
                }
                let Some(close) = rest[i..].find('}') else {
                    return Err(format!("unbalanced `{{` in path segment {seg:?}"));
                };
                let name = &rest[i + 1..i + close];
                if name.is_empty() || name.contains('{') {
                    return Err(format!("bad parameter name in path segment {seg:?}"));
                }
                pieces.push(Piece::Param);
                rest = &rest[i + close + 1..];
            }
        }
    }
    Ok(if pieces == [Piece::Param] {
        Seg::Param
    } else {
        Seg::Mixed(pieces)
    })
}

/// Whether `s` matches the pieces of a mixed segment (each parameter takes one or more
/// characters).
fn match_pieces(pieces: &[Piece], s: &str) -> bool {
    match pieces.split_first() {
        None => s.is_empty(),
        Some((Piece::Lit(l), rest)) => s
            .strip_prefix(&**l)
            .is_some_and(|tail| match_pieces(rest, tail)),
        Some((Piece::Param, rest)) => {
            if rest.is_empty() {
                return !s.is_empty();
            }
            s.char_indices()
                .skip(1)
                .any(|(i, _)| match_pieces(rest, &s[i..]))
        }
    }
}

/// A path template at a tree node, with the operations it has.
#[derive(Debug)]
struct PathEntry {
    spec: usize,
    /// Base path + spec path.
    template: Box<str>,
    /// Index of one operation on this path (for its spec path) and every method's.
    ops: Vec<(Box<str>, usize)>,
}

#[derive(Debug, Default)]
struct Node {
    literals: HashMap<Box<str>, usize>,
    /// Mixed segments, most literal characters first.
    mixed: Vec<(Vec<Piece>, usize)>,
    param: Option<usize>,
    entries: Vec<PathEntry>,
}

/// The compiled templates of one host (or of "any host").
#[derive(Debug)]
struct Tree {
    nodes: Vec<Node>,
    templates: BTreeSet<Box<str>>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            nodes: vec![Node::default()],
            templates: BTreeSet::new(),
        }
    }
}

impl Tree {
    fn child(&mut self, node: usize, seg: Seg) -> usize {
        let next = self.nodes.len();
        let n = &mut self.nodes[node];
        let found = match &seg {
            Seg::Lit(l) => n.literals.get(l).copied(),
            Seg::Param => n.param,
            Seg::Mixed(p) => n.mixed.iter().find(|(q, _)| q == p).map(|(_, i)| *i),
        };
        if let Some(i) = found {
            return i;
        }
        match seg {
            Seg::Lit(l) => {
                n.literals.insert(l, next);
            }
            Seg::Param => n.param = Some(next),
            Seg::Mixed(p) => {
                n.mixed.push((p, next));
                let lit_len = |p: &[Piece]| -> usize {
                    p.iter()
                        .map(|x| match x {
                            Piece::Lit(l) => l.len(),
                            Piece::Param => 0,
                        })
                        .sum()
                };
                n.mixed.sort_by_key(|(p, _)| std::cmp::Reverse(lit_len(p)));
            }
        }
        self.nodes.push(Node::default());
        next
    }

    fn insert(&mut self, template: &str, spec: usize, method: &str, op: usize) {
        let Ok(segs) = parse_template(template) else {
            return;
        };
        if segs.len() > MAX_PATH_SEGMENTS {
            return;
        }
        let mut node = 0;
        for seg in segs {
            // Literals are kept decoded; the search tries the raw and the decoded input.
            let seg = match seg {
                Seg::Lit(l) => Seg::Lit(percent_decode(&l).into()),
                other => other,
            };
            node = self.child(node, seg);
        }
        let entries = &mut self.nodes[node].entries;
        let entry = match entries
            .iter_mut()
            .position(|e| e.spec == spec && *e.template == *template)
        {
            Some(i) => &mut entries[i],
            None => {
                entries.push(PathEntry {
                    spec,
                    template: template.into(),
                    ops: Vec::new(),
                });
                entries.last_mut().expect("just pushed")
            }
        };
        if !entry.ops.iter().any(|(m, _)| &**m == method) {
            entry.ops.push((method.into(), op));
        }
        self.templates.insert(template.into());
    }

    /// Depth-first search in precedence order. Returns the first entry with `method`;
    /// remembers in `path_only` the first entry reached at all.
    fn search<'t>(
        &'t self,
        node: usize,
        segs: &[&str],
        method: &str,
        path_only: &mut Option<&'t PathEntry>,
    ) -> Option<(&'t PathEntry, usize)> {
        let n = &self.nodes[node];
        let Some((seg, rest)) = segs.split_first() else {
            for e in &n.entries {
                if let Some((_, op)) = e.ops.iter().find(|(m, _)| m.eq_ignore_ascii_case(method)) {
                    return Some((e, *op));
                }
            }
            if path_only.is_none() {
                *path_only = n.entries.first();
            }
            return None;
        };
        let lit = n.literals.get(*seg).or_else(|| {
            let decoded = percent_decode(seg);
            match decoded {
                Cow::Owned(d) => n.literals.get(d.as_str()),
                Cow::Borrowed(_) => None,
            }
        });
        if let Some(&child) = lit {
            if let Some(found) = self.search(child, rest, method, path_only) {
                return Some(found);
            }
        }
        for (pieces, child) in &n.mixed {
            if match_pieces(pieces, seg) || match_pieces(pieces, &percent_decode(seg)) {
                if let Some(found) = self.search(*child, rest, method, path_only) {
                    return Some(found);
                }
            }
        }
        if let Some(child) = n.param {
            if !seg.is_empty() {
                return self.search(child, rest, method, path_only);
            }
        }
        None
    }
}

/// Where a spec applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostKey {
    Any,
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
}

impl HostKey {
    fn configured(host: &str) -> HostKey {
        let host = host.trim();
        if host == "*" {
            HostKey::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostKey::Suffix(format!(".{}", normalize_host(suffix)))
        } else {
            HostKey::Exact(normalize_host(host))
        }
    }
}

/// An operation of a spec that matches an endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Match<'a> {
    /// Index of the spec in the [`SpecSet`] (as returned by [`SpecSet::add`]).
    pub spec: usize,
    /// Full template: server base path + spec path (`/v2/pets/{petId}`).
    pub template: &'a str,
    /// The path as written under `paths` (`/pets/{petId}`).
    pub spec_path: &'a str,
    /// The operation's `operationId`.
    pub operation_id: Option<&'a str>,
    /// Whether the operation is deprecated.
    pub deprecated: bool,
    /// The whole operation.
    pub operation: &'a Operation,
}

/// A path of a spec that matches an endpoint whose method the spec does not have.
#[derive(Debug, Clone, Copy)]
pub struct PathMatch<'a> {
    /// Index of the spec in the [`SpecSet`].
    pub spec: usize,
    /// Full template (base path + spec path).
    pub template: &'a str,
    /// The path as written under `paths`.
    pub spec_path: &'a str,
}

/// The answer of [`SpecSet::find`].
#[derive(Debug, Clone, Copy)]
pub enum SpecMatch<'a> {
    /// The spec has this method on this path.
    Operation(Match<'a>),
    /// The spec has this path, but not with this method.
    PathOnly(PathMatch<'a>),
}

/// Loaded specs, compiled per host for matching.
#[derive(Debug, Default)]
pub struct SpecSet {
    specs: Vec<Spec>,
    trees: HashMap<HostKey, Tree>,
    /// Suffix keys, in the order added.
    suffixes: Vec<HostKey>,
}

impl SpecSet {
    /// An empty set: nothing matches, no host is covered.
    pub fn new() -> Self {
        SpecSet::default()
    }

    /// Adds a spec and returns its index. `hosts` (from configuration; `*.example.com` and
    /// `*` allowed) replace the hosts of the spec's servers when not empty; the servers' base
    /// paths apply either way. Specs added earlier win ties.
    pub fn add(&mut self, spec: Spec, hosts: &[String]) -> usize {
        let index = self.specs.len();
        let configured: Vec<HostKey> = hosts.iter().map(|h| HostKey::configured(h)).collect();
        let keys_for = |servers: &[Server]| -> Vec<(HostKey, String)> {
            let mut out: Vec<(HostKey, String)> = Vec::new();
            let mut push = |k: HostKey, b: &str| {
                if !out.iter().any(|(k2, b2)| *k2 == k && b2 == b) {
                    out.push((k, b.to_owned()));
                }
            };
            let default_server = [Server {
                url: "/".to_owned(),
                host: None,
                base_path: String::new(),
            }];
            let servers = if servers.is_empty() {
                &default_server[..]
            } else {
                servers
            };
            for s in servers {
                if configured.is_empty() {
                    let key = s.host.clone().map_or(HostKey::Any, HostKey::Exact);
                    push(key, &s.base_path);
                } else {
                    for k in &configured {
                        push(k.clone(), &s.base_path);
                    }
                }
            }
            out
        };
        let doc_keys = keys_for(&spec.servers);
        for key in doc_keys.iter().map(|(k, _)| k) {
            self.tree_mut(key);
        }
        for (i, op) in spec.operations.iter().enumerate() {
            let owned;
            let keys = match &op.servers {
                Some(s) => {
                    owned = keys_for(s);
                    &owned
                }
                None => &doc_keys,
            };
            for (key, base) in keys {
                let template = join_template(base, &op.path);
                self.tree_mut(key).insert(&template, index, &op.method, i);
            }
        }
        self.specs.push(spec);
        index
    }

    fn tree_mut(&mut self, key: &HostKey) -> &mut Tree {
        if matches!(key, HostKey::Suffix(_)) && !self.trees.contains_key(key) {
            self.suffixes.push(key.clone());
        }
        self.trees.entry(key.clone()).or_default()
    }

    /// The specs, in the order added.
    pub fn specs(&self) -> &[Spec] {
        &self.specs
    }

    /// Whether no spec was added.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The trees that apply to a host, most specific first: exact host, the host without its
    /// port, matching `*.` suffixes, then "any host".
    fn trees_for(&self, host: &str) -> Vec<&Tree> {
        let host = normalize_host(host);
        let mut out = Vec::new();
        if !host.is_empty() {
            if let Some(t) = self.trees.get(&HostKey::Exact(host.clone())) {
                out.push(t);
            }
            let (bare, port) = split_port(&host);
            if port.is_some() {
                if let Some(t) = self.trees.get(&HostKey::Exact(bare.to_owned())) {
                    out.push(t);
                }
            }
            for key in &self.suffixes {
                if let HostKey::Suffix(s) = key {
                    if bare.ends_with(s.as_str()) {
                        out.extend(self.trees.get(key));
                    }
                }
            }
        }
        out.extend(self.trees.get(&HostKey::Any));
        out
    }

    /// Whether some spec applies to `host` (so an endpoint of that host that no spec has is
    /// undocumented, rather than of unknown status). An empty `host` (unknown) is covered
    /// only by specs for any host.
    pub fn covers_host(&self, host: &str) -> bool {
        !self.trees_for(host).is_empty()
    }

    /// Finds the operation for `method` on `path` (concrete, `/pets/42`, or templated,
    /// `/pets/{id}`; a query string is ignored) of `host` (a `Host` header value; empty when
    /// unknown). `None` when no spec of that host has the path.
    pub fn find(&self, host: &str, method: &str, path: &str) -> Option<SpecMatch<'_>> {
        let segs: Vec<&str> = split_path(path).take(MAX_PATH_SEGMENTS + 1).collect();
        if segs.len() > MAX_PATH_SEGMENTS {
            return None;
        }
        let mut path_only = None;
        for tree in self.trees_for(host) {
            if let Some((entry, op)) = tree.search(0, &segs, method, &mut path_only) {
                let operation = &self.specs[entry.spec].operations[op];
                return Some(SpecMatch::Operation(Match {
                    spec: entry.spec,
                    template: &entry.template,
                    spec_path: &operation.path,
                    operation_id: operation.operation_id.as_deref(),
                    deprecated: operation.deprecated,
                    operation,
                }));
            }
        }
        path_only.map(|e| {
            SpecMatch::PathOnly(PathMatch {
                spec: e.spec,
                template: &e.template,
                spec_path: &self.specs[e.spec].operations[e.ops[0].1].path,
            })
        })
    }

    /// Every full path template (base path + spec path) of the specs that apply to `host`,
    /// sorted and without duplicates: seeds for the path templater.
    pub fn templates_for_host(&self, host: &str) -> impl Iterator<Item = &str> + '_ {
        let mut all: Vec<&str> = self
            .trees_for(host)
            .into_iter()
            .flat_map(|t| t.templates.iter().map(|s| &**s))
            .collect();
        all.sort_unstable();
        all.dedup();
        all.into_iter()
    }

    /// Every operation of the specs that apply to `host`, as [`Match`]es, sorted by template
    /// then method: what the spec promises, to compare with what was seen.
    pub fn operations_for_host(&self, host: &str) -> Vec<Match<'_>> {
        let mut out = Vec::new();
        for tree in self.trees_for(host) {
            for node in &tree.nodes {
                for e in &node.entries {
                    for (_, op) in &e.ops {
                        let operation = &self.specs[e.spec].operations[*op];
                        out.push(Match {
                            spec: e.spec,
                            template: &e.template,
                            spec_path: &operation.path,
                            operation_id: operation.operation_id.as_deref(),
                            deprecated: operation.deprecated,
                            operation,
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            (a.template, &a.operation.method, a.spec).cmp(&(
                b.template,
                &b.operation.method,
                b.spec,
            ))
        });
        out.dedup_by(|a, b| a.template == b.template && a.operation.method == b.operation.method);
        out
    }
}

fn join_template(base: &str, path: &str) -> String {
    if base.is_empty() {
        path.to_owned()
    } else if path == "/" {
        base.to_owned()
    } else {
        format!("{base}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETS_30_YAML: &str = include_str!("../../../fixtures/specs/petstore-3.0.yaml");
    const STORE_31_JSON: &str = include_str!("../../../fixtures/specs/store-3.1.json");
    const SWAGGER_20: &str = include_str!("../../../fixtures/specs/swagger-2.0.json");

    fn set_of(spec: Spec, hosts: &[&str]) -> SpecSet {
        let mut s = SpecSet::new();
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        s.add(spec, &hosts);
        s
    }

    fn op<'a>(m: Option<SpecMatch<'a>>) -> Match<'a> {
        match m {
            Some(SpecMatch::Operation(m)) => m,
            other => panic!("expected an operation, got {other:?}"),
        }
    }

    #[test]
    fn loads_30_yaml() {
        let spec = Spec::parse(PETS_30_YAML, "petstore-3.0.yaml").unwrap();
        assert_eq!(spec.version, "3.0.3");
        assert_eq!(spec.title.as_deref(), Some("Petstore"));
        assert_eq!(spec.servers.len(), 2);
        assert_eq!(
            spec.servers[0].host.as_deref(),
            Some("petstore.example.com")
        );
        assert_eq!(spec.servers[0].base_path, "/v1");
        let show = spec
            .operations
            .iter()
            .find(|o| o.operation_id.as_deref() == Some("showPetById"))
            .unwrap();
        assert_eq!(show.path, "/pets/{petId}");
        assert_eq!(show.method, "GET");
        assert_eq!(show.responses, ["200", "404", "default"]);
        // Path-level parameter, resolved through #/components/parameters.
        let pet_id = &show.parameters[0];
        assert_eq!(pet_id.name, "petId");
        assert_eq!(pet_id.location, ParamLocation::Path);
        assert!(pet_id.required);
        assert_eq!(pet_id.schema_type.as_deref(), Some("integer"));
        // Header parameter from the operation.
        let trace = show
            .parameters
            .iter()
            .find(|p| p.name == "X-Trace")
            .unwrap();
        assert_eq!(trace.location, ParamLocation::Header);
        assert!(!trace.required);
        let create = spec
            .operations
            .iter()
            .find(|o| o.operation_id.as_deref() == Some("createPets"))
            .unwrap();
        assert_eq!(create.request_content_types, ["application/json"]);
        assert_eq!(create.responses, ["201"]);
        let list = spec
            .operations
            .iter()
            .find(|o| o.operation_id.as_deref() == Some("listPets"))
            .unwrap();
        let limit = &list.parameters[0];
        assert_eq!(
            (limit.name.as_str(), limit.location),
            ("limit", ParamLocation::Query)
        );
        assert_eq!(limit.schema_type.as_deref(), Some("integer"));
        // Legacy path is deprecated via a path-level extension.
        let legacy = spec
            .operations
            .iter()
            .find(|o| o.path == "/legacy/pets")
            .unwrap();
        assert!(legacy.deprecated);
        assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
    }

    #[test]
    fn loads_31_json_with_refs_and_variables() {
        let spec = Spec::parse(STORE_31_JSON, "store-3.1.json").unwrap();
        assert_eq!(spec.version, "3.1.0");
        assert_eq!(
            spec.servers[0].url,
            "https://eu.store.example.com:8443/api/v3"
        );
        assert_eq!(
            spec.servers[0].host.as_deref(),
            Some("eu.store.example.com:8443")
        );
        assert_eq!(spec.servers[0].base_path, "/api/v3");
        let get = spec
            .operations
            .iter()
            .find(|o| o.operation_id.as_deref() == Some("getOrder"))
            .unwrap();
        // Schema type from a 3.1 type list, through a schema $ref.
        assert_eq!(get.parameters[0].schema_type.as_deref(), Some("string"));
        // Request body through #/components/requestBodies.
        let put = spec
            .operations
            .iter()
            .find(|o| o.operation_id.as_deref() == Some("putOrder"))
            .unwrap();
        assert_eq!(
            put.request_content_types,
            ["application/json", "application/xml"]
        );
        assert!(put.deprecated);
        // The cyclic parameter $ref is skipped with a warning naming where.
        assert_eq!(spec.warnings.len(), 1, "{:?}", spec.warnings);
        assert!(spec.warnings[0].message.contains("cycle"));
        assert_eq!(
            spec.warnings[0].pointer,
            "/paths/~1orders~1{orderId}/get/parameters/1"
        );
    }

    #[test]
    fn server_urls() {
        let cases = [
            ("https://api.example.com/v2", Some("api.example.com"), "/v2"),
            (
                "https://API.example.com:443/v2/",
                Some("api.example.com"),
                "/v2",
            ),
            ("http://api.example.com:80", Some("api.example.com"), ""),
            (
                "http://api.example.com:8080/",
                Some("api.example.com:8080"),
                "",
            ),
            (
                "https://user@api.example.com./x?y#z",
                Some("api.example.com"),
                "/x",
            ),
            ("http://[::1]:8080/v1", Some("[::1]:8080"), "/v1"),
            ("//cdn.example.com/a", Some("cdn.example.com"), "/a"),
            ("/v2", None, "/v2"),
            ("v2/", None, "/v2"),
            ("./v2", None, "/v2"),
            ("/", None, ""),
            ("", None, ""),
        ];
        for (url, host, base) in cases {
            let (h, b) = split_server_url(url);
            assert_eq!((h.as_deref(), b.as_str()), (host, base), "{url}");
        }
    }

    #[test]
    fn relative_servers_apply_to_any_host() {
        let spec = Spec::parse(
            "openapi: 3.1.0\ninfo: {title: t, version: '1'}\nservers: [{url: /api}]\npaths:\n  /x: {get: {}}\n",
            "rel.yaml",
        )
        .unwrap();
        assert_eq!(spec.servers[0].host, None);
        let set = set_of(spec, &[]);
        assert_eq!(
            op(set.find("anything.example", "GET", "/api/x")).template,
            "/api/x"
        );
        assert!(set.find("anything.example", "GET", "/x").is_none());
        assert!(set.covers_host("whatever"));
    }

    #[test]
    fn rejects_swagger_garbage_and_versions() {
        let e = Spec::parse(SWAGGER_20, "old.json").unwrap_err();
        assert!(matches!(e, SpecError::Swagger2 { .. }), "{e}");
        assert!(
            e.to_string().contains("Swagger 2.0 is not supported"),
            "{e}"
        );
        assert!(e.to_string().starts_with("old.json: "));

        let e = Spec::parse("just: [some, yaml]", "x.yaml").unwrap_err();
        assert!(matches!(e, SpecError::NotOpenApi { .. }), "{e}");
        let e = Spec::parse("- a\n- b\n", "x.yaml").unwrap_err();
        assert!(matches!(e, SpecError::NotOpenApi { .. }), "{e}");
        let e = Spec::parse("{\"openapi\": \"3.0.0\",", "x.json").unwrap_err();
        assert!(matches!(e, SpecError::Json { .. }), "{e}");
        let e = Spec::parse("openapi: [unclosed\n  : :", "x.yaml").unwrap_err();
        assert!(matches!(e, SpecError::Yaml { .. }), "{e}");
        let e = Spec::parse("\u{0}\u{1}binary", "x.bin").unwrap_err();
        assert!(
            matches!(e, SpecError::Yaml { .. } | SpecError::NotOpenApi { .. }),
            "{e}"
        );
        let e = Spec::parse("openapi: 2.5.0\npaths: {}", "x.yaml").unwrap_err();
        assert!(matches!(e, SpecError::UnsupportedVersion { .. }), "{e}");
        let e = Spec::parse("openapi: 3.10.0\npaths: {}", "x.yaml").unwrap_err();
        assert!(matches!(e, SpecError::UnsupportedVersion { .. }), "{e}");
        // An unquoted 3.0 is a YAML number; accept it.
        assert!(Spec::parse("openapi: 3.0\npaths: {}", "x.yaml").is_ok());
        // A YAML flow mapping looks like JSON at first.
        assert!(Spec::parse("{openapi: 3.1.0, paths: {/a: {get: {}}}}", "x.yaml").is_ok());
        // YAML merge keys and integer response codes.
        let merged = "openapi: 3.1.0\nx-common: &c {responses: {200: {description: ok}}}\n\
                      paths:\n  /a:\n    get:\n      <<: *c\n      operationId: a\n";
        let spec = Spec::parse(merged, "m.yaml").unwrap();
        assert_eq!(spec.operations[0].responses, ["200"]);
    }

    #[test]
    fn hostile_yaml_is_refused_quickly() {
        let mut laughs = String::from("openapi: 3.0.0\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            let list = [prev.as_str(); 10].join(", ");
            laughs.push_str(&format!("a{i}: &a{i} [{list}]\n"));
        }
        laughs.push_str("paths: {}\n");
        let e = Spec::parse(&laughs, "laughs.yaml").unwrap_err();
        assert!(matches!(e, SpecError::Yaml { .. }), "{e}");
        let deep = format!(
            "openapi: 3.0.0\npaths: {}{}\n",
            "[".repeat(1_000),
            "]".repeat(1_000)
        );
        let e = Spec::parse(&deep, "deep.yaml").unwrap_err();
        assert!(matches!(e, SpecError::Yaml { .. }), "{e}");
        let deep = format!(
            "{{\"openapi\": {}{}}}",
            "[".repeat(1_000),
            "]".repeat(1_000)
        );
        let e = Spec::parse(&deep, "deep.json").unwrap_err();
        assert!(matches!(e, SpecError::Json { .. }), "{e}");
    }

    #[test]
    fn malformed_parts_name_their_pointer() {
        let e = Spec::parse("openapi: 3.0.0\npaths:\n  pets: {}\n", "m.yaml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.yaml: #/paths/pets: a path must start with `/`"
        );
        let e = Spec::parse("openapi: 3.0.0\npaths:\n  /pets/{id: {}\n", "m.yaml").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("m.yaml: #/paths/~1pets~1{id: unbalanced"),
            "{e}"
        );
        let e = Spec::parse("openapi: 3.0.0\npaths: [1]\n", "m.yaml").unwrap_err();
        assert!(
            e.to_string().contains("#/paths: `paths` is not a mapping"),
            "{e}"
        );
        let e = Spec::parse("openapi: 3.0.0\n", "m.yaml").unwrap_err();
        assert!(matches!(e, SpecError::Malformed { .. }), "{e}");
        let e = Spec::parse(
            "openapi: 3.1.0\nservers: [{url: 'https://{env}.example.com'}]\npaths: {}\n",
            "m.yaml",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("#/servers/0/variables: server variable \"env\""),
            "{e}"
        );
        let e = Spec::parse("openapi: 3.1.0\npaths:\n  /a:\n    get: 3\n", "m.yaml").unwrap_err();
        assert!(
            e.to_string().contains("#/paths/~1a/get: an operation"),
            "{e}"
        );
        // 3.1 allows a document without paths.
        assert!(Spec::parse("openapi: 3.1.0\nwebhooks: {}\n", "w.yaml").is_ok());
    }

    #[test]
    fn ref_depth_is_bounded() {
        let mut params = String::new();
        for i in 0..40 {
            params.push_str(&format!(
                "    p{i}: {{$ref: '#/components/parameters/p{}'}}\n",
                i + 1
            ));
        }
        params.push_str("    p40: {name: deep, in: query}\n");
        let doc = format!(
            "openapi: 3.0.0\npaths:\n  /a:\n    get:\n      parameters: [{{$ref: '#/components/parameters/p0'}}, {{$ref: '#/components/parameters/p35'}}]\ncomponents:\n  parameters:\n{params}"
        );
        let spec = Spec::parse(&doc, "deep.yaml").unwrap();
        assert_eq!(spec.operations[0].parameters.len(), 1);
        assert_eq!(spec.operations[0].parameters[0].name, "deep");
        assert!(spec.warnings[0].message.contains("nested references"));
    }

    #[test]
    fn literal_beats_param_and_backtracks() {
        let spec = Spec::parse(PETS_30_YAML, "p.yaml").unwrap();
        let set = set_of(spec, &[]);
        let h = "petstore.example.com";
        assert_eq!(
            op(set.find(h, "GET", "/v1/pets/mine")).operation_id,
            Some("myPets")
        );
        assert_eq!(
            op(set.find(h, "GET", "/v1/pets/42")).operation_id,
            Some("showPetById")
        );
        assert_eq!(
            op(set.find(h, "get", "/v1/pets/{id}")).operation_id,
            Some("showPetById")
        );
        // /pets/mine has no /photos; backtrack to /pets/{petId}/photos.
        let m = op(set.find(h, "GET", "/v1/pets/mine/photos"));
        assert_eq!(m.template, "/v1/pets/{petId}/photos");
        assert_eq!(m.spec_path, "/pets/{petId}/photos");
        // DELETE exists on /pets/{petId} only.
        assert_eq!(
            op(set.find(h, "DELETE", "/v1/pets/mine")).operation_id,
            Some("deletePet")
        );
        // Mixed segments: /files/{name}.json (more literal text) beats /files/{name}.{ext},
        // which beats /files/{fileId}.
        assert_eq!(
            op(set.find(h, "GET", "/v1/files/report.json")).operation_id,
            Some("jsonFile")
        );
        assert_eq!(
            op(set.find(h, "GET", "/v1/files/report.csv")).operation_id,
            Some("anyFile")
        );
        assert_eq!(
            op(set.find(h, "GET", "/v1/files/report")).operation_id,
            Some("fileById")
        );
        // Trailing slash, query string and percent-encoding.
        assert_eq!(
            op(set.find(h, "GET", "/v1/pets/")).operation_id,
            Some("listPets")
        );
        assert_eq!(
            op(set.find(h, "GET", "/v1/pets?limit=3")).operation_id,
            Some("listPets")
        );
        assert_eq!(
            op(set.find(h, "GET", "/v1/pets/%6Dine")).operation_id,
            Some("myPets")
        );
        assert!(op(set.find(h, "GET", "/v1/legacy/pets")).deprecated);
        // Empty segment does not match a parameter.
        assert!(set.find(h, "GET", "/v1/pets//photos").is_none());
    }

    #[test]
    fn base_paths_and_hosts() {
        let spec = Spec::parse(PETS_30_YAML, "p.yaml").unwrap();
        let set = set_of(spec, &[]);
        // Not without the base path.
        assert!(set.find("petstore.example.com", "GET", "/pets").is_none());
        // Default port and case do not matter; another port falls back to the bare host.
        assert!(set
            .find("PetStore.example.com:443", "GET", "/v1/pets")
            .is_some());
        assert!(set
            .find("petstore.example.com:8080", "GET", "/v1/pets")
            .is_some());
        // Second server: staging with base path /api/v1.
        let m = op(set.find("staging.example.com", "GET", "/api/v1/pets/7"));
        assert_eq!(m.template, "/api/v1/pets/{petId}");
        assert!(set.find("unknown.example.com", "GET", "/v1/pets").is_none());
        assert!(!set.covers_host("unknown.example.com"));
        assert!(set.covers_host("petstore.example.com"));
        let t: Vec<&str> = set.templates_for_host("petstore.example.com").collect();
        assert!(
            t.contains(&"/v1/pets/{petId}") && t.contains(&"/v1/pets/mine"),
            "{t:?}"
        );
        assert!(!t.iter().any(|t| t.starts_with("/api")));
    }

    #[test]
    fn method_not_in_spec() {
        let spec = Spec::parse(PETS_30_YAML, "p.yaml").unwrap();
        let set = set_of(spec, &[]);
        match set.find("petstore.example.com", "PATCH", "/v1/pets/mine") {
            Some(SpecMatch::PathOnly(p)) => {
                assert_eq!(p.template, "/v1/pets/mine");
                assert_eq!(p.spec_path, "/pets/mine");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hosts_by_configuration() {
        let spec = Spec::parse(PETS_30_YAML, "p.yaml").unwrap();
        let set = set_of(spec, &["pets.internal:8080", "*.corp.example"]);
        // Configured hosts replace the servers' hosts; base paths stay.
        assert!(set
            .find("petstore.example.com", "GET", "/v1/pets")
            .is_none());
        assert!(set.find("pets.internal:8080", "GET", "/v1/pets").is_some());
        assert!(set
            .find("pets.internal:8080", "GET", "/api/v1/pets")
            .is_some());
        assert!(set.find("pets.internal", "GET", "/v1/pets").is_none());
        assert!(set.find("a.b.corp.example", "GET", "/v1/pets/1").is_some());
        assert!(set.find("corp.example", "GET", "/v1/pets/1").is_none());

        let spec = Spec::parse(PETS_30_YAML, "p.yaml").unwrap();
        let any = set_of(spec, &["*"]);
        assert!(any.find("x.y", "GET", "/v1/pets").is_some());
    }

    #[test]
    fn no_servers_means_any_host_and_operation_servers_override() {
        let doc = r#"{"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {
              "/a": {"get": {"operationId": "a"}},
              "/b": {"servers": [{"url": "https://b.example.com/bee"}],
                     "get": {"operationId": "b"},
                     "post": {"operationId": "b2", "servers": [{"url": "https://c.example.com"}]}}
            }}"#;
        let set = set_of(Spec::parse(doc, "t.json").unwrap(), &[]);
        assert_eq!(op(set.find("", "GET", "/a")).operation_id, Some("a"));
        assert_eq!(
            op(set.find("b.example.com", "GET", "/bee/b")).operation_id,
            Some("b")
        );
        assert_eq!(
            op(set.find("c.example.com", "POST", "/b")).operation_id,
            Some("b2")
        );
        assert!(matches!(
            set.find("c.example.com", "GET", "/b"),
            Some(SpecMatch::PathOnly(_))
        ));
        let ops = set.operations_for_host("b.example.com");
        let names: Vec<_> = ops
            .iter()
            .map(|m| (m.template, m.operation.method.as_str()))
            .collect();
        assert_eq!(names, [("/a", "GET"), ("/bee/b", "GET")]);
    }

    #[test]
    fn first_spec_wins_and_others_still_match() {
        let a = Spec::parse(
            "openapi: 3.0.0\nservers: [{url: 'http://h'}]\npaths:\n  /x: {get: {operationId: a}}\n",
            "a",
        )
        .unwrap();
        let b = Spec::parse(
            "openapi: 3.0.0\npaths:\n  /x: {get: {operationId: b}, post: {operationId: b_post}}\n",
            "b",
        )
        .unwrap();
        let mut set = SpecSet::new();
        assert_eq!(set.add(a, &[]), 0);
        assert_eq!(set.add(b, &[]), 1);
        let m = op(set.find("h", "GET", "/x"));
        assert_eq!((m.spec, m.operation_id), (0, Some("a")));
        let m = op(set.find("h", "POST", "/x"));
        assert_eq!((m.spec, m.operation_id), (1, Some("b_post")));
    }

    #[test]
    fn pieces() {
        let Seg::Mixed(p) = parse_segment("{name}.{ext}").unwrap() else {
            panic!()
        };
        assert!(match_pieces(&p, "a.b"));
        assert!(match_pieces(&p, "a.b.c"));
        assert!(!match_pieces(&p, ".b"));
        assert!(!match_pieces(&p, "ab"));
        let Seg::Mixed(p) = parse_segment("{a}{b}").unwrap() else {
            panic!()
        };
        assert!(match_pieces(&p, "ab") && !match_pieces(&p, "a"));
        assert!(parse_segment("{}").is_err());
        assert!(parse_segment("a}").is_err());
        assert_eq!(parse_segment("{id}").unwrap(), Seg::Param);
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
