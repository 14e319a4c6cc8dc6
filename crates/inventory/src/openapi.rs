//! Export of observed endpoints as an OpenAPI 3.1 document, one host at a time.
//!
//! The caller describes each endpoint with an [`ExportOperation`] (templated path, parameters
//! with JSON Schemas, request and response bodies by media type, auth schemes seen, counts)
//! and [`export`] writes a complete OpenAPI 3.1.0 document as a [`serde_json::Value`]. The
//! document is meant to pass a standard validator (the crate's `tests/openapi_validate.rs`
//! runs `openapi-spec-validator` on it) and to load back with [`crate::spec`], so:
//!
//! - every `{name}` in a path has exactly one `in: path, required: true` parameter (one with a
//!   `string` schema is made up when the caller gave none) and path parameters that are not
//!   in the template are dropped; parameter names are reduced to `[A-Za-z0-9_-]` and made
//!   unique within the path; stray `{`/`}`, `?`, `#`, spaces and control characters in a
//!   path are percent-encoded;
//! - two templates that differ only in parameter names (`/u/{id}`, `/u/{name}`) are one path
//!   in OpenAPI: the first in sorted order gives its names to the other;
//! - methods outside OpenAPI's eight (`get` ... `trace`) go under the path item extension
//!   `x-apiscope-other-operations`, keyed by the method as given;
//! - the same method on the same path twice: the first (in sorted input order) is kept;
//! - `operationId` is `<method>_<path words>` (`get_users_id`), made unique with `_2`, `_3`
//!   in sorted order; status codes outside 100..=599 are dropped; header parameters named
//!   `Accept`, `Content-Type`, `Authorization` or `Cookie` are dropped (OpenAPI ignores the
//!   first three; auth is expressed by `security`);
//! - auth scheme names become `components.securitySchemes` and per-operation `security`
//!   (one alternative per scheme seen; `none` adds the empty alternative `{}`); names that
//!   are not understood are listed under `x-apiscope.unmapped_auth`;
//! - `x-apiscope` on each operation carries `calls`, `first_seen`, `last_seen` and `in_spec`.
//!
//! The server URL is `http://<host>`: traffic alone does not say whether clients used TLS.
//! Output is deterministic: paths, methods, parameters, media types and codes are sorted.
//!
//! ```
//! use apiscope_inventory::openapi::{export, ExportOperation, ExportParam};
//! use serde_json::json;
//!
//! let op = ExportOperation {
//!     method: "GET",
//!     path: "/users/{id}",
//!     path_params: vec![ExportParam::new("id", true, json!({"type": "integer"}))],
//!     responses: vec![(200, vec![("application/json".into(), json!({"type": "object"}))])],
//!     auth: vec!["bearer_jwt".into()],
//!     calls: 12,
//!     ..ExportOperation::default()
//! };
//! let doc = export("api.example.com", &[op]);
//! assert_eq!(doc["openapi"], "3.1.0");
//! let get = &doc["paths"]["/users/{id}"]["get"];
//! assert_eq!(get["operationId"], "get_users_id");
//! assert_eq!(get["parameters"][0]["in"], "path");
//! assert_eq!(get["security"][0]["bearerJwt"], json!([]));
//! assert_eq!(doc["components"]["securitySchemes"]["bearerJwt"]["bearerFormat"], "JWT");
//! assert_eq!(get["x-apiscope"]["calls"], 12);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{json, Map, Value};

use crate::spec::METHODS;

/// A parameter of an exported operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportParam {
    /// Its name (for a path parameter, the name inside the braces).
    pub name: String,
    /// Whether every call had it (ignored for path parameters, which are always required).
    pub required: bool,
    /// A JSON Schema 2020-12 object for its values (`{}` is used when this is not an object
    /// or a boolean).
    pub schema: Value,
}

impl ExportParam {
    /// A parameter.
    pub fn new(name: impl Into<String>, required: bool, schema: Value) -> Self {
        ExportParam {
            name: name.into(),
            required,
            schema,
        }
    }
}

/// One observed endpoint (method + templated path) of a host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportOperation<'a> {
    /// HTTP method as seen (any case).
    pub method: &'a str,
    /// Templated path with `{name}` parameters (`/users/{id}`).
    pub path: &'a str,
    /// Path parameters, by the names used in `path`.
    pub path_params: Vec<ExportParam>,
    /// Query parameters.
    pub query_params: Vec<ExportParam>,
    /// Request header parameters (no auth headers; those are in `auth`).
    pub header_params: Vec<ExportParam>,
    /// Request bodies: (media type, JSON Schema).
    pub request_bodies: Vec<(String, Value)>,
    /// Responses: (status, [(media type, JSON Schema)]); an empty list means no body seen.
    pub responses: Vec<(u16, Vec<(String, Value)>)>,
    /// Auth schemes seen: `basic`, `bearer`, `bearer_opaque`, `bearer_jwt`, `digest`,
    /// `negotiate`, `ntlm`,
    /// `api_key_header:<header>`, `api_key_query:<param>`, `api_key_cookie:<cookie>`,
    /// `session_cookie:<cookie>`, `other:<HTTP auth scheme>` (as in [`crate::auth`]: kind,
    /// `:`, name), and `none` for calls without credentials.
    pub auth: Vec<String>,
    /// Whether the endpoint is deprecated (by a spec, or a `Deprecation`/`Sunset` header).
    pub deprecated: bool,
    /// How many calls were seen.
    pub calls: u64,
    /// First call, RFC 3339.
    pub first_seen: String,
    /// Last call, RFC 3339.
    pub last_seen: String,
    /// Whether a spec documents the endpoint; `None` when no spec covers the host.
    pub in_spec: Option<bool>,
}

/// A path split into literal text and parameters, after normalisation.
#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Param(usize),
}

#[derive(Debug, Clone)]
struct NormPath {
    parts: Vec<Part>,
    /// Names as written in the input, by position.
    raw_names: Vec<String>,
    /// Names as exported, by position.
    names: Vec<String>,
}

impl NormPath {
    fn parse(path: &str) -> NormPath {
        let mut parts: Vec<Part> = Vec::new();
        let mut raw_names = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut lit = String::new();
        if !path.starts_with('/') {
            lit.push('/');
        }
        let mut rest = path;
        while let Some(c) = rest.chars().next() {
            if c == '{' {
                let close = rest.find('}');
                let inner = close.map(|i| &rest[1..i]);
                if let (Some(close), Some(inner)) = (close, inner) {
                    if !inner.contains(['{', '/']) {
                        if !lit.is_empty() {
                            parts.push(Part::Lit(std::mem::take(&mut lit)));
                        }
                        let mut name = sanitize_name(inner);
                        if names.contains(&name) {
                            let base = name.clone();
                            let mut n = 2;
                            while names.contains(&name) {
                                name = format!("{base}{n}");
                                n += 1;
                            }
                        }
                        parts.push(Part::Param(names.len()));
                        raw_names.push(inner.to_owned());
                        names.push(name);
                        rest = &rest[close + 1..];
                        continue;
                    }
                }
            }
            match c {
                '{' | '}' | '?' | '#' | ' ' => lit.push_str(&format!("%{:02X}", c as u32)),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        lit.push_str(&format!("%{b:02X}"));
                    }
                }
                c => lit.push(c),
            }
            rest = &rest[c.len_utf8()..];
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        NormPath {
            parts,
            raw_names,
            names,
        }
    }

    fn render(&self, params_as: Option<&str>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Param(i) => {
                    out.push('{');
                    out.push_str(params_as.unwrap_or(&self.names[*i]));
                    out.push('}');
                }
            }
        }
        out
    }
}

/// Reduces a parameter name to `[A-Za-z0-9_-]` (Python's `str.format` rules, which the
/// reference validator uses to read templates, give `:` and `!` other meanings).
fn sanitize_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "param".to_owned()
    } else {
        s
    }
}

/// Reduces a security scheme name to `[A-Za-z0-9._-]` (the OpenAPI components key pattern).
fn sanitize_component(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The security scheme for one auth name: (preferred component name, scheme object), `None`
/// for `none` and for names not understood.
fn security_scheme(auth: &str) -> Option<(String, Value)> {
    let http = |scheme: &str| json!({"type": "http", "scheme": scheme});
    let api_key =
        |location: &str, name: &str| json!({"type": "apiKey", "in": location, "name": name});
    Some(match auth.split_once(':') {
        None => match auth {
            "basic" => ("basicAuth".to_owned(), http("basic")),
            "bearer" | "bearer_opaque" => ("bearerAuth".to_owned(), http("bearer")),
            "bearer_jwt" => (
                "bearerJwt".to_owned(),
                json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
            ),
            "digest" => ("digestAuth".to_owned(), http("digest")),
            "negotiate" => ("negotiateAuth".to_owned(), http("negotiate")),
            "ntlm" => ("ntlmAuth".to_owned(), http("ntlm")),
            _ => return None,
        },
        Some((_, "")) => return None,
        Some(("api_key_header", name)) => (
            format!("apiKeyHeader_{}", sanitize_component(name)),
            api_key("header", name),
        ),
        Some(("api_key_query", name)) => (
            format!("apiKeyQuery_{}", sanitize_component(name)),
            api_key("query", name),
        ),
        Some(("other", scheme)) => (
            format!("http_{}", sanitize_component(scheme)),
            http(&scheme.to_ascii_lowercase()),
        ),
        Some(("api_key_cookie" | "session_cookie", name)) => (
            format!("cookie_{}", sanitize_component(name)),
            api_key("cookie", name),
        ),
        Some(_) => return None,
    })
}

fn is_none_auth(auth: &str) -> bool {
    matches!(auth, "none" | "anonymous")
}

/// The words of a path for an operation id: literals and parameter names, lower case, runs of
/// other characters as one `_`.
fn path_slug(path: &NormPath) -> String {
    let text = path.render(None);
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        "root".to_owned()
    } else {
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Observed response",
    }
}

fn schema_or_empty(schema: &Value) -> Value {
    match schema {
        Value::Object(_) | Value::Bool(_) => schema.clone(),
        _ => json!({}),
    }
}

/// A `content` map from (media type, schema) pairs: sorted, first of each type kept.
fn content(bodies: &[(String, Value)]) -> Map<String, Value> {
    let mut by_type: BTreeMap<&str, &Value> = BTreeMap::new();
    for (media, schema) in bodies {
        let media = media.trim();
        let media = if media.is_empty() { "*/*" } else { media };
        by_type.entry(media).or_insert(schema);
    }
    by_type
        .into_iter()
        .map(|(m, s)| (m.to_owned(), json!({"schema": schema_or_empty(s)})))
        .collect()
}

fn param(name: &str, location: &str, required: bool, schema: &Value) -> Value {
    json!({
        "name": name,
        "in": location,
        "required": required,
        "schema": schema_or_empty(schema),
    })
}

const IGNORED_HEADERS: [&str; 4] = ["accept", "content-type", "authorization", "cookie"];

/// Writes the OpenAPI 3.1.0 document for `host` (a `Host` header value; empty when unknown)
/// from its observed operations. Never fails: what OpenAPI cannot express is normalised or
/// moved to an `x-apiscope` extension as the module documentation describes.
pub fn export(host: &str, ops: &[ExportOperation<'_>]) -> Value {
    // Sorted input order decides every tie below.
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by(|&a, &b| {
        (ops[a].path, ops[a].method.to_ascii_lowercase())
            .cmp(&(ops[b].path, ops[b].method.to_ascii_lowercase()))
    });

    // Paths, with parameter names shared by templates of the same shape.
    let mut shapes: HashMap<String, Vec<String>> = HashMap::new();
    let mut paths: Vec<NormPath> = Vec::with_capacity(ops.len());
    for &i in &order {
        let mut p = NormPath::parse(ops[i].path);
        let names = shapes
            .entry(p.render(Some("")))
            .or_insert_with(|| p.names.clone());
        p.names.clone_from(names);
        paths.push(p);
    }

    // Security schemes, named once for the whole document.
    let all_auth: BTreeSet<&str> = ops
        .iter()
        .flat_map(|o| o.auth.iter().map(String::as_str))
        .collect();
    let mut schemes: Map<String, Value> = Map::new();
    let mut scheme_names: HashMap<&str, String> = HashMap::new();
    for auth in all_auth {
        if let Some((mut name, scheme)) = security_scheme(auth) {
            // Two names for one scheme (`bearer`, `bearer_opaque`) share it.
            if schemes.get(&name) == Some(&scheme) {
                scheme_names.insert(auth, name);
                continue;
            }
            if schemes.contains_key(&name) {
                let base = name.clone();
                let mut n = 2;
                while schemes.contains_key(&name) {
                    name = format!("{base}_{n}");
                    n += 1;
                }
            }
            schemes.insert(name.clone(), scheme);
            scheme_names.insert(auth, name);
        }
    }

    // Operations grouped by exported path, then method; ids assigned in sorted order.
    let mut by_path: BTreeMap<String, BTreeMap<String, (usize, &NormPath)>> = BTreeMap::new();
    for (k, &i) in order.iter().enumerate() {
        let path = &paths[k];
        let method = ops[i].method.to_ascii_lowercase();
        by_path
            .entry(path.render(None))
            .or_default()
            .entry(method)
            .or_insert((i, path));
    }
    let method_rank = |m: &str| {
        METHODS
            .iter()
            .position(|x| *x == m)
            .unwrap_or(METHODS.len())
    };
    let mut used_ids: HashSet<String> = HashSet::new();
    let mut out_paths = Map::new();
    for (path_key, methods) in &by_path {
        let mut methods: Vec<(&String, &(usize, &NormPath))> = methods.iter().collect();
        methods.sort_by(|a, b| (method_rank(a.0), a.0).cmp(&(method_rank(b.0), b.0)));
        let mut item = Map::new();
        let mut others = Map::new();
        for (method, &(i, path)) in methods {
            let op = &ops[i];
            let base = format!(
                "{}_{}",
                sanitize_name(method).to_ascii_lowercase(),
                path_slug(path)
            );
            let mut id = base.clone();
            let mut n = 2;
            while !used_ids.insert(id.clone()) {
                id = format!("{base}_{n}");
                n += 1;
            }
            let operation = operation(op, path, id, &scheme_names);
            if METHODS.contains(&method.as_str()) {
                item.insert(method.clone(), operation);
            } else {
                others.insert(op.method.to_owned(), operation);
            }
        }
        if !others.is_empty() {
            item.insert(
                "x-apiscope-other-operations".to_owned(),
                Value::Object(others),
            );
        }
        out_paths.insert(path_key.clone(), Value::Object(item));
    }

    let title = if host.is_empty() {
        "Unknown host (observed)".to_owned()
    } else {
        format!("{host} (observed)")
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    let server = if host_ok {
        json!({
            "url": format!("http://{host}"),
            "description": "The observed host. Traffic alone does not tell whether clients \
                            used http or https.",
        })
    } else {
        json!({"url": "/", "description": "The host was not known."})
    };
    let mut doc = Map::new();
    doc.insert("openapi".into(), json!("3.1.0"));
    doc.insert(
        "info".into(),
        json!({
            "title": title,
            "version": "observed",
            "description": "Inferred by apiscope from observed traffic: the endpoints, \
                            parameters, bodies, status codes and auth schemes that calls \
                            actually used. Schemas describe what was seen, not what the API \
                            allows.",
        }),
    );
    doc.insert("servers".into(), json!([server]));
    doc.insert("paths".into(), Value::Object(out_paths));
    if !schemes.is_empty() {
        doc.insert("components".into(), json!({"securitySchemes": schemes}));
    }
    Value::Object(doc)
}

fn operation(
    op: &ExportOperation<'_>,
    path: &NormPath,
    id: String,
    scheme_names: &HashMap<&str, String>,
) -> Value {
    let mut o = Map::new();
    o.insert("operationId".into(), Value::String(id));
    if op.deprecated {
        o.insert("deprecated".into(), Value::Bool(true));
    }

    let mut params = Vec::new();
    for (i, name) in path.names.iter().enumerate() {
        let raw = &path.raw_names[i];
        let given = op.path_params.iter().find(|p| p.name == *raw).or_else(|| {
            let wanted = sanitize_name(raw);
            op.path_params
                .iter()
                .find(|p| sanitize_name(&p.name) == wanted)
        });
        let schema = given.map_or_else(|| json!({"type": "string"}), |p| p.schema.clone());
        params.push(param(name, "path", true, &schema));
    }
    let mut query: BTreeMap<&str, &ExportParam> = BTreeMap::new();
    for p in op.query_params.iter().filter(|p| !p.name.is_empty()) {
        query.entry(&p.name).or_insert(p);
    }
    for (name, p) in query {
        params.push(param(name, "query", p.required, &p.schema));
    }
    let mut headers: BTreeMap<String, &ExportParam> = BTreeMap::new();
    for p in &op.header_params {
        let lower = p.name.to_ascii_lowercase();
        if p.name.is_empty() || IGNORED_HEADERS.contains(&lower.as_str()) {
            continue;
        }
        headers.entry(lower).or_insert(p);
    }
    for p in headers.values() {
        params.push(param(&p.name, "header", p.required, &p.schema));
    }
    if !params.is_empty() {
        o.insert("parameters".into(), Value::Array(params));
    }

    if !op.request_bodies.is_empty() {
        o.insert(
            "requestBody".into(),
            json!({"content": content(&op.request_bodies)}),
        );
    }

    let mut responses: BTreeMap<u16, &[(String, Value)]> = BTreeMap::new();
    for (status, bodies) in &op.responses {
        if (100..=599).contains(status) {
            responses.entry(*status).or_insert(bodies);
        }
    }
    if !responses.is_empty() {
        let mut r = Map::new();
        for (status, bodies) in responses {
            let mut resp = Map::new();
            resp.insert("description".into(), json!(reason(status)));
            if !bodies.is_empty() {
                resp.insert("content".into(), Value::Object(content(bodies)));
            }
            r.insert(status.to_string(), Value::Object(resp));
        }
        o.insert("responses".into(), Value::Object(r));
    }

    let mut names: BTreeSet<&str> = BTreeSet::new();
    let mut anonymous = false;
    let mut unmapped: BTreeSet<&str> = BTreeSet::new();
    for auth in &op.auth {
        match scheme_names.get(auth.as_str()) {
            Some(name) => {
                names.insert(name);
            }
            None if is_none_auth(auth) => anonymous = true,
            None => {
                unmapped.insert(auth);
            }
        }
    }
    if !names.is_empty() {
        let mut security: Vec<Value> = names.iter().map(|n| json!({ *n: [] })).collect();
        if anonymous {
            security.push(json!({}));
        }
        o.insert("security".into(), Value::Array(security));
    }

    let mut x = Map::new();
    x.insert("calls".into(), json!(op.calls));
    x.insert("first_seen".into(), json!(op.first_seen));
    x.insert("last_seen".into(), json!(op.last_seen));
    if let Some(in_spec) = op.in_spec {
        x.insert("in_spec".into(), json!(in_spec));
    }
    if !unmapped.is_empty() {
        x.insert("unmapped_auth".into(), json!(unmapped));
    }
    o.insert("x-apiscope".into(), Value::Object(x));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Spec, SpecMatch, SpecSet};

    fn op<'a>(method: &'a str, path: &'a str) -> ExportOperation<'a> {
        ExportOperation {
            method,
            path,
            calls: 1,
            first_seen: "2024-01-01T00:00:00.000000Z".into(),
            last_seen: "2024-01-02T00:00:00.000000Z".into(),
            ..ExportOperation::default()
        }
    }

    #[test]
    fn document_shape() {
        let mut a = op("get", "/users/{id}");
        a.path_params = vec![ExportParam::new("id", true, json!({"type": "integer"}))];
        a.query_params = vec![
            ExportParam::new("sort", false, json!({"type": "string"})),
            ExportParam::new("limit", true, json!({"type": "integer"})),
        ];
        a.header_params = vec![
            ExportParam::new("X-Request-Id", false, json!({"type": "string"})),
            ExportParam::new("Authorization", true, json!({"type": "string"})),
        ];
        a.responses = vec![
            (404, vec![]),
            (
                200,
                vec![("application/json".into(), json!({"type": "object"}))],
            ),
            (999, vec![]),
        ];
        a.auth = vec!["bearer".into(), "none".into(), "weird".into()];
        a.in_spec = Some(false);
        let mut b = op("POST", "/users");
        b.request_bodies = vec![("application/json".into(), json!({"type": "object"}))];
        b.deprecated = true;
        b.auth = vec!["api_key_header:X-API-Key".into()];
        let doc = export("api.example.com:8080", &[a, b]);

        assert_eq!(doc["servers"][0]["url"], "http://api.example.com:8080");
        assert_eq!(doc["info"]["title"], "api.example.com:8080 (observed)");
        let get = &doc["paths"]["/users/{id}"]["get"];
        let params: Vec<(&str, &str)> = get["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["in"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        assert_eq!(
            params,
            [
                ("path", "id"),
                ("query", "limit"),
                ("query", "sort"),
                ("header", "X-Request-Id")
            ]
        );
        assert_eq!(get["parameters"][0]["required"], true);
        let codes: Vec<&String> = get["responses"].as_object().unwrap().keys().collect();
        assert_eq!(codes, ["200", "404"]);
        assert_eq!(get["responses"]["404"]["description"], "Not Found");
        assert!(get["responses"]["404"].get("content").is_none());
        assert_eq!(get["security"], json!([{"bearerAuth": []}, {}]));
        assert_eq!(get["x-apiscope"]["unmapped_auth"], json!(["weird"]));
        assert_eq!(get["x-apiscope"]["in_spec"], false);
        let post = &doc["paths"]["/users"]["post"];
        assert_eq!(post["operationId"], "post_users");
        assert_eq!(post["deprecated"], true);
        assert_eq!(
            post["requestBody"]["content"]["application/json"]["schema"]["type"],
            "object"
        );
        assert!(post.get("responses").is_none());
        assert!(post["x-apiscope"].get("in_spec").is_none());
        assert_eq!(
            doc["components"]["securitySchemes"]["apiKeyHeader_X-API-Key"],
            json!({"type": "apiKey", "in": "header", "name": "X-API-Key"})
        );
    }

    #[test]
    fn paths_are_normalised() {
        let ops = [
            op("get", "/a/{id}/b/{id}"),
            op("get", "/c/{x:int}"),
            op("get", "/d/{}/{"),
            op("get", "no-slash"),
            op("get", "/u/{name}"),
            op("put", "/u/{id}"),
            op("PROPFIND", "/dav/{file}"),
            op("GET", "/"),
        ];
        let doc = export("h", &ops);
        let keys: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "/",
                "/a/{id}/b/{id2}",
                "/c/{x_int}",
                "/d/{param}/%7B",
                "/dav/{file}",
                "/no-slash",
                "/u/{id}"
            ]
        );
        // /u/{id} and /u/{name}: one path; the first in sorted order ("/u/{id}") names it.
        let u = &doc["paths"]["/u/{id}"];
        assert_eq!(u["get"]["parameters"][0]["name"], "id");
        assert_eq!(u["put"]["parameters"][0]["name"], "id");
        assert_eq!(doc["paths"]["/"]["get"]["operationId"], "get_root");
        let dav = &doc["paths"]["/dav/{file}"];
        assert!(dav.get("propfind").is_none());
        assert_eq!(
            dav["x-apiscope-other-operations"]["PROPFIND"]["operationId"],
            "propfind_dav_file"
        );
    }

    #[test]
    fn operation_ids_are_unique_and_deterministic() {
        let ops = [
            op("get", "/users/{id}"),
            op("get", "/users/id"),
            op("get", "/users-id"),
        ];
        let doc = export("h", &ops);
        let reversed: Vec<_> = ops.iter().rev().cloned().collect();
        assert_eq!(doc, export("h", &reversed));
        let ids: BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p["get"]["operationId"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert!(ids.contains("get_users_id"));
    }

    #[test]
    fn security_scheme_names() {
        let mut a = op("get", "/x");
        a.auth = vec![
            "basic".into(),
            "bearer_jwt".into(),
            "api_key_query:api_key".into(),
            "session_cookie:sessionid".into(),
            "api_key_header:X Weird".into(),
            "api_key_header:X_Weird".into(),
            "bearer".into(),
            "bearer_opaque".into(),
            "other:Negotiate".into(),
        ];
        let doc = export("", &[a]);
        assert_eq!(doc["servers"][0]["url"], "/");
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        let names: Vec<&String> = schemes.keys().collect();
        assert_eq!(
            names,
            [
                "apiKeyHeader_X_Weird",
                "apiKeyHeader_X_Weird_2",
                "apiKeyQuery_api_key",
                "basicAuth",
                "bearerAuth",
                "bearerJwt",
                "cookie_sessionid",
                "http_Negotiate"
            ]
        );
        assert_eq!(schemes["cookie_sessionid"]["in"], "cookie");
        assert_eq!(
            doc["paths"]["/x"]["get"]["security"]
                .as_array()
                .unwrap()
                .len(),
            8
        );
        assert_eq!(schemes["http_Negotiate"]["scheme"], "negotiate");
    }

    #[test]
    fn round_trip_through_spec_matching() {
        let ops = [
            op("get", "/users/{id}"),
            op("delete", "/users/{id}"),
            op("get", "/users/me"),
            op("post", "/orgs/{org}/repos/{repo}:archive"),
            op("get", "/files/{name}.json"),
        ];
        let doc = export("api.example.com", &ops);
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let mut set = SpecSet::new();
        set.add(Spec::parse(&text, "export.json").unwrap(), &[]);
        for o in &ops {
            match set.find("api.example.com", o.method, o.path) {
                Some(SpecMatch::Operation(m)) => assert_eq!(m.template, o.path),
                other => panic!("{} {}: {other:?}", o.method, o.path),
            }
        }
    }
}
