//! `apiscope inventory`: prints the inventory saved in a state directory (`--state`) or served
//! by a running sensor's query API (`--server`, `docs/api.md`), as a table, as JSON (the
//! `--inventory` format) or as OpenAPI 3.1 (one document per host, or the one `--host`
//! names).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use apiscope_capture::Timestamp;
use apiscope_inventory::openapi::{self, ExportOperation, ExportParam};
use apiscope_inventory::store::{Store, StoreConfig};
use clap::Args;
use serde_json::{json, Value};

use crate::Failure;

#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// State directory written by `replay --state` or `run --state`.
    #[arg(long)]
    state: Option<PathBuf>,
    /// A running sensor's query API (`http://127.0.0.1:9770`).
    #[arg(long)]
    server: Option<String>,
    /// Bearer token for `--server` (default: the APISCOPE_TOKEN environment variable).
    #[arg(long)]
    token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Only this host.
    #[arg(long)]
    host: Option<String>,
    /// The inventory as it was at this capture time (RFC 3339 or Unix seconds).
    #[arg(long)]
    as_of: Option<String>,
    /// Only endpoints first seen at or after this capture time (RFC 3339 or Unix seconds).
    #[arg(long)]
    since: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Openapi,
}

/// Parses `2024-01-05T10:20:30Z` (fraction and offset allowed) or Unix seconds.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Timestamp::from_secs(secs));
    }
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        let digits = &r[..n.min(9)];
        nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
        rest = &r[n..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from civil (Howard Hinnant).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    let ns = u64::try_from(secs).ok()?.checked_mul(1_000_000_000)? + nanos as u64;
    Some(Timestamp::from_nanos(ns))
}

pub fn run(args: InventoryArgs) -> Result<(), Failure> {
    if let Some(server) = args.server.as_deref() {
        return run_server(server, &args);
    }
    if args.token.is_some() {
        return Err(Failure::Usage("--token goes with --server".into()));
    }
    let Some(dir) = args.state.as_deref() else {
        return Err(Failure::Usage("give --state DIR (or --server URL)".into()));
    };
    let time = |what: &str, v: &Option<String>| -> Result<Option<Timestamp>, Failure> {
        v.as_deref()
            .map(|s| {
                parse_time(s).ok_or_else(|| {
                    Failure::Usage(format!(
                        "--{what}: `{s}` is not an RFC 3339 time or Unix seconds"
                    ))
                })
            })
            .transpose()
    };
    let as_of = time("as-of", &args.as_of)?;
    let since = time("since", &args.since)?;
    let store = Store::open_read_only(dir, &StoreConfig::default())
        .with_context(|| format!("opening the state directory {}", dir.display()))?;
    let records = match (as_of, since) {
        (Some(t), _) => store
            .as_of(t.as_nanos())
            .map(|v| v.into_iter().map(|r| r.record).collect::<Vec<_>>()),
        (None, Some(t)) => store.first_seen_since(t.as_nanos()),
        (None, None) => store.load_current(),
    }
    .with_context(|| format!("reading the state in {}", dir.display()))?;
    let mut endpoints: Vec<Value> = Vec::new();
    for r in records {
        if args.host.as_deref().is_some_and(|h| h != r.host) {
            continue;
        }
        if let Some(t) = since.filter(|_| as_of.is_some()) {
            if r.first_seen_ns < t.as_nanos() {
                continue;
            }
        }
        let v: Value = serde_json::from_str(&r.json)
            .with_context(|| format!("endpoint {} in the state is not JSON", r.id))?;
        endpoints.push(v.get("view").cloned().unwrap_or(v));
    }
    print(&args, endpoints)
}

/// `--server`: the endpoints from a running sensor's query API, filtered there by `--host`
/// and `--since` (`--as-of` needs the history of a state directory).
fn run_server(server: &str, args: &InventoryArgs) -> Result<(), Failure> {
    if args.state.is_some() {
        return Err(Failure::Usage(
            "give --state DIR or --server URL, not both".into(),
        ));
    }
    if args.as_of.is_some() {
        return Err(Failure::Usage(
            "--as-of needs --state DIR: a running sensor serves its current inventory".into(),
        ));
    }
    crate::client::check_base_url(server).map_err(|e| Failure::Usage(format!("--server: {e}")))?;
    if let Some(s) = args.since.as_deref() {
        if parse_time(s).is_none() {
            return Err(Failure::Usage(format!(
                "--since: `{s}` is not an RFC 3339 time or Unix seconds"
            )));
        }
    }
    let token = crate::client::token_from(args.token.clone());
    let mut params = Vec::new();
    if let Some(h) = args.host.as_deref() {
        params.push(("host", h));
    }
    if let Some(s) = args.since.as_deref() {
        params.push(("since", s));
    }
    let endpoints = crate::client::fetch_all(
        server,
        "/api/v1/endpoints",
        "endpoints",
        &params,
        token.as_deref(),
    )
    .context("querying the sensor")?;
    print(args, endpoints)
}

/// Sorts the endpoints by host, path and method and prints them in the chosen format.
fn print(args: &InventoryArgs, mut endpoints: Vec<Value>) -> Result<(), Failure> {
    endpoints.sort_by(|a, b| {
        let k = |v: &Value| {
            (
                v["host"].as_str().unwrap_or("").to_owned(),
                v["path"].as_str().unwrap_or("").to_owned(),
                v["method"].as_str().unwrap_or("").to_owned(),
            )
        };
        k(a).cmp(&k(b))
    });
    let mut out = std::io::stdout().lock();
    let r = match args.format {
        Format::Json => serde_json::to_writer_pretty(&mut out, &json!({ "endpoints": endpoints }))
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        Format::Openapi => {
            let docs = openapi_docs(&endpoints);
            let v = match (args.host.as_deref(), docs.len()) {
                (_, 1) | (Some(_), _) => docs.into_values().next().unwrap_or(json!({})),
                _ => Value::Object(docs.into_iter().collect()),
            };
            serde_json::to_writer_pretty(&mut out, &v)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
        }
        Format::Table => print_table(&mut out, &endpoints),
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::from(e)
            .context("writing the inventory")
            .into()),
        _ => Ok(()),
    }
}

/// One OpenAPI 3.1 document per host, from inventory endpoint objects.
pub fn openapi_docs(endpoints: &[Value]) -> BTreeMap<String, Value> {
    let mut by_host: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for e in endpoints {
        by_host
            .entry(e["host"].as_str().unwrap_or(""))
            .or_default()
            .push(e);
    }
    let mut docs = BTreeMap::new();
    for (host, eps) in by_host {
        let ops: Vec<ExportOperation<'_>> = eps.iter().map(|e| export_op(e)).collect();
        docs.insert(host.to_owned(), openapi::export(host, &ops));
    }
    docs
}

fn export_op(e: &Value) -> ExportOperation<'_> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let params = |list: &Value, location: &str| -> Vec<ExportParam> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"].as_str().is_none_or(|l| l == location))
            .map(|p| {
                ExportParam::new(
                    s(&p["name"]),
                    p["required"].as_bool().unwrap_or(false),
                    p.get("schema")
                        .cloned()
                        .unwrap_or(json!({"type": "string"})),
                )
            })
            .collect()
    };
    let mut request_bodies: Vec<(String, Value)> = e["request_schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let form = &e["params"]["form"];
    if form
        .get("properties")
        .is_some_and(|p| p.as_object().is_some_and(|o| !o.is_empty()))
    {
        request_bodies.push(("application/x-www-form-urlencoded".into(), form.clone()));
    }
    let mut responses: BTreeMap<u16, Vec<(String, Value)>> = BTreeMap::new();
    for (status, _) in e["statuses"]["counts"].as_object().into_iter().flatten() {
        if let Ok(code) = status.parse::<u16>() {
            let class = format!("{}xx ", code / 100);
            let bodies = e["response_schemas"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| k.strip_prefix(&class).map(|m| (m.to_owned(), v.clone())))
                .collect();
            responses.insert(code, bodies);
        }
    }
    ExportOperation {
        method: e["method"].as_str().unwrap_or("GET"),
        path: e["path"].as_str().unwrap_or("/"),
        path_params: params(&e["params"]["path"], "path"),
        query_params: params(&e["params"]["query"], "query"),
        request_bodies,
        responses: responses.into_iter().collect(),
        auth: e["auth"].as_array().into_iter().flatten().map(&s).collect(),
        deprecated: e["deprecated"].as_bool().unwrap_or(false),
        calls: e["calls"].as_u64().unwrap_or(0),
        first_seen: s(&e["first_seen"]),
        last_seen: s(&e["last_seen"]),
        in_spec: e["in_spec"].as_bool(),
        ..ExportOperation::default()
    }
}

/// An aligned table: host, method, path, calls, statuses, auth, sensitive, first and last
/// seen; sorted by host and path.
pub fn print_table(out: &mut impl Write, endpoints: &[Value]) -> std::io::Result<()> {
    let headers = [
        "HOST",
        "METHOD",
        "PATH",
        "CALLS",
        "STATUSES",
        "AUTH",
        "SENSITIVE",
        "SPEC",
        "FIRST SEEN",
        "LAST SEEN",
    ];
    let mut rows: Vec<[String; 10]> = Vec::new();
    for e in endpoints {
        let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
        let statuses = e["statuses"]["counts"]
            .as_object()
            .map(|m| {
                let mut v: Vec<(&String, u64)> = m
                    .iter()
                    .map(|(k, n)| (k, n.as_u64().unwrap_or(0)))
                    .collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                v.iter()
                    .take(3)
                    .map(|(k, n)| format!("{k}:{n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let list = |v: &Value| {
            let items: Vec<String> = v.as_array().into_iter().flatten().map(s).collect();
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.join(",")
            }
        };
        let spec = match (e["in_spec"].as_bool(), e["deprecated"].as_bool()) {
            (Some(true), Some(true)) => "deprecated",
            (Some(true), _) => "yes",
            (Some(false), _) => "NO",
            (None, _) => "-",
        };
        let time = |v: &Value| s(v).get(..19).unwrap_or("").replace('T', " ");
        rows.push([
            s(&e["host"]),
            s(&e["method"]),
            s(&e["path"]),
            e["calls"].as_u64().unwrap_or(0).to_string(),
            statuses,
            list(&e["auth"]),
            list(&e["sensitive"]),
            spec.to_owned(),
            time(&e["first_seen"]),
            time(&e["last_seen"]),
        ]);
    }
    crate::table::write(
        out,
        &headers,
        &rows,
        crate::table::Layout {
            right_aligned: 3,
            capped: (2, 60),
        },
    )?;
    writeln!(out, "{} endpoints", rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_unix_seconds() {
        assert_eq!(parse_time("0"), Some(Timestamp::ZERO));
        let t = parse_time("2024-01-05T10:20:30.5Z").unwrap();
        assert_eq!(t.to_string(), "2024-01-05T10:20:30.500000Z");
        assert_eq!(
            parse_time("2024-01-05T12:20:30+02:00"),
            parse_time("2024-01-05T10:20:30Z")
        );
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2024-13-05T10:20:30Z"), None);
    }

    #[test]
    fn table_is_aligned_and_counts_rows() {
        let eps = vec![
            json!({"host": "a.example", "method": "GET", "path": "/users/{id}", "calls": 12,
                   "statuses": {"counts": {"200": 10, "404": 2}}, "auth": ["bearer_jwt"],
                   "sensitive": [], "in_spec": null, "first_seen": "2024-01-05T10:20:30.000000Z",
                   "last_seen": "2024-01-05T10:21:30.000000Z"}),
            json!({"host": "a.example", "method": "POST", "path": "/login", "calls": 3,
                   "statuses": {"counts": {"200": 3}}, "auth": [], "sensitive": ["password"],
                   "in_spec": false, "first_seen": "2024-01-05T10:20:31.000000Z",
                   "last_seen": "2024-01-05T10:20:32.000000Z"}),
        ];
        let mut out = Vec::new();
        print_table(&mut out, &eps).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let col = |l: &str| l.find("CALLS").or_else(|| l.find(" 12")).unwrap();
        assert!(lines[0].starts_with("HOST"), "{text}");
        assert!(
            lines[1].contains("200:10 404:2") && lines[1].contains("bearer_jwt"),
            "{text}"
        );
        assert!(
            lines[2].contains("password") && lines[2].contains("NO"),
            "{text}"
        );
        assert_eq!(lines[3], "2 endpoints");
        let _ = col;
    }
}
