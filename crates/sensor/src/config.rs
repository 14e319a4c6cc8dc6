//! The TOML configuration: one serde struct per section, defaults in the libraries' `Default`
//! impls, unknown keys rejected. [`load`] reports every error at once, each with its place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use apiscope_capture::{
    DecodeConfig, EngineConfig, FlowConfig, FragConfig, LiveConfig, ReasmConfig,
};
use apiscope_detector::DetectorConfig;
use apiscope_http::HttpConfig;
use apiscope_inventory::inventory::InventoryConfig;
use apiscope_inventory::store::StoreConfig;
use apiscope_publish::PublishConfig;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// `[output]`: how `replay` writes and orders its results.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Worker threads for `replay` when `--threads` is not given; 0 = number of cores.
    pub threads: usize,
    /// Calls held back to put them in request-time order (`output.reorder_max_calls`).
    pub reorder_max_calls: usize,
    /// Bytes of those calls as parsed, heads and body samples (`output.reorder_max_bytes`).
    pub reorder_max_bytes: usize,
    /// How far capture timestamps may run backwards (`output.reorder_slack_ms`).
    pub reorder_slack_ms: u64,
    /// Bytes of frames (and their records) per batch from the reader to the workers.
    pub read_batch_bytes: usize,
    /// Batches waiting per worker; when full, the reader waits (counted).
    pub read_queue_batches: usize,
    /// Whether a reader thread reads the files for the workers (`output.reader`).
    pub reader: ReaderMode,
}

/// `output.reader`: who reads `replay`'s capture files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReaderMode {
    /// A reader thread when it has a core to itself (`threads` + 2 cores), or when the
    /// workers are the busy side (no full inventory); else the workers.
    Auto,
    /// Always a reader thread.
    Thread,
    /// Always the workers, each reading every file.
    Workers,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            threads: 0,
            reorder_max_calls: 200_000,
            reorder_max_bytes: 128 << 20,
            reorder_slack_ms: 1_000,
            read_batch_bytes: 1 << 20,
            read_queue_batches: 4,
            reader: ReaderMode::Auto,
        }
    }
}

/// `[http]`: bounds of the HTTP stage (mirrors `apiscope_http::HttpConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub body_prefix_bytes: usize,
    pub max_decoded_bytes: u64,
    pub max_decode_ratio: u64,
    pub max_pending: usize,
    pub max_encoding_layers: usize,
    pub max_interim_responses: usize,
    pub undecided_scan_bytes: u64,
    pub max_response_wait_bytes: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        let d = HttpConfig::default();
        HttpSection {
            max_head_bytes: d.max_head_bytes,
            max_headers: d.max_headers,
            body_prefix_bytes: d.body_prefix_bytes,
            max_decoded_bytes: d.max_decoded_bytes,
            max_decode_ratio: d.max_decode_ratio,
            max_pending: d.max_pending,
            max_encoding_layers: d.max_encoding_layers,
            max_interim_responses: d.max_interim_responses,
            undecided_scan_bytes: d.undecided_scan_bytes,
            max_response_wait_bytes: d.max_response_wait_bytes,
        }
    }
}

/// `[state]`: the state directory's store, and how often `run` flushes to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateSection {
    /// Capture-time seconds between flushes of changed endpoints (`run`; `replay` flushes
    /// at the end, and every this-many seconds of capture time on long captures).
    pub flush_interval_secs: u64,
    /// `[state.store]`: history bounds of the store.
    pub store: StoreConfig,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            flush_interval_secs: 60,
            store: StoreConfig::default(),
        }
    }
}

/// `[run]`: the live sensor daemon (`apiscope run`): its sources, the query API, privileges,
/// the queues between the capture threads and the workers, and its wall-clock rhythms.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Interfaces captured when no `--interface` is given.
    pub interfaces: Vec<String>,
    /// UDP addresses receiving VXLAN or GENEVE mirror traffic when no `--vxlan-listen` is
    /// given.
    pub vxlan_listen: Vec<SocketAddr>,
    /// Worker threads when `--threads` is not given; 0 = the number of cores.
    pub threads: usize,
    /// Where the query API and `/metrics` listen (`--listen`).
    pub listen: SocketAddr,
    /// Bearer token of the query API; required when `listen` is not a loopback address.
    pub api_token: String,
    /// A file holding the token (first line), instead of `api_token`.
    pub api_token_file: PathBuf,
    /// Largest request (head) the API reads.
    pub api_max_request_bytes: usize,
    /// Requests per second the API answers (over all clients); beyond, 429.
    pub api_max_requests_per_sec: u32,
    /// Connections the API serves at once; beyond, new ones are closed.
    pub api_max_connections: usize,
    /// Drop to this user (and its groups) once the captures are open; empty: stay.
    pub user: String,
    /// Wall-clock tick: idle workers move capture time on, hand over their watermark and
    /// counters this often.
    pub tick_ms: u64,
    /// Batches of frames waiting per worker; a full queue drops the batch (counted).
    pub queue_max_batches: usize,
    /// Frames per batch handed from a capture thread to a worker ...
    pub batch_max_frames: usize,
    /// ... or bytes per batch ...
    pub batch_max_bytes: usize,
    /// ... or the age of its first frame, whichever comes first.
    pub batch_max_delay_ms: u64,
    /// Socket receive buffer of each `--vxlan-listen` socket (capped by net.core.rmem_max).
    pub udp_buffer_bytes: usize,
    /// How long a request still waiting for its response may hold back the calls of other
    /// connections; after it, they go on and the late call is counted as out of order.
    pub reorder_max_wait_ms: u64,
    /// How often the snapshot served by the query API is rendered.
    pub view_interval_ms: u64,
    /// How often `--inventory` is rewritten (and at exit).
    pub inventory_interval_secs: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            interfaces: Vec::new(),
            vxlan_listen: Vec::new(),
            threads: 0,
            listen: SocketAddr::from(([127, 0, 0, 1], 9770)),
            api_token: String::new(),
            api_token_file: PathBuf::new(),
            api_max_request_bytes: 16_384,
            api_max_requests_per_sec: 200,
            api_max_connections: 64,
            user: String::new(),
            tick_ms: 500,
            queue_max_batches: 64,
            batch_max_frames: 256,
            batch_max_bytes: 1 << 20,
            batch_max_delay_ms: 20,
            udp_buffer_bytes: 8 << 20,
            reorder_max_wait_ms: 10_000,
            view_interval_ms: 1_000,
            inventory_interval_secs: 60,
        }
    }
}

/// One `[[spec]]`: an OpenAPI document, and the hosts it describes (empty: its `servers`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecEntry {
    pub file: std::path::PathBuf,
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// The whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub inventory: InventoryConfig,
    pub detector: DetectorConfig,
    pub publish: PublishConfig,
    pub state: StateSection,
    pub specs: Vec<SpecEntry>,
    pub capture: DecodeConfig,
    pub live: LiveConfig,
    pub flow: FlowConfig,
    pub reassembly: ReasmConfig,
    pub frag: FragConfig,
    pub http: HttpSection,
    pub output: OutputConfig,
    pub run: RunConfig,
}

impl Config {
    pub fn http_config(&self) -> HttpConfig {
        let h = &self.http;
        HttpConfig {
            max_head_bytes: h.max_head_bytes,
            max_headers: h.max_headers,
            body_prefix_bytes: h.body_prefix_bytes,
            max_decoded_bytes: h.max_decoded_bytes,
            max_decode_ratio: h.max_decode_ratio,
            max_pending: h.max_pending,
            max_encoding_layers: h.max_encoding_layers,
            max_interim_responses: h.max_interim_responses,
            undecided_scan_bytes: h.undecided_scan_bytes,
            max_response_wait_bytes: h.max_response_wait_bytes,
        }
    }

    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            decode: self.capture.clone(),
            frag: self.frag.clone(),
            flow: self.flow.clone(),
            reassembly: self.reassembly.clone(),
        }
    }
}

/// Reads and validates `path`; on failure, every problem found, one per line.
pub fn load(path: &Path) -> Result<Config, Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    parse(&text).map_err(|errs| {
        errs.into_iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect()
    })
}

/// Parses configuration text; see [`load`].
pub fn parse(text: &str) -> Result<Config, Vec<String>> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| vec![e.to_string()])?;
    let mut errors = Vec::new();
    let mut cfg = Config::default();
    // `[capture]` holds the decoder keys and the `[capture.live]` table.
    let mut capture = take_table(&mut table, "capture", &mut errors);
    let live = capture
        .as_mut()
        .and_then(|c| take_table(c, "live", &mut errors));
    section(capture, "capture", &mut cfg.capture, &mut errors);
    section(live, "capture.live", &mut cfg.live, &mut errors);
    section(
        take_table(&mut table, "flow", &mut errors),
        "flow",
        &mut cfg.flow,
        &mut errors,
    );
    section(
        take_table(&mut table, "reassembly", &mut errors),
        "reassembly",
        &mut cfg.reassembly,
        &mut errors,
    );
    section(
        take_table(&mut table, "frag", &mut errors),
        "frag",
        &mut cfg.frag,
        &mut errors,
    );
    section(
        take_table(&mut table, "http", &mut errors),
        "http",
        &mut cfg.http,
        &mut errors,
    );
    section(
        take_table(&mut table, "output", &mut errors),
        "output",
        &mut cfg.output,
        &mut errors,
    );
    section(
        take_table(&mut table, "inventory", &mut errors),
        "inventory",
        &mut cfg.inventory,
        &mut errors,
    );
    section(
        take_table(&mut table, "detector", &mut errors),
        "detector",
        &mut cfg.detector,
        &mut errors,
    );
    section(
        take_table(&mut table, "publish", &mut errors),
        "publish",
        &mut cfg.publish,
        &mut errors,
    );
    section(
        take_table(&mut table, "run", &mut errors),
        "run",
        &mut cfg.run,
        &mut errors,
    );
    section(
        take_table(&mut table, "state", &mut errors),
        "state",
        &mut cfg.state,
        &mut errors,
    );
    if let Some(v) = table.remove("spec") {
        match v.try_into::<Vec<SpecEntry>>() {
            Ok(specs) => cfg.specs = specs,
            Err(e) => errors.push(format!("[[spec]]: {}", e.to_string().trim())),
        }
    }
    for key in table.keys() {
        errors.push(format!("unknown section or key `{key}`"));
    }
    validate(&cfg, &mut errors);
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors)
    }
}

fn take_table(t: &mut toml::Table, name: &str, errors: &mut Vec<String>) -> Option<toml::Table> {
    match t.remove(name)? {
        toml::Value::Table(t) => Some(t),
        _ => {
            errors.push(format!("`{name}` must be a table"));
            None
        }
    }
}

/// Deserializes one section key by key, so that each bad key is reported separately.
fn section<T: DeserializeOwned + Default>(
    t: Option<toml::Table>,
    name: &str,
    out: &mut T,
    errors: &mut Vec<String>,
) {
    let Some(t) = t else { return };
    match toml::Value::Table(t.clone()).try_into::<T>() {
        Ok(v) => *out = v,
        Err(_) => {
            // Find every offending key by trying them one at a time.
            for (k, v) in t {
                let mut one = toml::Table::new();
                one.insert(k.clone(), v);
                if let Err(e) = toml::Value::Table(one).try_into::<T>() {
                    // The message alone: the key's path is already in front.
                    errors.push(format!("[{name}] {k}: {}", e.message().trim()));
                }
            }
        }
    }
}

fn validate(c: &Config, errors: &mut Vec<String>) {
    let mut check = |ok: bool, what: &str| {
        if !ok {
            errors.push(what.to_owned());
        }
    };
    check(
        c.flow.max_flows >= 1,
        "[flow] max_flows: must be at least 1",
    );
    // Flows are spread over FLOW_BUCKETS buckets, and the buckets over the workers.
    let most = apiscope_capture::FLOW_BUCKETS as usize;
    check(
        c.output.threads <= most,
        "[output] threads: must be at most 64 (flows are spread over 64 buckets)",
    );
    check(
        c.run.threads <= most,
        "[run] threads: must be at most 64 (flows are spread over 64 buckets)",
    );
    check(
        c.flow.idle_timeout_secs >= 1,
        "[flow] idle_timeout_secs: must be at least 1",
    );
    check(
        c.flow.memcap_bytes >= 1 << 20,
        "[flow] memcap_bytes: must be at least 1048576",
    );
    check(
        c.reassembly.max_ooo_bytes_per_flow >= 1024,
        "[reassembly] max_ooo_bytes_per_flow: must be at least 1024",
    );
    check(
        c.reassembly.max_ooo_segments_per_flow >= 1,
        "[reassembly] max_ooo_segments_per_flow: must be at least 1",
    );
    check(
        c.reassembly.memcap_bytes >= c.reassembly.max_ooo_bytes_per_flow,
        "[reassembly] memcap_bytes: must be at least max_ooo_bytes_per_flow",
    );
    check(
        c.frag.max_datagrams >= 1,
        "[frag] max_datagrams: must be at least 1",
    );
    check(
        c.capture.max_tunnel_depth >= 1,
        "[capture] max_tunnel_depth: must be at least 1",
    );
    check(
        c.live.snaplen >= 64,
        "[capture.live] snaplen: must be at least 64",
    );
    check(
        c.state.flush_interval_secs >= 1,
        "[state] flush_interval_secs: must be at least 1",
    );
    check(
        (1..=3).contains(&c.inventory.latency_sigfig),
        "[inventory] latency_sigfig: must be 1, 2 or 3",
    );
    check(
        (4..=16).contains(&c.inventory.distinct_precision),
        "[inventory] distinct_precision: must be between 4 and 16",
    );
    check(
        c.inventory.body_sample_every >= 1,
        "[inventory] body_sample_every: must be at least 1",
    );
    check(
        c.output.read_batch_bytes >= 1 << 16,
        "[output] read_batch_bytes: must be at least 65536",
    );
    check(
        c.output.read_queue_batches >= 1,
        "[output] read_queue_batches: must be at least 1",
    );
    let r = &c.run;
    check(
        (10..=10_000).contains(&r.tick_ms),
        "[run] tick_ms: must be between 10 and 10000",
    );
    check(
        r.queue_max_batches >= 1,
        "[run] queue_max_batches: must be at least 1",
    );
    check(
        r.batch_max_frames >= 1,
        "[run] batch_max_frames: must be at least 1",
    );
    check(
        r.batch_max_bytes >= 1 << 16,
        "[run] batch_max_bytes: must be at least 65536",
    );
    check(
        r.batch_max_delay_ms >= 1 && r.batch_max_delay_ms <= r.tick_ms,
        "[run] batch_max_delay_ms: must be at least 1 and at most tick_ms",
    );
    check(
        r.view_interval_ms >= 100,
        "[run] view_interval_ms: must be at least 100",
    );
    check(
        r.inventory_interval_secs >= 1,
        "[run] inventory_interval_secs: must be at least 1",
    );
    check(
        r.api_max_request_bytes >= 1024,
        "[run] api_max_request_bytes: must be at least 1024",
    );
    check(
        r.api_max_requests_per_sec >= 1,
        "[run] api_max_requests_per_sec: must be at least 1",
    );
    check(
        r.api_max_connections >= 1,
        "[run] api_max_connections: must be at least 1",
    );
    check(
        r.api_token.is_empty() || r.api_token_file.as_os_str().is_empty(),
        "[run] api_token, api_token_file: give one or the other",
    );
    check(
        r.listen.ip().is_loopback()
            || !r.api_token.is_empty()
            || !r.api_token_file.as_os_str().is_empty(),
        "[run] listen: a non-loopback address needs api_token or api_token_file",
    );
    for e in c.inventory.templates.validate() {
        errors.push(format!("[inventory.templates] {e}"));
    }
    for e in c.publish.validate() {
        errors.push(format!("[publish] {e}"));
    }
    for e in c.detector.validate() {
        errors.push(format!("[detector] {e}"));
    }
    for e in c.state.store.validate() {
        errors.push(format!("[state.store] {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_the_defaults() {
        let text = include_str!("../../../configs/apiscope.toml");
        let c = parse(text).expect("configs/apiscope.toml parses");
        let d = Config::default();
        assert_eq!(format!("{:?}", c.engine()), format!("{:?}", d.engine()));
        assert_eq!(format!("{:?}", c.live), format!("{:?}", d.live));
        assert_eq!(format!("{:?}", c.http), format!("{:?}", d.http));
        assert_eq!(format!("{:?}", c.output), format!("{:?}", d.output));
        assert_eq!(format!("{:?}", c.run), format!("{:?}", d.run));
        assert_eq!(format!("{:?}", c.inventory), format!("{:?}", d.inventory));
        assert_eq!(format!("{:?}", c.state), format!("{:?}", d.state));
        assert_eq!(format!("{:?}", c.detector), format!("{:?}", d.detector));
        assert_eq!(format!("{:?}", c.publish), format!("{:?}", d.publish));
        assert!(c.specs.is_empty());
    }

    #[test]
    fn spec_entries_and_nested_inventory_sections_parse() {
        let c = parse(
            "[[spec]]\nfile = \"a.yaml\"\nhosts = [\"api.example.com\"]\n[[spec]]\nfile = \"b.json\"\n[inventory.templates]\nmin_distinct = 9\n",
        )
        .unwrap();
        assert_eq!(c.specs.len(), 2);
        assert_eq!(c.specs[0].hosts, ["api.example.com"]);
        assert_eq!(c.inventory.templates.min_distinct, 9);
        let errs =
            parse("[inventory]\nlatency_sigfig = 7\n[inventory.templates]\nmin_distinct = 1\n")
                .unwrap_err();
        let all = errs.join("\n");
        assert!(
            all.contains("latency_sigfig") && all.contains("min_distinct"),
            "{all}"
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let errs = parse(
            "[flow]\nmax_flows = \"many\"\nidle_timeout_secs = 0\nbogus = 1\n[reassembly]\noverlap_policy = \"bsd\"\n[nope]\n",
        )
        .unwrap_err();
        let all = errs.join("\n");
        assert!(all.contains("[flow] max_flows"), "{all}");
        assert!(all.contains("[flow] bogus"), "{all}");
        assert!(all.contains("[reassembly] overlap_policy"), "{all}");
        assert!(all.contains("`nope`"), "{all}");
        assert!(errs.len() >= 4, "{all}");
    }

    #[test]
    fn a_wrong_value_says_what_was_expected() {
        let errs =
            parse("[output]\nreader = \"fast\"\n[capture.live]\nsnaplen = \"x\"\n").unwrap_err();
        let all = errs.join("\n");
        assert!(
            all.contains("[output] reader: unknown variant `fast`, expected one of `auto`"),
            "{all}"
        );
        assert!(
            all.contains("[capture.live] snaplen: invalid type"),
            "{all}"
        );
    }

    #[test]
    fn more_workers_than_flow_buckets_are_refused() {
        let errs = parse("[output]\nthreads = 65\n[run]\nthreads = 100\n").unwrap_err();
        let all = errs.join("\n");
        assert!(
            all.contains("[output] threads") && all.contains("[run] threads"),
            "{all}"
        );
        assert!(parse("[output]\nthreads = 64\n").is_ok());
    }
}
