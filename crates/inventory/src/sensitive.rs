//! Sensitive data in paths, query strings, headers and bodies: which kind and where, never the
//! value.
//!
//! A [`Scanner`] (bounded by a [`SensitiveConfig`]) finds the [`SensitiveKind`]s of personal
//! data (emails, payment cards, US SSNs, phone numbers, IBANs) and secrets (JWTs, AWS, Stripe,
//! GitHub, Google and Slack keys, private keys, passwords) and reports each with its location:
//!
//! - [`Scanner::scan_text`] (and the free [`scan_text`]): raw text such as a non-JSON body;
//!   each kind is reported once per text;
//! - [`Scanner::scan_field`]: one named value, so the field-name rules apply (a bare 9-digit
//!   number is an SSN only in a field named like `ssn`, any non-empty string is a password in
//!   a field named like `password`, a 40-character base64 string is an AWS secret key only
//!   in a field named like `aws_secret_access_key`, a bare number is a phone number only in a
//!   field named like `phone`);
//! - [`Scanner::scan_json`] (and the free [`scan_json`]): a parsed JSON document, reported by
//!   field path (`user.cards[].number`; an object key that looks like data rather than a
//!   name, such as an email or an id, is written `*` so the path never leaks a value);
//! - [`Scanner::scan_urlencoded`] (query strings and form bodies, by parameter name),
//!   [`Scanner::scan_path`], [`Scanner::scan_headers`] (by header name).
//!
//! Every detector has a validator, so look-alikes stay quiet: card numbers must pass Luhn
//! *and* start with a known issuer prefix at a length that issuer uses, IBANs must have their
//! country's length and pass mod-97, SSNs must have a possible area, group and serial, JWTs
//! must have a header that decodes to JSON with an `alg`, vendor keys must have their exact
//! prefix, alphabet and length and end at a word boundary.
//!
//! The text scan is one pass over the bytes with cheap triggers: `@` for emails, a digit at
//! the start of a word for cards, SSNs and phones, `+` and `(` for phones, a letter at the
//! start of a word for the fixed prefixes (`AKIA`, `eyJ`, `sk_live_`, `ghp_`, two capitals
//! and two digits for an IBAN, ...), `-----BEGIN` for private keys. Each trigger does bounded
//! work and the scan never allocates. Work per input is bounded by the [`SensitiveConfig`];
//! every scan returns the [`ScanLimits`] it hit so the caller can count them.
//!
//! ```
//! use apiscope_inventory::sensitive::{scan_json, scan_text, SensitiveKind};
//!
//! let body = serde_json::json!({
//!     "user": {
//!         "email": "alice@example.com",
//!         "cards": [{"number": "4111 1111 1111 1111", "order": "1234567890123456"}],
//!         "password": "hunter2",
//!         "version": "1.2.3"
//!     }
//! });
//! let mut found = Vec::new();
//! scan_json(&body, &mut |kind, path| found.push(format!("{kind} at {path}")));
//! found.sort();
//! assert_eq!(
//!     found,
//!     [
//!         "card_number at user.cards[].number",
//!         "email at user.email",
//!         "password at user.password",
//!     ]
//! );
//!
//! let mut kinds = Vec::new();
//! scan_text(b"call +1 415 555 2671, key AKIAIOSFODNN7EXAMPLE, build 2024-01-05", &mut |k| {
//!     kinds.push(k)
//! });
//! assert_eq!(kinds, [SensitiveKind::Phone, SensitiveKind::AwsAccessKey]);
//! ```

use std::fmt;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::auth::{contains, hex_val, jwt_header, percent_decode_into, split_jwt};
use crate::value::{classify, ValueKind};

// ---------------------------------------------------------------------------------------------
// Kinds, findings, configuration.

/// A kind of sensitive data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SensitiveKind {
    Email,
    CardNumber,
    UsSsn,
    Phone,
    Iban,
    Jwt,
    AwsAccessKey,
    AwsSecretKey,
    StripeKey,
    GithubToken,
    GoogleApiKey,
    SlackToken,
    PrivateKey,
    Password,
}

impl SensitiveKind {
    /// Every kind, in [`SensitiveKinds`] bit order.
    pub const ALL: [SensitiveKind; 14] = [
        SensitiveKind::Email,
        SensitiveKind::CardNumber,
        SensitiveKind::UsSsn,
        SensitiveKind::Phone,
        SensitiveKind::Iban,
        SensitiveKind::Jwt,
        SensitiveKind::AwsAccessKey,
        SensitiveKind::AwsSecretKey,
        SensitiveKind::StripeKey,
        SensitiveKind::GithubToken,
        SensitiveKind::GoogleApiKey,
        SensitiveKind::SlackToken,
        SensitiveKind::PrivateKey,
        SensitiveKind::Password,
    ];

    /// The stable name used in outputs (`email`, `card_number`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            SensitiveKind::Email => "email",
            SensitiveKind::CardNumber => "card_number",
            SensitiveKind::UsSsn => "us_ssn",
            SensitiveKind::Phone => "phone",
            SensitiveKind::Iban => "iban",
            SensitiveKind::Jwt => "jwt",
            SensitiveKind::AwsAccessKey => "aws_access_key",
            SensitiveKind::AwsSecretKey => "aws_secret_key",
            SensitiveKind::StripeKey => "stripe_key",
            SensitiveKind::GithubToken => "github_token",
            SensitiveKind::GoogleApiKey => "google_api_key",
            SensitiveKind::SlackToken => "slack_token",
            SensitiveKind::PrivateKey => "private_key",
            SensitiveKind::Password => "password",
        }
    }

    /// True for secrets and credentials; false for personal and financial data.
    pub const fn is_secret(self) -> bool {
        !matches!(
            self,
            SensitiveKind::Email
                | SensitiveKind::CardNumber
                | SensitiveKind::UsSsn
                | SensitiveKind::Phone
                | SensitiveKind::Iban
        )
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for SensitiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SensitiveKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A set of [`SensitiveKind`]s; serialises as a list of names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SensitiveKinds(u16);

impl SensitiveKinds {
    pub const fn empty() -> Self {
        SensitiveKinds(0)
    }

    pub fn insert(&mut self, k: SensitiveKind) {
        self.0 |= k.bit();
    }

    pub const fn contains(self, k: SensitiveKind) -> bool {
        self.0 & k.bit() != 0
    }

    pub const fn union(self, other: SensitiveKinds) -> SensitiveKinds {
        SensitiveKinds(self.0 | other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = SensitiveKind> {
        SensitiveKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl Serialize for SensitiveKinds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for k in self.iter() {
            seq.serialize_element(k.as_str())?;
        }
        seq.end()
    }
}

/// Where a finding was, for callers that keep findings (the value never is).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "in", content = "name", rename_all = "snake_case")]
pub enum Location {
    /// The request path.
    Path,
    /// A query parameter, by name.
    Query(String),
    /// A header, by name.
    Header(String),
    /// A JSON body, by field path (`user.cards[].number`; empty for the document itself).
    Json(String),
    /// A form body (`application/x-www-form-urlencoded`), by field name.
    Form(String),
    /// A body scanned as plain text.
    Body,
}

/// A kind of sensitive data and where it was.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Finding {
    pub kind: SensitiveKind,
    pub location: Location,
}

/// Bounds of the sensitive-data scan (`[sensitive]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensitiveConfig {
    /// Bytes scanned per input: one text, or all the strings of one JSON document or query
    /// string together. The rest is skipped and [`ScanLimits::bytes`] set.
    pub max_scan_bytes: usize,
    /// JSON nesting followed; deeper values are skipped and [`ScanLimits::depth`] set.
    pub max_json_depth: usize,
    /// JSON values (of any type) visited per document; then [`ScanLimits::values`] is set.
    pub max_json_values: usize,
    /// Distinct (kind, location) findings reported per input; then [`ScanLimits::findings`]
    /// is set.
    pub max_findings: usize,
    /// Longest field path reported; a longer one ends with `…`.
    pub max_field_path_bytes: usize,
}

impl Default for SensitiveConfig {
    fn default() -> Self {
        SensitiveConfig {
            max_scan_bytes: 64 * 1024,
            max_json_depth: 32,
            max_json_values: 20_000,
            max_findings: 64,
            max_field_path_bytes: 128,
        }
    }
}

/// Which bounds a scan hit (each one a counter for the caller:
/// `sensitive_scan_truncated`, `sensitive_json_too_deep`, `sensitive_json_too_many_values`,
/// `sensitive_too_many_findings`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanLimits {
    /// `max_scan_bytes`: part of the input was not scanned.
    pub bytes: bool,
    /// `max_json_depth`: values nested deeper were not scanned.
    pub depth: bool,
    /// `max_json_values`: the rest of the document was not scanned.
    pub values: bool,
    /// `max_findings`: the scan stopped after that many findings.
    pub findings: bool,
}

impl ScanLimits {
    /// Any bound hit.
    pub const fn any(self) -> bool {
        self.bytes || self.depth || self.values || self.findings
    }
}

// ---------------------------------------------------------------------------------------------
// Scanner.

/// Scans inputs within the bounds of a [`SensitiveConfig`]. Cheap to build; holds no state
/// between scans.
#[derive(Debug, Clone, Default)]
pub struct Scanner {
    config: SensitiveConfig,
}

/// Scan raw text with the default bounds: see [`Scanner::scan_text`].
pub fn scan_text(text: &[u8], f: &mut impl FnMut(SensitiveKind)) -> ScanLimits {
    Scanner::default().scan_text(text, f)
}

/// Scan a JSON document with the default bounds: see [`Scanner::scan_json`].
pub fn scan_json(doc: &Value, f: &mut impl FnMut(SensitiveKind, &str)) -> ScanLimits {
    Scanner::default().scan_json(doc, f)
}

impl Scanner {
    pub fn new(config: SensitiveConfig) -> Self {
        Scanner { config }
    }

    pub fn config(&self) -> &SensitiveConfig {
        &self.config
    }

    /// Call `f` once for each kind found in `text` (any bytes; not necessarily UTF-8), in the
    /// order first seen. Only the first `max_scan_bytes` are scanned.
    pub fn scan_text(&self, text: &[u8], f: &mut impl FnMut(SensitiveKind)) -> ScanLimits {
        let mut limits = ScanLimits::default();
        let t = self.clip(text, &mut limits);
        let mut seen = SensitiveKinds::empty();
        scan_core(t, &mut |k| {
            if !seen.contains(k) {
                seen.insert(k);
                f(k);
            }
            true
        });
        limits
    }

    /// Like [`Scanner::scan_text`] for the value of a field called `name` (JSON key, form or
    /// query parameter, header): the field-name rules apply as well.
    pub fn scan_field(
        &self,
        name: &str,
        value: &[u8],
        f: &mut impl FnMut(SensitiveKind),
    ) -> ScanLimits {
        let mut limits = ScanLimits::default();
        let t = self.clip(value, &mut limits);
        let mut seen = SensitiveKinds::empty();
        let mut once = |k: SensitiveKind| {
            if !seen.contains(k) {
                seen.insert(k);
                f(k);
            }
            true
        };
        field_rules(FieldRules::of(name.as_bytes()), value, &mut once);
        scan_core(t, &mut once);
        limits
    }

    /// Scan a request path (percent-decoded first, so `%40` is an `@`); each kind once.
    pub fn scan_path(&self, path: &str, f: &mut impl FnMut(SensitiveKind)) -> ScanLimits {
        let mut buf = Vec::new();
        percent_decode_vec(path.as_bytes(), false, &mut buf);
        self.scan_text(&buf, f)
    }

    /// Scan a query string or a form body (`a=1&b=2`, percent- and `+`-encoded): each value
    /// with the rules of its parameter name, and the names themselves (a key-only parameter
    /// can be data). `f` gets each (kind, parameter name) once; a name that looks like data
    /// is reported as `*`.
    pub fn scan_urlencoded(
        &self,
        data: &[u8],
        f: &mut impl FnMut(SensitiveKind, &str),
    ) -> ScanLimits {
        let mut st = State::new(&self.config);
        let mut value = Vec::new();
        for pair in data.split(|c| *c == b'&' || *c == b';') {
            if st.stopped {
                break;
            }
            let (raw_name, raw_value) = match pair.iter().position(|c| *c == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            let mut nb = [0u8; 128];
            let name = percent_decode_into(raw_name, true, &mut nb).unwrap_or(b"");
            let name_str = std::str::from_utf8(name).unwrap_or("");
            let label = if is_name_like(name_str) {
                name_str
            } else {
                "*"
            };
            value.clear();
            percent_decode_vec(raw_value, true, &mut value);
            let t = st.take(&value);
            let mut report = |k: SensitiveKind| st.report(k, label, f);
            if !raw_name.is_empty() && label == "*" {
                scan_core(name, &mut report);
            }
            field_rules(FieldRules::of(name), &value, &mut report);
            scan_core(t, &mut report);
        }
        st.limits
    }

    /// Scan header values, each with the rules of its name. `Authorization`,
    /// `Proxy-Authorization`, `Cookie` and `Set-Cookie` are skipped: they carry credentials by
    /// design (see [`crate::auth`]). `f` gets each (kind, header name as given) once.
    pub fn scan_headers<'a, I>(
        &self,
        headers: I,
        f: &mut impl FnMut(SensitiveKind, &str),
    ) -> ScanLimits
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut st = State::new(&self.config);
        for (name, value) in headers {
            if st.stopped {
                break;
            }
            if [
                "authorization",
                "proxy-authorization",
                "cookie",
                "set-cookie",
            ]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
            {
                continue;
            }
            let t = st.take(value);
            let mut report = |k: SensitiveKind| st.report(k, name, f);
            field_rules(FieldRules::of(name.as_bytes()), value, &mut report);
            scan_core(t, &mut report);
        }
        st.limits
    }

    /// Walk a parsed JSON document. `f` gets each (kind, field path) once: paths join object
    /// keys with `.` and mark array elements with `[]` (`user.cards[].number`); the document
    /// itself is the empty path; a key that looks like data (an email, a number, an id, a
    /// token) is written `*`. Strings are scanned as text with the rules of their key (or,
    /// for generic keys such as `value`, of the key above); unsigned integers are checked as
    /// card numbers and, in fields named so, as SSNs and phone numbers.
    pub fn scan_json(&self, doc: &Value, f: &mut impl FnMut(SensitiveKind, &str)) -> ScanLimits {
        let mut w = Walk {
            st: State::new(&self.config),
            path: String::new(),
            keys: [None; 32],
            f,
        };
        w.value(doc, FieldRules::default(), 0);
        w.st.limits
    }

    fn clip<'t>(&self, text: &'t [u8], limits: &mut ScanLimits) -> &'t [u8] {
        if text.len() > self.config.max_scan_bytes {
            limits.bytes = true;
            &text[..self.config.max_scan_bytes]
        } else {
            text
        }
    }
}

/// Budgets and de-duplication shared by the multi-value scans.
struct State<'c> {
    config: &'c SensitiveConfig,
    bytes_left: usize,
    values: usize,
    findings: usize,
    /// (kind, hash of location) already reported.
    seen: Vec<(SensitiveKind, u64)>,
    limits: ScanLimits,
    stopped: bool,
}

impl<'c> State<'c> {
    fn new(config: &'c SensitiveConfig) -> Self {
        State {
            config,
            bytes_left: config.max_scan_bytes,
            values: 0,
            findings: 0,
            seen: Vec::new(),
            limits: ScanLimits::default(),
            stopped: false,
        }
    }

    /// The part of `t` the byte budget allows, which it consumes.
    fn take<'t>(&mut self, t: &'t [u8]) -> &'t [u8] {
        if t.len() > self.bytes_left {
            self.limits.bytes = true;
        }
        let n = t.len().min(self.bytes_left);
        self.bytes_left -= n;
        &t[..n]
    }

    /// Report (kind, location) unless already reported; false once the scan must stop.
    fn report(
        &mut self,
        kind: SensitiveKind,
        location: &str,
        f: &mut impl FnMut(SensitiveKind, &str),
    ) -> bool {
        if self.stopped {
            return false;
        }
        let key = (kind, fnv1a(location.as_bytes()));
        if self.seen.contains(&key) {
            return true;
        }
        if self.findings >= self.config.max_findings {
            self.limits.findings = true;
            self.stopped = true;
            return false;
        }
        self.findings += 1;
        self.seen.push(key);
        f(kind, location);
        true
    }
}

struct Walk<'c, 'd, 'f, F> {
    st: State<'c>,
    path: String,
    /// What each recently seen key says (direct-mapped): array elements repeat their keys,
    /// and working out a key's rules costs more than scanning a short value.
    keys: [Option<(&'d str, KeyInfo)>; 32],
    f: &'f mut F,
}

#[derive(Clone, Copy)]
struct KeyInfo {
    name_like: bool,
    generic: bool,
    rules: FieldRules,
}

impl<'d, F: FnMut(SensitiveKind, &str)> Walk<'_, 'd, '_, F> {
    fn key_info(&mut self, key: &'d str) -> KeyInfo {
        let b = key.as_bytes();
        let slot = (b.len()
            + 7 * usize::from(b.first().copied().unwrap_or(0))
            + 31 * usize::from(b.last().copied().unwrap_or(0)))
            % self.keys.len();
        if let Some((k, info)) = self.keys[slot] {
            if k == key {
                return info;
            }
        }
        let name_like = is_name_like(key);
        let info = KeyInfo {
            name_like,
            generic: name_like && is_generic_key(key),
            rules: if name_like {
                FieldRules::of(b)
            } else {
                FieldRules::default()
            },
        };
        self.keys[slot] = Some((key, info));
        info
    }

    fn value(&mut self, v: &'d Value, rules: FieldRules, depth: usize) {
        if self.st.stopped {
            return;
        }
        if self.st.values >= self.st.config.max_json_values {
            self.st.limits.values = true;
            self.st.stopped = true;
            return;
        }
        self.st.values += 1;
        match v {
            Value::String(s) => {
                let Walk { st, path, f, .. } = self;
                let t = st.take(s.as_bytes());
                let mut report = |k: SensitiveKind| st.report(k, path, &mut **f);
                field_rules(rules, s.as_bytes(), &mut report);
                scan_core(t, &mut report);
            }
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    let mut buf = [0u8; 20];
                    let digits = format_u64(u, &mut buf);
                    let Walk { st, path, f, .. } = self;
                    let mut report = |k: SensitiveKind| st.report(k, path, &mut **f);
                    field_rules(rules, digits, &mut report);
                    scan_core(digits, &mut report);
                }
            }
            Value::Array(items) => {
                if depth >= self.st.config.max_json_depth {
                    self.st.limits.depth = true;
                    return;
                }
                let mark = self.path.len();
                self.push_component("[]", false);
                for item in items {
                    if self.st.stopped {
                        break;
                    }
                    self.value(item, rules, depth + 1);
                }
                self.path.truncate(mark);
            }
            Value::Object(map) => {
                if depth >= self.st.config.max_json_depth {
                    self.st.limits.depth = true;
                    return;
                }
                for (key, child) in map {
                    if self.st.stopped {
                        break;
                    }
                    let mark = self.path.len();
                    let info = self.key_info(key);
                    self.push_component(if info.name_like { key } else { "*" }, true);
                    if !info.name_like {
                        // The key is data (`{"alice@example.com": {...}}`): scan it too.
                        let Walk { st, path, f, .. } = self;
                        let t = st.take(key.as_bytes());
                        scan_core(t, &mut |k| st.report(k, path, &mut **f));
                    }
                    let child_rules = if info.generic {
                        info.rules.or(rules)
                    } else {
                        info.rules
                    };
                    self.value(child, child_rules, depth + 1);
                    self.path.truncate(mark);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    fn push_component(&mut self, c: &str, dotted: bool) {
        let max = self.st.config.max_field_path_bytes;
        if self.path.ends_with('…') {
            return;
        }
        let sep = usize::from(dotted && !self.path.is_empty());
        if self.path.len() + sep + c.len() > max {
            self.path.push('…');
            return;
        }
        if sep == 1 {
            self.path.push('.');
        }
        self.path.push_str(c);
    }
}

/// An object key or parameter name that names a field rather than holding data: 1 to 64
/// printable ASCII bytes without `@`, not an identifier-like value (number, id, token, date).
fn is_name_like(k: &str) -> bool {
    (1..=64).contains(&k.len())
        && k.bytes().all(|c| c.is_ascii_graphic() || c == b' ')
        && !k.contains('@')
        && !classify(k).is_identifier()
}

/// Keys so generic that the key above says more (`{"ssn": {"value": "..."}}`).
fn is_generic_key(k: &str) -> bool {
    [
        "value", "val", "number", "num", "data", "text", "raw", "content",
    ]
    .iter()
    .any(|g| k.eq_ignore_ascii_case(g))
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, c| {
        (h ^ u64::from(*c)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn format_u64(mut u: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            return &buf[i..];
        }
    }
}

/// Percent-decode `raw` onto `out` (`+` as space when `plus_is_space`); a malformed escape
/// is kept as is.
fn percent_decode_vec(raw: &[u8], plus_is_space: bool, out: &mut Vec<u8>) {
    out.reserve(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let mut c = raw[i];
        i += 1;
        if c == b'+' && plus_is_space {
            c = b' ';
        } else if c == b'%' {
            if let (Some(h), Some(l)) = (
                raw.get(i).and_then(|h| hex_val(*h)),
                raw.get(i + 1).and_then(|l| hex_val(*l)),
            ) {
                c = h << 4 | l;
                i += 2;
            }
        }
        out.push(c);
    }
}

// ---------------------------------------------------------------------------------------------
// Field-name rules.

/// What a field's name says about its value.
#[derive(Debug, Clone, Copy, Default)]
struct FieldRules {
    password: bool,
    ssn: bool,
    phone: bool,
    aws_secret: bool,
}

impl FieldRules {
    fn of(name: &[u8]) -> FieldRules {
        // Compact lowercase form (`aws_secret_access_key` → `awssecretaccesskey`).
        let mut buf = [0u8; 64];
        let mut n = 0;
        for c in name.iter().filter(|c| c.is_ascii_alphanumeric()) {
            let Some(d) = buf.get_mut(n) else { break };
            *d = c.to_ascii_lowercase();
            n += 1;
        }
        let compact = &buf[..n];
        if compact.is_empty() {
            return FieldRules::default();
        }
        let (mut last, mut ssn_word, mut phone_word) = (&b""[..], false, false);
        for_each_word(name, |w| {
            last = w;
            ssn_word |= w.eq_ignore_ascii_case(b"ssn");
            phone_word |= [
                &b"mobile"[..],
                b"tel",
                b"cell",
                b"msisdn",
                b"fax",
                b"telephone",
            ]
            .iter()
            .any(|p| w.eq_ignore_ascii_case(p));
        });
        const PASSWORD: &[&[u8]] = &[
            b"password",
            b"passwd",
            b"passwort",
            b"passphrase",
            b"passcode",
            b"secret",
        ];
        const NOT_A_VALUE: &[&[u8]] = &[
            b"name",
            b"id",
            b"ids",
            b"ref",
            b"type",
            b"arn",
            b"path",
            b"file",
            b"url",
            b"uri",
            b"hint",
            b"length",
            b"len",
            b"count",
            b"policy",
            b"version",
            b"at",
            b"date",
            b"time",
            b"strength",
            b"required",
            b"enabled",
            b"set",
            b"exists",
            b"expiry",
            b"expires",
            b"expiration",
            b"changed",
            b"updated",
            b"reset",
            b"question",
            b"field",
            b"label",
            b"rules",
            b"format",
            b"mode",
            b"storage",
        ];
        let names_a_value = !NOT_A_VALUE.iter().any(|s| last.eq_ignore_ascii_case(s));
        let aws_secret = contains(compact, b"secretaccesskey")
            || (contains(compact, b"aws") && contains(compact, b"secret"));
        FieldRules {
            password: names_a_value
                && (PASSWORD.iter().any(|p| contains(compact, p))
                    || matches!(compact, b"pwd" | b"pass" | b"pw")),
            ssn: ssn_word || contains(compact, b"socialsecurity"),
            phone: phone_word || contains(compact, b"phone"),
            aws_secret,
        }
    }

    fn or(self, o: FieldRules) -> FieldRules {
        FieldRules {
            password: self.password || o.password,
            ssn: self.ssn || o.ssn,
            phone: self.phone || o.phone,
            aws_secret: self.aws_secret || o.aws_secret,
        }
    }
}

/// Call `f` with each word of a field name: split at non-alphanumerics and at lower-to-upper
/// case changes (`userSSN` → `user`, `SSN`).
fn for_each_word<'n>(name: &'n [u8], mut f: impl FnMut(&'n [u8])) {
    let mut start = None;
    for (i, &c) in name.iter().enumerate() {
        let alnum = c.is_ascii_alphanumeric();
        let camel = i > 0 && c.is_ascii_uppercase() && name[i - 1].is_ascii_lowercase();
        match start {
            Some(s) if !alnum || camel => {
                f(&name[s..i]);
                start = alnum.then_some(i);
            }
            None if alnum => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        f(&name[s..]);
    }
}

/// Apply the field-name rules to one value.
fn field_rules(r: FieldRules, v: &[u8], report: &mut impl FnMut(SensitiveKind) -> bool) {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 1024 {
        return;
    }
    if r.aws_secret && is_aws_secret_value(v) {
        report(SensitiveKind::AwsSecretKey);
    } else if r.password && is_password_value(v) {
        report(SensitiveKind::Password);
    }
    if r.ssn && is_ssn_value(v) {
        report(SensitiveKind::UsSsn);
    }
    if r.phone && is_phone_value(v) {
        report(SensitiveKind::Phone);
    }
}

/// 40 characters of base64 with upper and lower case letters and a digit, `/` or `+`.
fn is_aws_secret_value(v: &[u8]) -> bool {
    v.len() == 40
        && v.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'/' || *c == b'+')
        && v.iter().any(u8::is_ascii_uppercase)
        && v.iter().any(u8::is_ascii_lowercase)
        && v.iter()
            .any(|c| c.is_ascii_digit() || *c == b'/' || *c == b'+')
}

/// Anything but a masked value (`********`, `[redacted]`), a non-value (`null`) or a
/// boolean or date (`"password_set": "true"` is about a password, not one).
fn is_password_value(v: &[u8]) -> bool {
    const MASKS: &[&[u8]] = &[
        b"null",
        b"undefined",
        b"none",
        b"redacted",
        b"[redacted]",
        b"<redacted>",
        b"hidden",
        b"filtered",
        b"[filtered]",
        b"masked",
        b"secret",
        b"password",
    ];
    if v.iter().all(|c| *c == v[0]) || v.iter().all(|c| matches!(c, b'*' | 0xe2 | 0x80 | 0xa2)) {
        return false;
    }
    if MASKS.iter().any(|m| v.eq_ignore_ascii_case(m)) {
        return false;
    }
    let Ok(s) = std::str::from_utf8(v) else {
        return true;
    };
    !matches!(
        classify(s),
        ValueKind::Boolean | ValueKind::Date | ValueKind::DateTime
    )
}

/// Nine digits, bare or as `AAA-GG-SSSS` / `AAA GG SSSS`, with a possible area, group and
/// serial.
fn is_ssn_value(v: &[u8]) -> bool {
    let mut d = [0u8; 9];
    match v.len() {
        9 if v.iter().all(u8::is_ascii_digit) => d.copy_from_slice(v),
        11 if (v[3] == b'-' && v[6] == b'-') || (v[3] == b' ' && v[6] == b' ') => {
            let digits = v[..3].iter().chain(&v[4..6]).chain(&v[7..]);
            for (o, c) in d.iter_mut().zip(digits) {
                if !c.is_ascii_digit() {
                    return false;
                }
                *o = *c;
            }
        }
        _ => return false,
    }
    ssn_valid(&d)
}

/// Area 001–899 but not 666, group 01–99, serial 0001–9999, and not one of the two numbers
/// famous for being printed on sample cards. `d` holds ASCII digits.
fn ssn_valid(d: &[u8; 9]) -> bool {
    let num = |s: &[u8]| s.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0'));
    let (area, group, serial) = (num(&d[..3]), num(&d[3..5]), num(&d[5..]));
    area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && d != b"078051120"
        && d != b"219099999"
}

/// Only digits and `+ -.()` with 7 to 15 digits, not all the same, and not a date, time or
/// IP address.
fn is_phone_value(v: &[u8]) -> bool {
    let body = v.strip_prefix(b"+").unwrap_or(v);
    if !body
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b' ' | b'-' | b'.' | b'(' | b')'))
    {
        return false;
    }
    let digits = body.iter().filter(|c| c.is_ascii_digit()).count();
    let first = body.iter().find(|c| c.is_ascii_digit());
    if !(7..=15).contains(&digits) || body.iter().all(|c| !c.is_ascii_digit() || Some(c) == first) {
        return false;
    }
    std::str::from_utf8(v).is_ok_and(|s| {
        !matches!(
            classify(s),
            ValueKind::Date | ValueKind::DateTime | ValueKind::Ipv4 | ValueKind::Number
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The text scan.

const C_OTHER: u8 = 0;
const C_DIGIT: u8 = 1;
const C_ALPHA: u8 = 2;
const C_AT: u8 = 3;
const C_PLUS: u8 = 4;
const C_PAREN: u8 = 5;
const C_DASH: u8 = 6;

const CLASS: [u8; 256] = {
    let mut t = [C_OTHER; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_digit() {
            C_DIGIT
        } else if b.is_ascii_alphabetic() {
            C_ALPHA
        } else {
            match b {
                b'@' => C_AT,
                b'+' => C_PLUS,
                b'(' => C_PAREN,
                b'-' => C_DASH,
                _ => C_OTHER,
            }
        };
        c += 1;
    }
    t
};

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn skip_word(t: &[u8], mut i: usize) -> usize {
    while i < t.len() && is_word(t[i]) {
        i += 1;
    }
    i
}

/// Length of the run of bytes satisfying `p` in `t` from `from`, counting at most `max` (so a
/// detector triggered many times over one long run stays linear); 0 past the end.
fn run(t: &[u8], from: usize, max: usize, p: impl Fn(u8) -> bool) -> usize {
    t.get(from..)
        .map_or(0, |r| r.iter().take(max).take_while(|c| p(**c)).count())
}

/// Report every match in `t` (possibly the same kind many times) until `found` returns false.
fn scan_core(t: &[u8], found: &mut impl FnMut(SensitiveKind) -> bool) {
    let n = t.len();
    let mut i = 0;
    // No JWT starts inside the header part of a candidate that failed (`eyJ-eyJ-eyJ…` would
    // otherwise rescan the same bytes from every `eyJ`).
    let mut jwt_floor = 0;
    while i < n {
        let c = t[i];
        let hit = match CLASS[usize::from(c)] {
            C_AT => email_at(t, i).map(|end| (SensitiveKind::Email, end)),
            C_PLUS => plus_phone(t, i).map(|end| (SensitiveKind::Phone, end)),
            C_PAREN => paren_phone(t, i).map(|end| (SensitiveKind::Phone, end)),
            C_DASH => private_key(t, i).map(|end| (SensitiveKind::PrivateKey, end)),
            C_DIGIT | C_ALPHA => {
                if i > 0 && is_word(t[i - 1]) {
                    i = skip_word(t, i);
                    continue;
                }
                let hit = if c.is_ascii_digit() {
                    numeric(t, i)
                } else {
                    word(t, i, &mut jwt_floor)
                };
                if hit.is_none() {
                    i = skip_word(t, i);
                    continue;
                }
                hit
            }
            _ => None,
        };
        match hit {
            Some((kind, end)) => {
                if !found(kind) {
                    return;
                }
                i = end.max(i + 1);
            }
            None => i += 1,
        }
    }
}

// --- emails

/// File extensions that end `name@2x.png`-like strings, which are not emails.
const FILE_TLDS: &[&[u8]] = &[
    b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"bmp", b"css", b"js", b"mjs",
    b"map", b"json", b"html", b"htm", b"xml", b"txt", b"pdf", b"woff", b"woff2", b"ttf", b"php",
    b"aspx", b"jsp", b"tgz",
];

fn email_at(t: &[u8], at: usize) -> Option<usize> {
    let local = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
    let mut s = at;
    while s > 0 && local(t[s - 1]) {
        if at - s == 64 {
            return None;
        }
        s -= 1;
    }
    while s < at && matches!(t[s], b'.' | b'-' | b'+') {
        s += 1;
    }
    if s == at {
        return None;
    }
    let domain = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-');
    let mut e = at + 1;
    while e < t.len() && domain(t[e]) {
        if e - at > 253 {
            return None;
        }
        e += 1;
    }
    while e > at + 1 && matches!(t[e - 1], b'.' | b'-') {
        e -= 1;
    }
    let dom = &t[at + 1..e];
    let first = dom.split(|c| *c == b'.').next().unwrap_or_default();
    let tld = dom.rsplit(|c| *c == b'.').next().unwrap_or_default();
    let retina = first.len() >= 2
        && first.ends_with(b"x")
        && first[..first.len() - 1].iter().all(u8::is_ascii_digit);
    if retina || FILE_TLDS.iter().any(|x| tld.eq_ignore_ascii_case(x)) {
        return None;
    }
    let cand = std::str::from_utf8(&t[s..e]).ok()?;
    (classify(cand) == ValueKind::Email).then_some(e)
}

// --- digits: cards, SSNs, phone numbers

/// A run of digit groups at `t[i]` (single ` `, `-` or `.` between groups): an SSN, a phone
/// number or a card number as a whole, else its first group alone when a space follows it
/// (`4111111111111111 5555555555554444` is two cards, not one 32-digit number).
fn numeric(t: &[u8], i: usize) -> Option<(SensitiveKind, usize)> {
    // Not the tail of a decimal, a version, an IP or a longer dashed number.
    if i > 0 {
        let p = t[i - 1];
        if matches!(p, b'.' | b'+') || (p == b'-' && i >= 2 && t[i - 2].is_ascii_alphanumeric()) {
            return None;
        }
    }
    let n = t.len();
    let mut groups = [0usize; 8];
    let mut ng = 0;
    let mut digits = [0u8; 24];
    let mut nd = 0;
    let mut sep = 0u8;
    let mut broken = false;
    let mut j = i;
    loop {
        let start = j;
        while j < n && t[j].is_ascii_digit() {
            if let Some(d) = digits.get_mut(nd) {
                *d = t[j];
            }
            nd += 1;
            j += 1;
        }
        groups[ng] = j - start;
        ng += 1;
        if j + 1 < n && matches!(t[j], b' ' | b'-' | b'.') && t[j + 1].is_ascii_digit() {
            if ng == groups.len() || nd > digits.len() || (sep != 0 && sep != t[j]) {
                broken = true;
                break;
            }
            sep = t[j];
            j += 1;
        } else {
            break;
        }
    }
    let runs_on = (j < n && is_word(t[j]))
        || (j + 1 < n && matches!(t[j], b'.' | b'-' | b'/' | b':') && t[j + 1].is_ascii_digit());
    if !broken && nd <= digits.len() && !runs_on {
        if let Some(kind) = digit_groups(&groups[..ng], &digits[..nd], sep) {
            return Some((kind, j));
        }
    }
    let first = groups[0];
    if (ng > 1 || broken) && t.get(i + first) == Some(&b' ') && first <= digits.len() {
        return digit_groups(&groups[..1], &digits[..first], 0).map(|k| (k, i + first));
    }
    None
}

/// What digit groups (`g`: lengths, `d`: the ASCII digits, `sep`: the separator or 0) are.
fn digit_groups(g: &[usize], d: &[u8], sep: u8) -> Option<SensitiveKind> {
    if sep == b'-' && g == [3, 2, 4] {
        let mut s = [0u8; 9];
        s.copy_from_slice(d);
        return ssn_valid(&s).then_some(SensitiveKind::UsSsn);
    }
    let nanp = |d: &[u8]| d[0] >= b'2' && d[3] >= b'2' && &d[1..3] != b"11";
    if (matches!(sep, b'-' | b'.') && g == [3, 3, 4] && nanp(d))
        || (sep == b'-' && g == [1, 3, 3, 4] && d[0] == b'1' && nanp(&d[1..]))
    {
        return Some(SensitiveKind::Phone);
    }
    let last = g.len() - 1;
    let grouped = g.len() == 1
        || (matches!(sep, b' ' | b'-')
            && (g == [4, 6, 5]
                || g == [4, 6, 4]
                || (g[..last].iter().all(|&l| l == 4) && (1..=4).contains(&g[last]))));
    (grouped && is_card(d)).then_some(SensitiveKind::CardNumber)
}

/// Luhn-valid, and a known issuer prefix at a length that issuer uses. `d`: ASCII digits.
fn is_card(d: &[u8]) -> bool {
    let len = d.len();
    if !(13..=19).contains(&len) {
        return false;
    }
    let prefix = |k: usize| {
        d[..k]
            .iter()
            .fold(0u32, |n, c| n * 10 + u32::from(c - b'0'))
    };
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    let issuer = match p1 {
        4 => matches!(len, 13 | 16 | 19),              // Visa
        5 => (51..=55).contains(&p2) && len == 16,     // Mastercard
        2 => (2221..=2720).contains(&p4) && len == 16, // Mastercard
        3 if p2 == 34 || p2 == 37 => len == 15,        // Amex
        3 if (3528..=3589).contains(&p4) => len >= 16, // JCB
        3 if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 => len >= 14, // Diners
        6 if p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) => len >= 16, // Discover
        6 if p2 == 62 => len >= 16,                    // UnionPay
        _ => false,
    };
    issuer && luhn(d)
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(k, c)| {
            let x = u32::from(c - b'0');
            if k % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum % 10 == 0
}

/// `+` then 8 to 15 digits, optionally grouped by single spaces, dashes or dots, with a
/// country code of 1 to 3 digits when grouped and an optional `(0)` or `(415)` group.
fn plus_phone(t: &[u8], i: usize) -> Option<usize> {
    if i > 0 && (is_word(t[i - 1]) || t[i - 1] == b'+') {
        return None;
    }
    let n = t.len();
    let mut j = i + 1;
    if !t.get(j).is_some_and(|c| (b'1'..=b'9').contains(c)) {
        return None;
    }
    let (mut digits, mut first_group, mut grouped) = (0usize, 0usize, false);
    while j < n && j - i < 32 {
        let c = t[j];
        if c.is_ascii_digit() {
            digits += 1;
            if !grouped {
                first_group += 1;
            }
            j += 1;
        } else if matches!(c, b' ' | b'-' | b'.')
            && t.get(j + 1)
                .is_some_and(|c| c.is_ascii_digit() || *c == b'(')
        {
            grouped = true;
            j += 1;
        } else if c == b'(' {
            let k = run(t, j + 1, 5, |c| c.is_ascii_digit());
            if !(1..=4).contains(&k) || t.get(j + 1 + k) != Some(&b')') {
                break;
            }
            grouped = true;
            digits += k;
            j += k + 2;
            if t.get(j) == Some(&b' ') && t.get(j + 1).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
        } else {
            break;
        }
    }
    if !(8..=15).contains(&digits) || (grouped && !(1..=3).contains(&first_group)) {
        return None;
    }
    if j < n && is_word(t[j]) {
        return None;
    }
    if j + 1 < n && matches!(t[j], b'.' | b'-' | b':' | b'/') && t[j + 1].is_ascii_digit() {
        return None;
    }
    Some(j)
}

/// `(NXX) NXX-XXXX`, the space optional, `-` `.` or a space before the last four digits.
fn paren_phone(t: &[u8], i: usize) -> Option<usize> {
    if i > 0 && is_word(t[i - 1]) {
        return None;
    }
    let d = |k: usize| t.get(k).is_some_and(u8::is_ascii_digit);
    let n2 = |k: usize| t.get(k).is_some_and(|c| (b'2'..=b'9').contains(c));
    if !(n2(i + 1) && d(i + 2) && d(i + 3) && t.get(i + 4) == Some(&b')')) {
        return None;
    }
    let mut j = i + 5;
    if t.get(j) == Some(&b' ') {
        j += 1;
    }
    if !(n2(j) && d(j + 1) && d(j + 2) && t.get(j + 3).is_some_and(|c| b"-. ".contains(c))) {
        return None;
    }
    j += 4;
    if !(d(j) && d(j + 1) && d(j + 2) && d(j + 3)) {
        return None;
    }
    j += 4;
    if j < t.len() && (is_word(t[j]) || (b".-".contains(&t[j]) && d(j + 1))) {
        return None;
    }
    Some(j)
}

// --- words: fixed prefixes, IBANs, JWTs

fn word(t: &[u8], i: usize, jwt_floor: &mut usize) -> Option<(SensitiveKind, usize)> {
    let w = &t[i..];
    let hit = match w[0] {
        b'A' => aws_access_key(w)
            .or_else(|| google_api_key(w))
            .or_else(|| iban(w))
            .or_else(|| aws_secret_in_context(w)),
        b'S' => iban(w).or_else(|| aws_secret_in_context(w)),
        b'B'..=b'Z' => iban(w),
        b'a' => aws_secret_in_context(w),
        b'e' if i >= *jwt_floor => jwt(w)
            .map_err(|header_end| *jwt_floor = i + header_end)
            .ok(),
        b's' => stripe_key(w).or_else(|| aws_secret_in_context(w)),
        b'r' | b'w' => stripe_key(w),
        b'g' => github_token(w),
        b'x' => slack_token(w),
        b'h' => slack_webhook(w),
        _ => None,
    };
    hit.map(|(k, len)| (k, i + len))
}

fn upper_digit(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

/// `AKIA`/`ASIA` and exactly 16 upper-case letters or digits.
fn aws_access_key(w: &[u8]) -> Option<(SensitiveKind, usize)> {
    ((w.starts_with(b"AKIA") || w.starts_with(b"ASIA"))
        && run(w, 4, 17, upper_digit) == 16
        && !w.get(20).is_some_and(u8::is_ascii_alphanumeric))
    .then_some((SensitiveKind::AwsAccessKey, 20))
}

/// `AIza` and exactly 35 of `[A-Za-z0-9_-]`.
fn google_api_key(w: &[u8]) -> Option<(SensitiveKind, usize)> {
    let key = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    (w.starts_with(b"AIza") && run(w, 4, 36, key) == 35)
        .then_some((SensitiveKind::GoogleApiKey, 39))
}

/// `sk_live_`, `sk_test_`, `rk_live_`, `rk_test_` and 16+ alphanumerics with a digit; or a
/// webhook secret `whsec_` and 24+ alphanumerics.
fn stripe_key(w: &[u8]) -> Option<(SensitiveKind, usize)> {
    let body = if [&b"sk_live_"[..], b"sk_test_", b"rk_live_", b"rk_test_"]
        .iter()
        .any(|p| w.starts_with(p))
    {
        8
    } else if w.starts_with(b"whsec_") {
        6
    } else {
        return None;
    };
    let k = run(w, body, 248, |c| c.is_ascii_alphanumeric());
    let end = body + k;
    let min = if body == 6 { 24 } else { 16 };
    (k >= min
        && k <= 247
        && w[body..end].iter().any(u8::is_ascii_digit)
        && !w.get(end).is_some_and(|c| is_word(*c)))
    .then_some((SensitiveKind::StripeKey, end))
}

/// `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` and exactly 36 alphanumerics; or `github_pat_`, 22
/// alphanumerics, `_` and 50 to 70 alphanumerics.
fn github_token(w: &[u8]) -> Option<(SensitiveKind, usize)> {
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    let end = if w.len() > 4 && w.starts_with(b"gh") && b"pousr".contains(&w[2]) && w[3] == b'_' {
        (run(w, 4, 37, alnum) == 36).then_some(40)?
    } else if w.starts_with(b"github_pat_") {
        if run(w, 11, 23, alnum) != 22 || w.get(33) != Some(&b'_') {
            return None;
        }
        let k = run(w, 34, 71, alnum);
        (50..=70).contains(&k).then_some(34 + k)?
    } else {
        return None;
    };
    (!w.get(end).is_some_and(|c| is_word(*c))).then_some((SensitiveKind::GithubToken, end))
}

/// `xoxb-`/`xoxp-`/`xoxa-`/`xoxr-`/`xoxs-` then at least three dash-separated parts of which
/// the first is numeric and the last has 8+ characters, 20+ characters in all.
fn slack_token(w: &[u8]) -> Option<(SensitiveKind, usize)> {
    if !(w.len() > 5 && w.starts_with(b"xox") && b"bpars".contains(&w[3]) && w[4] == b'-') {
        return None;
    }
    let k = run(w, 5, 255, |c| c.is_ascii_alphanumeric() || c == b'-');
    let body = &w[5..5 + k];
    let mut parts = body.split(|c| *c == b'-');
    let first = parts.next().unwrap_or_default();
    let (count, last) = parts.fold((1, first), |(n, _), p| (n + 1, p));
    let ok = k >= 20
        && count >= 3
        && !first.is_empty()
        && first.iter().all(u8::is_ascii_digit)
        && last.len() >= 8
        && !body.windows(2).any(|p| p == b"--")
        && !w.get(5 + k).is_some_and(|c| is_word(*c));
    ok.then_some((SensitiveKind::SlackToken, 5 + k))
}

/// `hooks.slack.com/services/T…/B…/…`.
fn slack_webhook(w: &[u8]) -> Option<(SensitiveKind, usize)> {
    const P: &[u8] = b"hooks.slack.com/services/";
    if !w.starts_with(P) {
        return None;
    }
    let mut j = P.len();
    for lead in [b'T', b'B'] {
        if w.get(j) != Some(&lead) {
            return None;
        }
        let k = run(w, j + 1, 64, upper_digit);
        if k < 6 || w.get(j + 1 + k) != Some(&b'/') {
            return None;
        }
        j += k + 2;
    }
    let k = run(w, j, 128, |c| c.is_ascii_alphanumeric());
    (k >= 16).then_some((SensitiveKind::SlackToken, j + k))
}

/// A compact JWS (`eyJ…`, three parts, the payload also `ey…`) or JWE (five parts) whose header
/// decodes to JSON with an `alg`. On failure, the length of the header part scanned.
fn jwt(w: &[u8]) -> Result<(SensitiveKind, usize), usize> {
    if !w.starts_with(b"eyJ") {
        return Err(0);
    }
    let mut end = 0;
    let mut dots = 0;
    let mut header_end = None;
    while end < w.len() {
        let c = w[end];
        if c == b'.' {
            header_end.get_or_insert(end);
            dots += 1;
            if dots > 5 {
                return Err(end);
            }
        } else if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
            break;
        } else if dots == 0 && end > 1024 {
            return Err(end); // headers are short
        }
        end += 1;
    }
    let fail = Err(header_end.unwrap_or(end));
    let check = |tok: &[u8]| {
        let ([header, payload, _], five) = split_jwt(tok)?;
        if !five && !payload.starts_with(b"ey") {
            return None;
        }
        jwt_header(header).map(|_| ())
    };
    if check(&w[..end]).is_some() {
        return Ok((SensitiveKind::Jwt, end));
    }
    // A JWT at the end of a sentence: `... eyJ….x.y.`
    if end > 0 && w[end - 1] == b'.' && check(&w[..end - 1]).is_some() {
        return Ok((SensitiveKind::Jwt, end - 1));
    }
    fail
}

/// `aws_secret_access_key = <40 chars>` and the like (`SecretAccessKey": "…"`): a word naming
/// an AWS secret, `=` or `:` (with quotes and spaces around), then a 40-character AWS secret
/// value ending at a word boundary.
fn aws_secret_in_context(w: &[u8]) -> Option<(SensitiveKind, usize)> {
    let k = run(w, 0, 41, is_word);
    if !(9..=40).contains(&k) {
        return None;
    }
    let rules = FieldRules::of(&w[..k]);
    if !rules.aws_secret {
        return None;
    }
    let filler = |c: u8| matches!(c, b' ' | b'\t' | b'"' | b'\'');
    let mut j = k + run(w, k, 3, filler);
    if !w.get(j).is_some_and(|c| *c == b'=' || *c == b':') {
        return None;
    }
    j += 1;
    j += run(w, j, 3, filler);
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
    let v = run(w, j, 41, b64);
    (v == 40 && is_aws_secret_value(&w[j..j + 40]) && w.get(j + 40) != Some(&b'='))
        .then_some((SensitiveKind::AwsSecretKey, j + 40))
}

/// An IBAN: a country code we know the length of, two check digits, the BBAN in capitals and
/// digits (compact, or printed in groups of four separated by single spaces), the mod-97 check.
fn iban(w: &[u8]) -> Option<(SensitiveKind, usize)> {
    if w.len() < 15
        || !(w[1].is_ascii_uppercase() && w[2].is_ascii_digit() && w[3].is_ascii_digit())
    {
        return None;
    }
    let expected = iban_length([w[0], w[1]])?;
    let mut buf = [0u8; 34];
    let (mut n, mut j, mut group) = (0, 0, 0);
    loop {
        while j < w.len() && upper_digit(w[j]) {
            *buf.get_mut(n)? = w[j];
            n += 1;
            j += 1;
            group += 1;
        }
        if n >= expected {
            break;
        }
        if group == 4 && w.get(j) == Some(&b' ') && w.get(j + 1).is_some_and(|c| upper_digit(*c)) {
            j += 1;
            group = 0;
            continue;
        }
        break;
    }
    if n != expected || w.get(j).is_some_and(|c| is_word(*c)) {
        return None;
    }
    let mut r = 0u32;
    for &c in buf[4..n].iter().chain(&buf[..4]) {
        r = if c.is_ascii_digit() {
            (r * 10 + u32::from(c - b'0')) % 97
        } else {
            (r * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    (r == 1).then_some((SensitiveKind::Iban, j))
}

/// IBAN length per country (SWIFT IBAN registry).
fn iban_length(cc: [u8; 2]) -> Option<usize> {
    Some(match &cc {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FO" | b"GL" | b"NL" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"XK" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HU" | b"LB" | b"PL" | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        _ => return None,
    })
}

// --- private keys

/// `-----BEGIN … PRIVATE KEY-----` (or `PRIVATE KEY BLOCK`) followed within 256 bytes by at
/// least 32 base64 characters in a row; the match runs to the `-----END` line when it is
/// within 16 KiB, else over those 16 KiB (so the key body is never rescanned).
fn private_key(t: &[u8], i: usize) -> Option<usize> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let w = &t[i..];
    if !w.starts_with(BEGIN) {
        return None;
    }
    let k = run(w, BEGIN.len(), 41, |c| {
        c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' '
    });
    if k > 40 {
        return None;
    }
    let label = &w[BEGIN.len()..BEGIN.len() + k];
    let head_end = BEGIN.len() + k + 5;
    if !(label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK"))
        || w.get(BEGIN.len() + k..head_end) != Some(&b"-----"[..])
    {
        return None;
    }
    let window = &w[head_end..w.len().min(head_end + 256)];
    let b64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    let mut longest = 0;
    let mut cur = 0;
    for c in window {
        cur = if b64(c) { cur + 1 } else { 0 };
        longest = longest.max(cur);
    }
    if longest < 32 {
        return None;
    }
    let limit = w.len().min(head_end + 16 * 1024);
    let end = w[head_end..limit]
        .windows(8)
        .position(|x| x == b"-----END")
        .map_or(limit, |p| head_end + p + 8);
    Some(i + end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(text: &str) -> Vec<SensitiveKind> {
        let mut v = Vec::new();
        scan_text(text.as_bytes(), &mut |k| v.push(k));
        v
    }

    fn only(text: &str, k: SensitiveKind) {
        assert_eq!(kinds(text), [k], "{text:?}");
    }

    fn none(text: &str) {
        assert_eq!(kinds(text), [], "{text:?}");
    }

    fn json_findings(doc: &Value) -> Vec<String> {
        let mut v = Vec::new();
        scan_json(doc, &mut |k, p| v.push(format!("{k}@{p}")));
        v.sort();
        v
    }

    #[test]
    fn kind_names_are_stable() {
        let names: Vec<_> = SensitiveKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "email",
                "card_number",
                "us_ssn",
                "phone",
                "iban",
                "jwt",
                "aws_access_key",
                "aws_secret_key",
                "stripe_key",
                "github_token",
                "google_api_key",
                "slack_token",
                "private_key",
                "password"
            ]
        );
        assert_eq!(
            serde_json::to_value(SensitiveKind::UsSsn).unwrap(),
            json!("us_ssn")
        );
        let mut set = SensitiveKinds::empty();
        set.insert(SensitiveKind::Password);
        set.insert(SensitiveKind::Email);
        assert_eq!(
            serde_json::to_value(set).unwrap(),
            json!(["email", "password"])
        );
        assert!(SensitiveKind::Jwt.is_secret() && !SensitiveKind::Iban.is_secret());
        let f = Finding {
            kind: SensitiveKind::Email,
            location: Location::Query("email".into()),
        };
        assert_eq!(
            serde_json::to_value(f).unwrap(),
            json!({"kind": "email", "location": {"in": "query", "name": "email"}})
        );
    }

    #[test]
    fn emails() {
        for t in [
            "alice@example.com",
            "mail me: Bob.Smith+tag@mail.example.co.uk.",
            "<a href=\"mailto:x_y@sub.example.org\">",
            "\"email\":\"carol-99@example.io\"",
        ] {
            only(t, SensitiveKind::Email);
        }
    }

    #[test]
    fn email_lookalikes() {
        for t in [
            "/static/logo@2x.png",
            "icon@3x.webp",
            "npm i @scope/pkg@1.2.3",
            "user@localhost",
            "@handle and @@@@",
            "a@b",
            "git@1.2.3.4",
            "foo@bar.js",
        ] {
            none(t);
        }
    }

    #[test]
    fn card_numbers() {
        for t in [
            "4111111111111111",
            "card 4111 1111 1111 1111 exp 12/30",
            "5555-5555-5555-4444",
            "2223003122003222",
            "378282246310005",
            "3782 822463 10005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "6200000000000005",
            "4222222222222",
            "[\"4000056655665556\"]",
        ] {
            only(t, SensitiveKind::CardNumber);
        }
    }

    #[test]
    fn card_lookalikes() {
        for t in [
            "4111111111111112",              // Luhn-invalid
            "1234567812345670",              // Luhn-valid, no issuer
            "order 9000000000000008",        // Luhn-valid, no issuer
            "1700000000000",                 // ms timestamp
            "1700000000000000",              // µs timestamp
            "411111111111111111111",         // too long
            "4111 1111 1111 1111 1111 1111", // too long when grouped
            "41111 11111 11111 1",           // odd grouping
            "0.4111111111111111",            // a decimal
            "4111111111111111.5",
            "x4111111111111111",
            "4111111111111111abc",
            "37828224631000",      // Amex prefix, wrong length
            "5555555555554444555", // Mastercard prefix, wrong length
        ] {
            none(t);
        }
    }

    #[test]
    fn numbers_in_a_space_separated_list_are_each_checked() {
        assert_eq!(
            kinds("4111111111111111 123-45-6789 x"),
            [SensitiveKind::CardNumber, SensitiveKind::UsSsn]
        );
        only("ids: 17 4111111111111111", SensitiveKind::CardNumber);
        none("17 18 19 20 21 22 23 24 25 26 27");
    }

    #[test]
    fn us_ssns() {
        only("ssn: 123-45-6789", SensitiveKind::UsSsn);
        only("(772-01-0001)", SensitiveKind::UsSsn);
        for t in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "078-05-1120",
            "123456789",
            "1-123-45-6789",
            "123-45-6789-1",
            "2024-01-05",
            "12-345-6789",
        ] {
            none(t);
        }
    }

    #[test]
    fn phone_numbers() {
        for t in [
            "+14155552671",
            "call +44 20 7946 0958 now",
            "+1 (415) 555-2671",
            "+49 (0)30 1234567",
            "(415) 555-2671",
            "(415)555-2671",
            "415-555-2671",
            "415.555.2671",
            "1-415-555-2671",
        ] {
            only(t, SensitiveKind::Phone);
        }
    }

    #[test]
    fn phone_lookalikes() {
        for t in [
            "4155552671",
            "1234567890",
            "2024-01-05",
            "2024-01-05T10:20:30+02:00",
            "10.0.0.1",
            "192.168.100.200",
            "version 1.2.3",
            "v415.555.2671",
            "12:30:45",
            "+1234567",
            "+0123456789",
            "1e+10",
            "+2024-01-05",
            "012-555-2671",
            "415-155-2671",
            "911-555-2671",
            "(015) 555-2671",
            "415 555 2671",
            "+14155552671234567",
        ] {
            none(t);
        }
    }

    #[test]
    fn ibans() {
        for t in [
            "DE89370400440532013000",
            "iban: GB82WEST12345698765432.",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
            "BE68539007547034",
            "CH9300762011623852957",
            "ES9121000418450200051332",
            "IT60X0542811101000000123456",
            "NO9386011117947",
            "DE89 3704 0044 0532 0130 00",
            "PL61 1090 1014 0000 0712 1981 2874 is mine",
        ] {
            only(t, SensitiveKind::Iban);
        }
    }

    #[test]
    fn iban_lookalikes() {
        for t in [
            "DE89370400440532013001",   // bad check digits
            "DE8937040044053201300",    // wrong length for DE
            "DE893704004405320130001",  // wrong length for DE
            "ZZ89370400440532013000",   // unknown country
            "de89370400440532013000",   // not capitals
            "DE89 37040044 0532013000", // odd grouping
            "XDE89370400440532013000",
            "DE89370400440532013000X",
        ] {
            none(t);
        }
    }

    fn b64url(s: &str) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |a, c| a << 8 | u32::from(*c)) << (8 * (3 - chunk.len()));
            for k in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn jwts() {
        let t = format!(
            "{}.{}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            b64url(r#"{"alg":"HS256","typ":"JWT"}"#),
            b64url(r#"{"sub":"1234567890","iat":1516239022}"#)
        );
        only(&t, SensitiveKind::Jwt);
        only(
            &format!("Authorization: Bearer {t}\r\n"),
            SensitiveKind::Jwt,
        );
        only(&format!("token={t}&x=1"), SensitiveKind::Jwt);
        only(&format!("the token is {t}."), SensitiveKind::Jwt);
        let unsigned = format!("{}.{}.", b64url(r#"{"alg":"none"}"#), b64url(r#"{"a":1}"#));
        only(&unsigned, SensitiveKind::Jwt);
    }

    #[test]
    fn jwt_lookalikes() {
        let no_alg = format!(
            "{}.{}.sig",
            b64url(r#"{"typ":"JWT"}"#),
            b64url(r#"{"a":1}"#)
        );
        let not_json = format!("{}.{}.sig", b64url("{not json"), b64url(r#"{"a":1}"#));
        let two_parts = format!("{}.{}", b64url(r#"{"alg":"HS256"}"#), b64url(r#"{"a":1}"#));
        let payload_not_json = format!("{}.bm90anNvbg.sig", b64url(r#"{"alg":"HS256"}"#));
        for t in [
            no_alg.as_str(),
            not_json.as_str(),
            two_parts.as_str(),
            payload_not_json.as_str(),
            "eyJhbGciOiJIUzI1NiJ9",
            "dGhpcyBpcyBqdXN0IHJhbmRvbSBiYXNlNjQ.dGV4dA.c2ln",
            "eyJ.eyJ.eyJ.eyJ.eyJ.eyJ.eyJ",
            "a.b.c",
        ] {
            none(t);
        }
    }

    #[test]
    fn vendor_keys() {
        only("AKIAIOSFODNN7EXAMPLE", SensitiveKind::AwsAccessKey);
        only("key=ASIAY34FZKBOKMUTVV7A&x", SensitiveKind::AwsAccessKey);
        only(
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            SensitiveKind::AwsSecretKey,
        );
        only(
            r#"{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#,
            SensitiveKind::AwsSecretKey,
        );
        only("sk_live_4eC39HqLyjWDarjtT1zdp7dc", SensitiveKind::StripeKey);
        only(
            "\"rk_test_51H8x9ZLkdIwHu7ixAbCdEfGh\"",
            SensitiveKind::StripeKey,
        );
        only(
            "whsec_5f8a9b2c3d4e5f6a7b8c9d0e1f2a3b4c",
            SensitiveKind::StripeKey,
        );
        only(
            "token ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            SensitiveKind::GithubToken,
        );
        only(
            &format!(
                "github_pat_11ABCDEFG0123456789abc_{}",
                "x1Y2".repeat(14) + "abc"
            ),
            SensitiveKind::GithubToken,
        );
        only(
            "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
            SensitiveKind::GoogleApiKey,
        );
        only(
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            SensitiveKind::SlackToken,
        );
        only(
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            SensitiveKind::SlackToken,
        );
    }

    #[test]
    fn vendor_key_lookalikes() {
        for t in [
            "AKIAIOSFODNN7EXAMPL",   // 15 after the prefix
            "AKIAIOSFODNN7EXAMPLEX", // 17
            "AKIAIOSFODNN7EXAMPLe",  // lower case
            "XAKIAIOSFODNN7EXAMPLE",
            "secret = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", // no aws context
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE",
            "use sk_live_ keys only on the server",
            "sk_live_example",
            "sk_live_abcdefghijklmnopqrstuvwx", // no digit
            "disk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "ghp_short123",
            "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8X",
            "ghx_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQ",
            "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQeX",
            "xoxb-not-a-token",
            "xoxq-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "hooks.slack.com/services/",
            "https://hooks.slack.com/services/T0/B0/X",
        ] {
            none(t);
        }
    }

    const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\n\
        MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n\
        VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n\
        -----END RSA PRIVATE KEY-----\n";

    #[test]
    fn private_keys() {
        only(PEM, SensitiveKind::PrivateKey);
        only(&PEM.replace("RSA ", ""), SensitiveKind::PrivateKey);
        only(&PEM.replace("RSA", "OPENSSH"), SensitiveKind::PrivateKey);
        // As it appears inside a raw JSON string.
        only(
            &format!("{{\"key\":\"{}\"}}", PEM.replace('\n', "\\n")),
            SensitiveKind::PrivateKey,
        );
        let v: Value = json!({ "tls": { "key": PEM } });
        assert_eq!(json_findings(&v), ["private_key@tls.key"]);
    }

    #[test]
    fn private_key_lookalikes() {
        none(&PEM.replace("PRIVATE", "PUBLIC"));
        none("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ\n-----END CERTIFICATE-----");
        none("docs: paste your -----BEGIN RSA PRIVATE KEY----- block here");
        none("-----BEGIN RSA PRIVATE KEY");
    }

    #[test]
    fn everyday_values_are_quiet() {
        for t in [
            "123e4567-e89b-12d3-a456-426614174000",
            "507f1f77bcf86cd799439011",
            "d41d8cd98f00b204e9800998ecf8427e",
            "2024-01-05T10:20:30.123456Z",
            "Mon, 01 Jan 2024 10:20:30 GMT",
            "1.2.3-beta.4+build.5",
            "10.0.0.1:8080",
            "::ffff:192.168.1.1",
            "price 1234.56 qty 3",
            "id=1234567890123456789",
            "dGhpcyBpcyBqdXN0IHJhbmRvbSBiYXNlNjQgdGV4dCB3aXRoIG5vdGhpbmcgaW4gaXQ=",
            "The quick brown fox jumps over the lazy dog.",
            "GET /api/v1/users/42/orders?page=2 HTTP/1.1",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
            "order-2023-17 item_9f2 SKU-4411-22",
        ] {
            none(t);
        }
    }

    #[test]
    fn each_kind_is_reported_once_per_text() {
        let t = "a@example.com b@example.com 4111111111111111 5555555555554444 a@example.com";
        assert_eq!(kinds(t), [SensitiveKind::Email, SensitiveKind::CardNumber]);
    }

    #[test]
    fn json_paths_and_field_rules() {
        let doc = json!({
            "user": {
                "email": "alice@example.com",
                "ssn": "123456789",
                "phone": "4155552671",
                "mobileNumber": 14155552671u64,
                "password": "hunter2",
                "cards": [{"number": "4111111111111111"}, {"number": 5555555555554444u64}],
                "aws": {"secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
                "taxId": {"value": "123-45-6789"}
            }
        });
        assert_eq!(
            json_findings(&doc),
            [
                "aws_secret_key@user.aws.secret_access_key",
                "card_number@user.cards[].number",
                "email@user.email",
                "password@user.password",
                "phone@user.mobileNumber",
                "phone@user.phone",
                "us_ssn@user.ssn",
                "us_ssn@user.taxId.value",
            ]
        );
    }

    #[test]
    fn json_field_rule_lookalikes() {
        let doc = json!({
            "order_id": "123456789",
            "count": 4155552671u64,
            "password_changed_at": "2024-01-05T10:20:30Z",
            "passwordSet": "true",
            "password_policy": {"min_length": 12},
            "secretName": "my-tls-secret",
            "password": "********",
            "pwd": "[REDACTED]",
            "ssn": "000-12-3456",
            "ssnLast4": "6789",
            "className": "123456789",
            "phone_verified": true,
            "telephone": "2024-01-05",
            "mobile": "0000000",
            "secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY_not_40"
        });
        // `secret` alone is a password field; that one finding is expected.
        assert_eq!(json_findings(&doc), ["password@secret"]);
    }

    #[test]
    fn json_keys_that_are_data_do_not_leak_into_paths() {
        let doc = json!({
            "users": {
                "alice@example.com": {"role": "admin"},
                "123e4567-e89b-12d3-a456-426614174000": {"email": "bob@example.com"}
            }
        });
        assert_eq!(
            json_findings(&doc),
            ["email@users.*", "email@users.*.email"]
        );
    }

    #[test]
    fn json_scalar_document_and_nested_arrays() {
        assert_eq!(json_findings(&json!("alice@example.com")), ["email@"]);
        let doc = json!([[{"ssn": "123-45-6789"}]]);
        assert_eq!(json_findings(&doc), ["us_ssn@[][].ssn"]);
    }

    #[test]
    fn json_depth_values_findings_and_bytes_are_bounded() {
        let mut deep = json!("alice@example.com");
        for _ in 0..100 {
            deep = json!({ "a": deep });
        }
        let s = Scanner::new(SensitiveConfig {
            max_json_depth: 10,
            ..SensitiveConfig::default()
        });
        let mut n = 0;
        let limits = s.scan_json(&deep, &mut |_, _| n += 1);
        assert!(limits.depth && n == 0);

        let many: Vec<Value> = (0..1000)
            .map(|i| json!(format!("u{i}@example.com")))
            .collect();
        let s = Scanner::new(SensitiveConfig {
            max_json_values: 100,
            ..SensitiveConfig::default()
        });
        let limits = s.scan_json(&json!({ "emails": many }), &mut |_, _| {});
        assert!(limits.values && !limits.depth);

        let wide: serde_json::Map<String, Value> = (0..200)
            .map(|i| (format!("field{i}"), json!("alice@example.com")))
            .collect();
        let s = Scanner::new(SensitiveConfig {
            max_findings: 5,
            ..SensitiveConfig::default()
        });
        let mut n = 0;
        let limits = s.scan_json(&Value::Object(wide), &mut |_, _| n += 1);
        assert!(limits.findings);
        assert_eq!(n, 5);

        let s = Scanner::new(SensitiveConfig {
            max_scan_bytes: 10,
            ..SensitiveConfig::default()
        });
        let mut v = Vec::new();
        let limits = s.scan_text(b"0123456789 alice@example.com", &mut |k| v.push(k));
        assert!(limits.bytes && v.is_empty());
        assert!(!scan_text(b"alice@example.com", &mut |_| {}).any());
    }

    #[test]
    fn long_json_paths_are_cut() {
        let mut doc = json!({ "password": "hunter2" });
        for _ in 0..20 {
            doc = json!({ "someRatherLongFieldName": doc });
        }
        let mut paths = Vec::new();
        scan_json(&doc, &mut |_, p| paths.push(p.to_owned()));
        assert_eq!(paths.len(), 1);
        assert!(paths[0].ends_with('…') && paths[0].len() <= 128 + '…'.len_utf8());
    }

    #[test]
    fn query_strings_and_forms() {
        let s = Scanner::default();
        let mut v = Vec::new();
        s.scan_urlencoded(
            b"email=alice%40example.com&password=hunter2&ssn=123456789&q=4111+1111+1111+1111&page=2&bob%40example.com",
            &mut |k, n| v.push(format!("{k}@{n}")),
        );
        v.sort();
        assert_eq!(
            v,
            [
                "card_number@q",
                "email@*",
                "email@email",
                "password@password",
                "us_ssn@ssn"
            ]
        );
        let mut v = Vec::new();
        s.scan_urlencoded(
            b"id=123456789&ts=1700000000000&v=1.2.3&date=2024-01-05",
            &mut |k, n| v.push(format!("{k}@{n}")),
        );
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn paths_headers_and_fields() {
        let s = Scanner::default();
        let mut v = Vec::new();
        s.scan_path(
            "/users/alice%40example.com/cards/4111111111111111",
            &mut |k| v.push(k),
        );
        assert_eq!(v, [SensitiveKind::Email, SensitiveKind::CardNumber]);
        let mut v = Vec::new();
        s.scan_path("/v1/orders/123456789/items/2024-01-05", &mut |k| v.push(k));
        assert!(v.is_empty());

        let mut v = Vec::new();
        let headers: [(&str, &[u8]); 4] = [
            ("X-User-Email", b"alice@example.com"),
            (
                "Authorization",
                b"Bearer ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            ),
            ("Cookie", b"email=bob@example.com"),
            ("X-Debug-Password", b"letmein"),
        ];
        s.scan_headers(headers, &mut |k, n| v.push(format!("{k}@{n}")));
        assert_eq!(v, ["email@X-User-Email", "password@X-Debug-Password"]);

        let mut v = Vec::new();
        s.scan_field("customer_ssn", b"123 45 6789", &mut |k| v.push(k));
        assert_eq!(v, [SensitiveKind::UsSsn]);
        let mut v = Vec::new();
        s.scan_field("order_number", b"123456789", &mut |k| v.push(k));
        assert!(v.is_empty());
    }

    #[test]
    fn field_words_split_camel_case_and_separators() {
        let mut w = Vec::new();
        for_each_word(b"userSSN_last-4 x", |x| {
            w.push(String::from_utf8_lossy(x).into_owned())
        });
        assert_eq!(w, ["user", "SSN", "last", "4", "x"]);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pieces: &[&[u8]] = &[
            b"@",
            b"+",
            b"(",
            b")",
            b"-",
            b".",
            b" ",
            b"_",
            b"4",
            b"1",
            b"9",
            b"0",
            b"A",
            b"Z",
            b"a",
            b"x",
            b"eyJ",
            b"AKIA",
            b"AIza",
            b"sk_live_",
            b"ghp_",
            b"github_pat_",
            b"xoxb-",
            b"hooks.slack.com/services/",
            b"-----BEGIN ",
            b"PRIVATE KEY-----",
            b"DE89",
            b"\xff",
            b"\x00",
            b"%",
            b"%4",
            b"=",
            b":",
            b"\"",
            b"secret_access_key",
            b"/",
        ];
        let scanner = Scanner::default();
        for round in 0..4000 {
            let mut v = Vec::new();
            let parts = rnd() % 40;
            for _ in 0..parts {
                if round % 2 == 0 {
                    v.extend_from_slice(pieces[(rnd() % pieces.len() as u64) as usize]);
                } else {
                    v.push(rnd() as u8);
                }
            }
            scan_text(&v, &mut |_| {});
            scanner.scan_urlencoded(&v, &mut |_, _| {});
            scanner.scan_field("password", &v, &mut |_| {});
            scanner.scan_field("ssn", &v, &mut |_| {});
            scanner.scan_field("phone", &v, &mut |_| {});
            let s = String::from_utf8_lossy(&v).into_owned();
            scanner.scan_path(&s, &mut |_| {});
            scan_json(
                &json!({ s.clone(): [s.clone(), {"password": s}] }),
                &mut |_, _| {},
            );
        }
    }

    #[test]
    fn repeated_triggers_stay_linear() {
        // Each of these once made a detector rescan the rest of the input from every repeat
        // (`xoxb-xoxb-…` took seconds for 64 KiB).
        let pieces: &[&[u8]] = &[
            b"xoxb-",
            b"AIza-",
            b"eyJ-",
            b"eyJ.",
            b"eyJ_",
            b"-eyJ",
            b"AKIA-",
            b"@a",
            b"a@",
            b"4111 ",
            b"1-",
            b"+1 ",
            b"(",
            b"-----BEGIN ",
            b"aws_secret_access_key=/",
            b"DE89 ",
            b"hooks.slack.com/services/T",
            b"ghp_-",
            b"sk_live_-",
            b"\xff",
            b"%4",
        ];
        for p in pieces {
            let big = p.repeat(64 * 1024 / p.len());
            let t = std::time::Instant::now();
            scan_text(&big, &mut |_| {});
            let took = t.elapsed();
            assert!(
                took < std::time::Duration::from_secs(1),
                "{:?}: {took:?}",
                String::from_utf8_lossy(p)
            );
        }
    }
}
