//! The OCSF mapping against the required attributes of OCSF 1.3.0 (a hand-written fixture,
//! `tests/fixtures/ocsf-1.3.0-required.json`).

use apiscope_publish::ocsf;
use serde_json::{json, Value};

fn schema() -> Value {
    let text = include_str!("fixtures/ocsf-1.3.0-required.json");
    serde_json::from_str(text).unwrap()
}

fn type_ok(v: &Value, ty: &str) -> bool {
    match ty {
        "integer" | "long" | "timestamp" => v.is_i64() || v.is_u64(),
        "string" => v.is_string(),
        _ if ty.starts_with("object:") => v.is_object(),
        _ if ty.starts_with("array:object:") => {
            v.as_array().is_some_and(|a| a.iter().all(Value::is_object))
        }
        _ => panic!("unknown type {ty} in the fixture"),
    }
}

/// Every required attribute of `object` present in `v` with its type, recursively.
fn check_object(schema: &Value, name: &str, v: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(required) = schema["objects"][name]["required"].as_object() else {
        errors.push(format!("{path}: object {name} missing from the fixture"));
        return;
    };
    check_attrs(schema, required, v, path, errors);
}

fn check_attrs(
    schema: &Value,
    attrs: &serde_json::Map<String, Value>,
    v: &Value,
    path: &str,
    errors: &mut Vec<String>,
) {
    for (attr, ty) in attrs {
        let ty = ty.as_str().unwrap();
        let at = format!("{path}.{attr}");
        match v.get(attr) {
            None | Some(Value::Null) => errors.push(format!("{at}: required, missing")),
            Some(x) if !type_ok(x, ty) => errors.push(format!("{at}: not {ty}: {x}")),
            Some(x) => {
                if let Some(obj) = ty.strip_prefix("object:") {
                    check_object(schema, obj, x, &at, errors);
                } else if let Some(obj) = ty.strip_prefix("array:object:") {
                    for (i, e) in x.as_array().unwrap().iter().enumerate() {
                        check_object(schema, obj, e, &format!("{at}[{i}]"), errors);
                    }
                }
            }
        }
    }
}

/// Every way `event` breaks the fixture's rules for `class`.
fn violations(class: &str, event: &Value) -> Vec<String> {
    let schema = schema();
    let c = &schema["classes"][class];
    let mut errors = Vec::new();
    check_attrs(
        &schema,
        c["required"].as_object().unwrap(),
        event,
        class,
        &mut errors,
    );
    let present: serde_json::Map<String, Value> = c["recommended_emitted"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| event.get(k.as_str()).is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    check_attrs(&schema, &present, event, class, &mut errors);
    // Nested objects the mapping fills: their required attributes too.
    for (dotted, obj) in schema["nested"].as_object().unwrap() {
        let mut v = Some(event);
        for part in dotted.split('.') {
            v = v.and_then(|v| v.get(part));
        }
        if let Some(v) = v {
            check_object(&schema, obj.as_str().unwrap(), v, dotted, &mut errors);
        }
    }
    let mut check = |ok: bool, what: String| {
        if !ok {
            errors.push(what);
        }
    };
    check(
        event["class_uid"] == c["class_uid"],
        format!("class_uid {}", event["class_uid"]),
    );
    check(
        event["category_uid"] == c["category_uid"],
        format!("category_uid {}", event["category_uid"]),
    );
    let activity = event["activity_id"].as_u64().unwrap_or(u64::MAX);
    check(
        c["activity_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(activity)),
        format!("activity_id {activity}"),
    );
    check(
        event["type_uid"].as_u64() == event["class_uid"].as_u64().map(|c| c * 100 + activity),
        format!("type_uid {}", event["type_uid"]),
    );
    for (attr, allowed) in c["enums"].as_object().unwrap() {
        if let Some(v) = event.get(attr) {
            check(
                allowed.as_array().unwrap().contains(v),
                format!("{attr} = {v}"),
            );
        }
    }
    check(
        event["metadata"]["version"] == schema["version"],
        "metadata.version".to_owned(),
    );
    errors
}

fn check_class(class: &str, event: &Value) {
    let errors = violations(class, event);
    assert!(errors.is_empty(), "{class}:\n{}", errors.join("\n"));
}

fn finding(severity: &str, count: u64, endpoint: Value, client: Value) -> Value {
    json!({
        "id": "9f2c4e1a00000001", "kind": "bola_enumeration", "severity": severity,
        "owasp": "API1:2023", "endpoint": endpoint, "client": client,
        "first_seen": "2024-05-01T12:00:00.000000Z", "last_seen": "2024-05-01T12:05:00.250000Z",
        "count": count, "summary": "Client 10.0.0.7 read 120 different /users/{id} objects in 5 minutes.",
        "evidence": {"distinct_ids": 120, "window_secs": 300},
    })
}

#[test]
fn findings_are_detection_findings() {
    let ep = json!({"host": "api.example.com", "method": "GET", "path": "/users/{id}"});
    for (sev, id) in [
        ("info", 1),
        ("low", 2),
        ("medium", 3),
        ("high", 4),
        ("critical", 5),
    ] {
        let e = ocsf::finding(&finding(sev, 1, ep.clone(), json!("10.0.0.7")));
        check_class("detection_finding", &e);
        assert_eq!(e["severity_id"], id);
        assert_eq!(e["activity_id"], 1, "first report: Create");
    }
    let e = ocsf::finding(&finding("high", 7, Value::Null, Value::Null));
    check_class("detection_finding", &e);
    assert_eq!(e["activity_id"], 2, "a later report: Update");
    assert_eq!(e["finding_info"]["uid"], "9f2c4e1a00000001");
    assert_eq!(e["time"], 1_714_565_100_250i64);
    assert_eq!(e["start_time"], 1_714_564_800_000i64);
    assert_eq!(e["count"], 7);
    assert_eq!(e["unmapped"]["owasp"], "API1:2023");
    assert!(e.get("resources").is_none());
    let e = ocsf::finding(&finding("weird", 1, ep, json!("2001:db8::7")));
    check_class("detection_finding", &e);
    assert_eq!(e["severity_id"], 99);
    assert_eq!(e["resources"][0]["name"], "GET api.example.com /users/{id}");
    assert_eq!(e["evidences"][0]["src_endpoint"]["ip"], "2001:db8::7");
}

fn call(method: &str, status: Value) -> Value {
    json!({
        "ts": "2024-05-01T12:00:00.123456Z", "src": "10.0.0.7:51000", "dst": "[2001:db8::1]:8080",
        "method": method, "host": "api.example.com", "target": "/users/42?expand=1",
        "path": "/users/42", "status": status, "req_body_bytes": 0,
        "resp_body_bytes": if status.is_null() { Value::Null } else { json!(120) },
        "endpoint": "GET api.example.com /users/{id}", "version": "HTTP/1.1",
        "resp_ts": if status.is_null() { Value::Null } else { json!("2024-05-01T12:00:00.130456Z") },
        "latency_us": if status.is_null() { Value::Null } else { json!(7000) },
        "tunnel": "vxlan:42", "req_content_type": null, "resp_content_type": "application/json",
        "interim": [], "anomalies": [],
    })
}

#[test]
fn calls_are_http_activity() {
    for (m, id) in [
        ("GET", 3),
        ("POST", 6),
        ("DELETE", 2),
        ("PATCH", 99),
        ("QUERY", 99),
    ] {
        let e = ocsf::call(&call(m, json!(200)));
        check_class("http_activity", &e);
        assert_eq!(e["activity_id"], id, "{m}");
    }
    let e = ocsf::call(&call("GET", json!(404)));
    check_class("http_activity", &e);
    assert_eq!(e["status_id"], 2);
    assert_eq!(e["http_response"]["code"], 404);
    assert_eq!(e["http_response"]["latency"], 7);
    assert_eq!(e["src_endpoint"], json!({"ip": "10.0.0.7", "port": 51000}));
    assert_eq!(e["dst_endpoint"]["ip"], "2001:db8::1");
    assert_eq!(e["http_request"]["url"]["query_string"], "expand=1");
    assert_eq!(
        e["http_request"]["url"]["url_string"],
        "http://api.example.com/users/42?expand=1"
    );
    assert_eq!(e["http_request"]["version"], "1.1");
    assert_eq!(e["time"], 1_714_564_800_123i64);
    let e = ocsf::call(&call("GET", Value::Null));
    check_class("http_activity", &e);
    assert_eq!(e["status_id"], 0);
    assert!(e.get("http_response").is_none());
}

#[test]
fn inventory_records_stay_native() {
    let rec = json!({"id": "abc", "host": "h", "method": "GET", "path": "/"});
    assert_eq!(ocsf::map(apiscope_publish::Topic::Inventory, &rec), rec);
}

/// The fixture itself: the checker must catch a missing or mistyped required attribute.
#[test]
fn the_checker_catches_mistakes() {
    let mut e = ocsf::finding(&finding("high", 1, Value::Null, Value::Null));
    e.as_object_mut().unwrap().remove("finding_info");
    assert_eq!(
        violations("detection_finding", &e),
        ["detection_finding.finding_info: required, missing"]
    );
    let mut e = ocsf::call(&call("GET", json!(200)));
    e["time"] = json!("2024-05-01T12:00:00Z");
    assert_eq!(violations("http_activity", &e).len(), 1);
    let mut e = ocsf::call(&call("GET", json!(200)));
    e["metadata"]["product"]
        .as_object_mut()
        .unwrap()
        .remove("vendor_name");
    assert_eq!(
        violations("http_activity", &e),
        ["http_activity.metadata.product.vendor_name: required, missing"]
    );
    let mut e = ocsf::call(&call("GET", json!(200)));
    e["type_uid"] = json!(400201);
    assert_eq!(violations("http_activity", &e).len(), 1);
}
