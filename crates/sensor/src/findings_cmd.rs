//! `apiscope findings`: prints a running sensor's findings, read from its query API
//! (`docs/api.md`), as an aligned table or as JSON Lines (the `--findings` format).

use std::io::Write;

use anyhow::Context as _;
use clap::Args;
use serde_json::Value;

use crate::inventory_cmd::parse_time;
use crate::Failure;

#[derive(Debug, Args)]
pub struct FindingsArgs {
    /// A running sensor's query API (`http://127.0.0.1:9770`).
    #[arg(long)]
    server: String,
    /// Bearer token (default: the APISCOPE_TOKEN environment variable).
    #[arg(long)]
    token: Option<String>,
    /// Output format: an aligned table, or JSON Lines (one finding per line, as `--findings`).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Only this kind (`shadow_api`, `bola_enumeration`, ...).
    #[arg(long)]
    kind: Option<String>,
    /// Only this severity or higher (info, low, medium, high, critical).
    #[arg(long)]
    min_severity: Option<String>,
    /// Only findings on this host's endpoints.
    #[arg(long)]
    host: Option<String>,
    /// Only findings last seen at or after this capture time (RFC 3339 or Unix seconds).
    #[arg(long)]
    since: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

pub fn run(args: FindingsArgs) -> Result<(), Failure> {
    crate::client::check_base_url(&args.server)
        .map_err(|e| Failure::Usage(format!("--server: {e}")))?;
    if let Some(s) = args.since.as_deref() {
        if parse_time(s).is_none() {
            return Err(Failure::Usage(format!(
                "--since: `{s}` is not an RFC 3339 time or Unix seconds"
            )));
        }
    }
    if let Some(s) = args.min_severity.as_deref() {
        if !SEVERITIES.contains(&s) {
            return Err(Failure::Usage(format!(
                "--min-severity: `{s}` is not one of {}",
                SEVERITIES.join(", ")
            )));
        }
    }
    let token = crate::client::token_from(args.token.clone());
    let mut params = Vec::new();
    for (k, v) in [
        ("kind", &args.kind),
        ("min_severity", &args.min_severity),
        ("host", &args.host),
        ("since", &args.since),
    ] {
        if let Some(v) = v.as_deref() {
            params.push((k, v));
        }
    }
    let findings = crate::client::fetch_all(
        &args.server,
        "/api/v1/findings",
        "findings",
        &params,
        token.as_deref(),
    )
    .context("querying the sensor")?;
    let mut out = std::io::stdout().lock();
    let r = match args.format {
        Format::Json => findings.iter().try_for_each(|f| {
            serde_json::to_writer(&mut out, f)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
        }),
        Format::Table => print_table(&mut out, &findings),
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::from(e)
            .context("writing the findings")
            .into()),
        _ => Ok(()),
    }
}

fn severity_rank(f: &Value) -> usize {
    f["severity"]
        .as_str()
        .and_then(|s| SEVERITIES.iter().position(|x| *x == s))
        .unwrap_or(0)
}

/// An aligned table: severity, kind, OWASP category, endpoint, client, count, last seen and
/// summary; most severe first, then most recently seen.
pub fn print_table(out: &mut impl Write, findings: &[Value]) -> std::io::Result<()> {
    let headers = [
        "SEVERITY",
        "KIND",
        "OWASP",
        "ENDPOINT",
        "CLIENT",
        "COUNT",
        "LAST SEEN",
        "SUMMARY",
    ];
    let mut sorted: Vec<&Value> = findings.iter().collect();
    sorted.sort_by(|a, b| {
        severity_rank(b)
            .cmp(&severity_rank(a))
            .then_with(|| {
                b["last_seen"]
                    .as_str()
                    .unwrap_or("")
                    .cmp(a["last_seen"].as_str().unwrap_or(""))
            })
            .then_with(|| {
                a["kind"]
                    .as_str()
                    .unwrap_or("")
                    .cmp(b["kind"].as_str().unwrap_or(""))
            })
    });
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let rows: Vec<[String; 8]> = sorted
        .iter()
        .map(|f| {
            let e = &f["endpoint"];
            let endpoint = if e.is_object() {
                format!("{} {} {}", s(&e["method"]), s(&e["host"]), s(&e["path"]))
            } else {
                "-".to_owned()
            };
            [
                s(&f["severity"]),
                s(&f["kind"]),
                s(&f["owasp"]),
                endpoint,
                s(&f["client"]),
                f["count"].as_u64().unwrap_or(0).to_string(),
                f["last_seen"]
                    .as_str()
                    .and_then(|t| t.get(..19))
                    .unwrap_or("-")
                    .replace('T', " "),
                // One line per finding whatever the summary holds.
                s(&f["summary"]).replace(['\n', '\r', '\t'], " "),
            ]
        })
        .collect();
    crate::table::write(
        out,
        &headers,
        &rows,
        crate::table::Layout {
            right_aligned: 5,
            capped: (3, 60),
        },
    )?;
    writeln!(out, "{} findings", rows.len())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn table_is_sorted_and_aligned() {
        let findings = vec![
            json!({"id": "1", "kind": "shadow_api", "severity": "medium", "owasp": "API9:2023",
                   "endpoint": {"host": "a.example", "method": "GET", "path": "/v0/users"},
                   "client": null, "first_seen": "2024-01-05T10:00:00.000000Z",
                   "last_seen": "2024-01-05T10:05:00.000000Z", "count": 12,
                   "summary": "GET /v0/users is not in the spec.", "evidence": {}}),
            json!({"id": "2", "kind": "credential_stuffing", "severity": "high",
                   "owasp": "API2:2023",
                   "endpoint": {"host": "a.example", "method": "POST", "path": "/login"},
                   "client": "10.0.0.9", "first_seen": "2024-01-05T10:00:00.000000Z",
                   "last_seen": "2024-01-05T10:01:00.000000Z", "count": 340,
                   "summary": "Many failed\nlogins.", "evidence": {}}),
            json!({"id": "3", "kind": "request_smuggling", "severity": "critical",
                   "owasp": null, "endpoint": null, "client": "10.0.0.7",
                   "first_seen": "2024-01-05T10:00:00.000000Z",
                   "last_seen": "2024-01-05T10:00:01.000000Z", "count": 1,
                   "summary": "Ambiguous framing.", "evidence": {}}),
        ];
        let mut out = Vec::new();
        print_table(&mut out, &findings).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("SEVERITY  KIND"), "{text}");
        assert!(
            lines[1].starts_with("critical  request_smuggling"),
            "{text}"
        );
        assert!(lines[2].starts_with("high "), "{text}");
        assert!(lines[2].ends_with("Many failed logins."), "{text}");
        assert!(lines[3].starts_with("medium"), "{text}");
        assert!(lines[3].contains("GET a.example /v0/users"), "{text}");
        assert_eq!(lines[4], "3 findings");
        // Columns line up: the summary starts at the same place on every line.
        let at = lines[0].find("SUMMARY").unwrap();
        for l in &lines[1..4] {
            let prefix: String = l.chars().take(at).collect();
            assert!(prefix.ends_with("  "), "{l}");
        }
        // COUNT is right-aligned.
        let count_end = lines[0].find("COUNT").unwrap() + "COUNT".len();
        assert!(lines[2][..count_end].ends_with("340"), "{text}");
    }
}
