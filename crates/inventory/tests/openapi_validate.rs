//! Exported OpenAPI documents pass a standard validator and load back into the matcher.
//!
//! The validator is Python's `openapi-spec-validator`; `make openapi-validator` installs it
//! into `.venv-tools`. Point `APISCOPE_OPENAPI_VALIDATOR` at a Python interpreter that has it
//! (`.venv-tools/bin/python`); without the variable the validation test says it is skipping.

use std::path::PathBuf;
use std::process::Command;

use apiscope_inventory::openapi::{export, ExportOperation, ExportParam};
use apiscope_inventory::spec::{Spec, SpecMatch, SpecSet, METHODS};
use serde_json::{json, Value};

fn op<'a>(method: &'a str, path: &'a str) -> ExportOperation<'a> {
    ExportOperation {
        method,
        path,
        calls: 3,
        first_seen: "2024-05-01T10:00:00.000000Z".into(),
        last_seen: "2024-05-01T11:00:00.000000Z".into(),
        ..ExportOperation::default()
    }
}

fn p(name: &str, required: bool, schema: Value) -> ExportParam {
    ExportParam::new(name, required, schema)
}

fn json_body() -> Vec<(String, Value)> {
    vec![(
        "application/json".into(),
        json!({
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "email": {"type": "string", "format": "email"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "note": {"type": ["string", "null"]}
            },
            "required": ["id"]
        }),
    )]
}

/// (file name, host, operations): the shapes an inventory produces.
fn documents() -> Vec<(&'static str, &'static str, Vec<ExportOperation<'static>>)> {
    let mut get_user = op("GET", "/users/{id}");
    get_user.path_params = vec![p("id", true, json!({"type": "integer"}))];
    get_user.query_params = vec![
        p("fields", false, json!({"type": "string"})),
        p("limit", true, json!({"type": "integer", "minimum": 0})),
        p("expand", false, json!({"type": "boolean"})),
    ];
    get_user.header_params = vec![
        p(
            "X-Request-Id",
            false,
            json!({"type": "string", "format": "uuid"}),
        ),
        p("Accept", true, json!({"type": "string"})),
    ];
    get_user.responses = vec![
        (200, json_body()),
        (
            404,
            vec![("application/problem+json".into(), json!({"type": "object"}))],
        ),
        (304, vec![]),
    ];
    get_user.auth = vec!["bearer_jwt".into(), "none".into()];
    get_user.in_spec = Some(true);

    let mut create_user = op("POST", "/users");
    create_user.request_bodies = json_body();
    create_user.request_bodies.push((
        "application/x-www-form-urlencoded".into(),
        json!({"type": "object", "properties": {"name": {"type": "string"}}}),
    ));
    create_user.responses = vec![(201, json_body()), (422, vec![])];
    create_user.auth = vec!["bearer_jwt".into()];
    create_user.in_spec = Some(false);

    let mut delete_user = op("delete", "/users/{id}");
    delete_user.deprecated = true;
    delete_user.responses = vec![(204, vec![])];

    let users = vec![get_user, create_user, delete_user];

    let mut basic = op("GET", "/admin/stats");
    basic.auth = vec!["basic".into(), "digest".into()];
    basic.responses = vec![(200, vec![("text/plain".into(), json!({"type": "string"}))])];
    let mut header_key = op("GET", "/reports/{reportId}");
    header_key.auth = vec![
        "api_key_header:X-API-Key".into(),
        "api_key_header:authorization".into(),
        "bearer_opaque".into(),
        "other:Negotiate".into(),
    ];
    let mut query_key = op("GET", "/search");
    query_key.auth = vec!["api_key_query:api_key".into(), "bearer".into()];
    query_key.query_params = vec![p("q", true, json!({"type": "string"}))];
    let mut cookie = op("POST", "/cart/items");
    cookie.auth = vec![
        "session_cookie:sessionid".into(),
        "api_key_header:X Odd/Name".into(),
        "something_new".into(),
    ];
    cookie.request_bodies = vec![("application/json".into(), json!(true))];
    let auth = vec![basic, header_key, query_key, cookie];

    // No responses seen at all, odd characters, two parameters, mixed segments.
    let mut two = op("GET", "/orgs/{org}/repos/{repo}");
    two.path_params = vec![
        p("org", true, json!({"type": "string"})),
        p(
            "repo",
            true,
            json!({"type": "string", "pattern": "^[a-z0-9-]+$"}),
        ),
        p("not_in_path", true, json!({"type": "string"})),
    ];
    let odd = vec![
        two,
        op("POST", "/v1/projects/{project}:archive"),
        op("GET", "/files/{name}.json"),
        op("GET", "/files/{name}.{ext}"),
        op("GET", "/static/app.v2.min.js"),
        op("GET", "/~user/@me/a%20b"),
        op("GET", "/"),
        op("PUT", "/a/{id}/b/{id}"),
        op("GET", "/c/{x:int}"),
        op("GET", "/d/{}/{"),
        op("GET", "/u/{name}"),
        op("PATCH", "/u/{id}"),
        op("PROPFIND", "/dav/{file}"),
        op("get", "/users/{id}"),
        op("GET", "/users/id"),
        op("GET", "/status"),
        op("GET", "/status"),
    ];

    vec![
        ("users.json", "api.example.com", users),
        ("auth.json", "shop.example.com:8443", auth),
        ("odd.json", "[2001:db8::1]:8080", odd),
        ("empty.json", "", Vec::new()),
    ]
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openapi-export");
    std::fs::create_dir_all(&dir).expect("create the output directory");
    dir
}

#[test]
fn exported_documents_pass_openapi_spec_validator() {
    let dir = out_dir();
    let mut files = Vec::new();
    for (name, host, ops) in documents() {
        let doc = export(host, &ops);
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        files.push(path);
    }
    let Some(python) = std::env::var_os("APISCOPE_OPENAPI_VALIDATOR").filter(|v| !v.is_empty())
    else {
        eprintln!(
            "skipping OpenAPI validation: APISCOPE_OPENAPI_VALIDATOR is not set \
             (run `make openapi-validator`, then set it to .venv-tools/bin/python); \
             documents written to {}",
            dir.display()
        );
        return;
    };
    for file in &files {
        let out = Command::new(&python)
            .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.to_string_lossy()));
        assert!(
            out.status.success(),
            "{} failed validation:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn exported_documents_round_trip_through_spec_matching() {
    for (name, host, ops) in documents() {
        let doc = export(host, &ops);
        let text = serde_json::to_string(&doc).unwrap();
        let spec = Spec::parse(&text, name).unwrap_or_else(|e| panic!("{e}"));
        assert!(spec.warnings.is_empty(), "{name}: {:?}", spec.warnings);
        let mut set = SpecSet::new();
        set.add(spec, &[]);

        // Every operation of the document matches itself, by its own template.
        let mut count = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                let Some(exported) = item.get(method) else {
                    continue;
                };
                count += 1;
                match set.find(host, method, path) {
                    Some(SpecMatch::Operation(m)) => {
                        assert_eq!(m.template, path, "{name}");
                        assert_eq!(
                            m.operation_id,
                            exported["operationId"].as_str(),
                            "{name} {method} {path}"
                        );
                        assert_eq!(m.deprecated, exported["deprecated"] == true);
                    }
                    other => panic!("{name}: {method} {path}: {other:?}"),
                }
            }
        }
        // And every input operation OpenAPI can express is found from its own path.
        let expressible: Vec<_> = ops
            .iter()
            .filter(|o| METHODS.contains(&o.method.to_ascii_lowercase().as_str()))
            .collect();
        assert!(count <= expressible.len());
        for o in expressible {
            assert!(
                matches!(
                    set.find(host, o.method, o.path),
                    Some(SpecMatch::Operation(_))
                ),
                "{name}: {} {} not found",
                o.method,
                o.path
            );
        }
    }
}
