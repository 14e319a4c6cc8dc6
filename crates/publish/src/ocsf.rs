//! OCSF 1.3.0 mapping: findings as Detection Finding (class 2004), calls as HTTP Activity
//! (class 4002). Inventory records have no OCSF class and stay native.
//!
//! The mapping is a pure function of the native record ([`map`]); fields OCSF has no place
//! for go under `unmapped`. `docs/publish.md` has the table; `tests/ocsf_schema.rs` checks
//! the output against the required attributes of the 1.3.0 classes.

use serde_json::{json, Map, Value};

use crate::Topic;

/// The OCSF schema version the records claim (`metadata.version`).
pub const OCSF_VERSION: &str = "1.3.0";

/// The record of `topic` in OCSF (inventory records are returned as they are).
pub fn map(topic: Topic, native: &Value) -> Value {
    match topic {
        Topic::Findings => finding(native),
        Topic::Calls => call(native),
        Topic::Inventory => native.clone(),
    }
}

fn metadata() -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "apiscope",
            "vendor_name": "apiscope",
            "version": env!("CARGO_PKG_VERSION"),
        },
    })
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `severity` → (`severity_id`, caption): info 1, low 2, medium 3, high 4, critical 5;
/// anything else 99 (Other) with the value kept as the caption.
pub fn severity_id(severity: &str) -> (u64, String) {
    match severity {
        "info" => (1, "Informational".to_owned()),
        "low" => (2, "Low".to_owned()),
        "medium" => (3, "Medium".to_owned()),
        "high" => (4, "High".to_owned()),
        "critical" => (5, "Critical".to_owned()),
        other => (99, other.to_owned()),
    }
}

/// A native finding as an OCSF Detection Finding (2004).
///
/// `activity_id` is 1 (Create) for the first report of a finding (`count` 1, or a
/// `revision` field of 0 when the record has one) and 2 (Update) afterwards; `time` is
/// `last_seen`, `start_time`/`end_time` are `first_seen`/`last_seen`.
pub fn finding(f: &Value) -> Value {
    let count = f.get("count").and_then(Value::as_u64).unwrap_or(1);
    let first_report = match f.get("revision").and_then(Value::as_u64) {
        Some(r) => r == 0,
        None => count <= 1,
    };
    let (activity_id, activity) = if first_report {
        (1, "Create")
    } else {
        (2, "Update")
    };
    let (sev_id, sev) = severity_id(str_field(f, "severity").unwrap_or(""));
    let first = str_field(f, "first_seen").and_then(rfc3339_to_ms);
    let last = str_field(f, "last_seen").and_then(rfc3339_to_ms);
    let time = last.or(first).unwrap_or(0);
    let kind = str_field(f, "kind").unwrap_or("unknown");
    let summary = str_field(f, "summary").unwrap_or(kind);

    let mut info = Map::new();
    info.insert("uid".into(), json!(str_field(f, "id").unwrap_or("")));
    info.insert("title".into(), json!(summary));
    info.insert("desc".into(), json!(summary));
    info.insert("types".into(), json!([kind]));
    info.insert(
        "analytic".into(),
        json!({"uid": kind, "name": kind, "type_id": 1, "type": "Rule"}),
    );
    if let Some(ms) = first {
        info.insert("first_seen_time".into(), json!(ms));
    }
    if let Some(ms) = last {
        info.insert("last_seen_time".into(), json!(ms));
    }

    let mut out = Map::new();
    out.insert("class_uid".into(), json!(2004));
    out.insert("class_name".into(), json!("Detection Finding"));
    out.insert("category_uid".into(), json!(2));
    out.insert("category_name".into(), json!("Findings"));
    out.insert("activity_id".into(), json!(activity_id));
    out.insert("activity_name".into(), json!(activity));
    out.insert("type_uid".into(), json!(2004 * 100 + activity_id));
    out.insert(
        "type_name".into(),
        json!(format!("Detection Finding: {activity}")),
    );
    out.insert("severity_id".into(), json!(sev_id));
    out.insert("severity".into(), json!(sev));
    out.insert("status_id".into(), json!(1));
    out.insert("status".into(), json!("New"));
    out.insert("time".into(), json!(time));
    if let Some(ms) = first {
        out.insert("start_time".into(), json!(ms));
    }
    if let Some(ms) = last {
        out.insert("end_time".into(), json!(ms));
    }
    out.insert("count".into(), json!(count));
    out.insert("message".into(), json!(summary));
    out.insert("metadata".into(), metadata());
    out.insert("finding_info".into(), Value::Object(info));

    let endpoint = f.get("endpoint").filter(|e| e.is_object());
    if let Some(e) = endpoint {
        let host = str_field(e, "host").unwrap_or("");
        let method = str_field(e, "method").unwrap_or("");
        let path = str_field(e, "path").unwrap_or("");
        out.insert(
            "resources".into(),
            json!([{
                "type": "API Endpoint",
                "name": format!("{method} {host} {path}"),
                "data": {"host": host, "method": method, "path": path},
            }]),
        );
    }
    let mut evidence = Map::new();
    if let Some(ip) = str_field(f, "client") {
        evidence.insert("src_endpoint".into(), json!({"ip": ip}));
    }
    if let Some(host) = endpoint.and_then(|e| str_field(e, "host")) {
        evidence.insert("dst_endpoint".into(), json!({"hostname": host}));
    }
    if let Some(data) = f.get("evidence").filter(|v| !v.is_null()) {
        evidence.insert("data".into(), data.clone());
    }
    if !evidence.is_empty() {
        out.insert("evidences".into(), json!([Value::Object(evidence)]));
    }
    let mut unmapped = Map::new();
    for key in ["kind", "owasp", "endpoint"] {
        if let Some(v) = f.get(key) {
            unmapped.insert(key.into(), v.clone());
        }
    }
    out.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(out)
}

/// HTTP Activity `activity_id` of a method (1.3.0 has no PATCH: it is 99, Other, with the
/// method as `activity_name`).
pub fn http_activity_id(method: &str) -> (u64, String) {
    let id = match method.to_ascii_uppercase().as_str() {
        "CONNECT" => 1,
        "DELETE" => 2,
        "GET" => 3,
        "HEAD" => 4,
        "OPTIONS" => 5,
        "POST" => 6,
        "PUT" => 7,
        "TRACE" => 8,
        _ => 99,
    };
    let name = match id {
        99 => method.to_owned(),
        _ => {
            let lower = method.to_ascii_lowercase();
            let mut c = lower.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        }
    };
    (id, name)
}

/// `ip:port` or `[v6]:port` → an OCSF network endpoint (`ip`, `port`).
fn network_endpoint(addr: &str) -> Map<String, Value> {
    let mut m = Map::new();
    let (ip, port) = match addr.rsplit_once(':') {
        Some((ip, port))
            if port.parse::<u16>().is_ok() && (!ip.contains(':') || ip.starts_with('[')) =>
        {
            (
                ip.trim_start_matches('[').trim_end_matches(']'),
                port.parse::<u16>().ok(),
            )
        }
        _ => (addr, None),
    };
    m.insert("ip".into(), json!(ip));
    if let Some(p) = port {
        m.insert("port".into(), json!(p));
    }
    m
}

/// A native call as an OCSF HTTP Activity (4002).
///
/// `status_id` is 1 (Success) for a status below 400, 2 (Failure) from 400 on, 0 (Unknown)
/// without a response; `severity_id` is 1 (Informational).
pub fn call(c: &Value) -> Value {
    let method = str_field(c, "method").unwrap_or("");
    let (activity_id, activity) = http_activity_id(method);
    let ts = str_field(c, "ts").and_then(rfc3339_to_ms).unwrap_or(0);
    let resp_ts = str_field(c, "resp_ts").and_then(rfc3339_to_ms);
    let status = c.get("status").and_then(Value::as_u64);
    let host = str_field(c, "host");
    let target = str_field(c, "target").unwrap_or("");
    let path = str_field(c, "path").unwrap_or(target);

    let mut url = Map::new();
    if let Some(h) = host {
        url.insert("hostname".into(), json!(h));
    }
    url.insert("path".into(), json!(path));
    if let Some((_, q)) = target.split_once('?') {
        url.insert("query_string".into(), json!(q));
    }
    url.insert("scheme".into(), json!("http"));
    if let Some(h) = host {
        let rel = if target.starts_with('/') {
            target.to_owned()
        } else {
            format!("/{target}")
        };
        url.insert("url_string".into(), json!(format!("http://{h}{rel}")));
    }
    let mut request = Map::new();
    request.insert("http_method".into(), json!(method));
    request.insert("url".into(), Value::Object(url));
    if let Some(v) = str_field(c, "version") {
        request.insert("version".into(), json!(v.trim_start_matches("HTTP/")));
    }

    let mut dst = network_endpoint(str_field(c, "dst").unwrap_or(""));
    if let Some(h) = host {
        dst.insert("hostname".into(), json!(h));
    }

    let mut out = Map::new();
    out.insert("class_uid".into(), json!(4002));
    out.insert("class_name".into(), json!("HTTP Activity"));
    out.insert("category_uid".into(), json!(4));
    out.insert("category_name".into(), json!("Network Activity"));
    out.insert("activity_id".into(), json!(activity_id));
    out.insert("activity_name".into(), json!(activity));
    out.insert("type_uid".into(), json!(4002 * 100 + activity_id));
    out.insert(
        "type_name".into(),
        json!(format!("HTTP Activity: {activity}")),
    );
    out.insert("severity_id".into(), json!(1));
    out.insert("severity".into(), json!("Informational"));
    out.insert("time".into(), json!(ts));
    out.insert("start_time".into(), json!(ts));
    if let Some(r) = resp_ts {
        out.insert("end_time".into(), json!(r));
    }
    let (status_id, status_name) = match status {
        None => (0, "Unknown"),
        Some(s) if s < 400 => (1, "Success"),
        Some(_) => (2, "Failure"),
    };
    out.insert("status_id".into(), json!(status_id));
    out.insert("status".into(), json!(status_name));
    out.insert("metadata".into(), metadata());
    out.insert(
        "src_endpoint".into(),
        Value::Object(network_endpoint(str_field(c, "src").unwrap_or(""))),
    );
    out.insert("dst_endpoint".into(), Value::Object(dst));
    out.insert("http_request".into(), Value::Object(request));
    if let Some(s) = status {
        out.insert("status_code".into(), json!(s.to_string()));
        out.insert("http_status".into(), json!(s));
        let mut response = Map::new();
        response.insert("code".into(), json!(s));
        if let Some(ct) = str_field(c, "resp_content_type") {
            response.insert("content_type".into(), json!(ct));
        }
        if let Some(us) = c.get("latency_us").and_then(Value::as_u64) {
            response.insert("latency".into(), json!(us / 1000));
        }
        out.insert("http_response".into(), Value::Object(response));
    }
    if let Some(us) = c.get("latency_us").and_then(Value::as_u64) {
        out.insert("duration".into(), json!(us / 1000));
    }
    out.insert(
        "message".into(),
        json!(match status {
            Some(s) => format!("{method} {}{target} {s}", host.unwrap_or("")),
            None => format!("{method} {}{target} (no response)", host.unwrap_or("")),
        }),
    );
    let mut unmapped = Map::new();
    for key in [
        "endpoint",
        "target",
        "req_body_bytes",
        "resp_body_bytes",
        "req_content_type",
        "tunnel",
        "interim",
        "anomalies",
    ] {
        if let Some(v) = c.get(key) {
            unmapped.insert(key.into(), v.clone());
        }
    }
    out.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(out)
}

/// RFC 3339 date-time (`2024-05-01T12:00:00.123456Z`, any fraction, `Z` or `±hh:mm`) as
/// milliseconds since the Unix epoch (OCSF `timestamp_t`); `None` when it is not one.
pub fn rfc3339_to_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i];
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        ms = digits.parse().ok()?;
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if b.len() == i + 6 && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let sign = if *c == b'+' { 1 } else { -1 };
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_to_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_to_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            rfc3339_to_ms("2024-02-29T12:34:56.123456Z"),
            Some(1_709_210_096_123)
        );
        assert_eq!(
            rfc3339_to_ms("2024-02-29T13:34:56.123+01:00"),
            Some(1_709_210_096_123)
        );
        assert_eq!(rfc3339_to_ms("1969-12-31T23:59:59Z"), Some(-1000));
        for bad in [
            "",
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00Zx",
            "2024-01-01T0a:00:00Z",
        ] {
            assert_eq!(rfc3339_to_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn methods() {
        assert_eq!(http_activity_id("GET"), (3, "Get".to_owned()));
        assert_eq!(http_activity_id("post"), (6, "Post".to_owned()));
        assert_eq!(http_activity_id("PATCH"), (99, "PATCH".to_owned()));
    }

    #[test]
    fn endpoints() {
        assert_eq!(network_endpoint("10.0.0.1:443")["port"], 443);
        assert_eq!(network_endpoint("[2001:db8::1]:80")["ip"], "2001:db8::1");
        assert_eq!(network_endpoint("2001:db8::1")["ip"], "2001:db8::1");
    }
}
