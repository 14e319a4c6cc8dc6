//! Query, form and multipart parameters: names, how often each is sent, what kind its values
//! are. Values themselves are never stored.
//!
//! - [`form_pairs`] splits a query string or an `application/x-www-form-urlencoded` body into
//!   percent-decoded [`FormPair`]s (`+` is a space, as servers decode both).
//! - [`multipart_parts`] walks a `multipart/form-data` body (possibly a truncated prefix) and
//!   yields its [`Part`]s: field name, whether it is a file, its content type.
//! - [`ContentType`] reads a `Content-Type` value: the lowercase media type and its
//!   `boundary` / `charset` parameters.
//! - [`ParamSet`] merges the parameters of every call to an endpoint (one set for the query,
//!   one for a form body): per name how many calls had it, how many sent it several times or
//!   without `=`, the [`ValueKind`]s of its values, file parts and their media types. It is
//!   bounded by [`ParamConfig`] (every bound has a counter in [`ParamStats`]), serialises as a
//!   compact summary, and exports OpenAPI 3.1 `parameters` ([`ParamSet::to_openapi_parameters`])
//!   or a request-body schema ([`ParamSet::to_body_schema`]). Its lossless state, to save
//!   and reload so that counting goes on after a restart, is separate from the summary:
//!   [`ParamSet::save`] and [`ParamSet::load`] (format and validation in [`state`],
//!   conventions shared with [`crate::schema::state`]).
//!
//! Array-style names keep their brackets, with indexes folded (`ids[0]`, `ids[1]` → `ids[]`);
//! names that are themselves identifiers (`?1699999999`, `?<token>`) are data, not names, and
//! are only counted by kind.
//!
//! ```
//! use apiscope_inventory::params::{ContentType, ParamConfig, ParamSet, ParamStats};
//! use serde_json::json;
//!
//! let cfg = ParamConfig::default();
//! let mut stats = ParamStats::default();
//! let mut query = ParamSet::new();
//! query.observe_query("id=42&tag=a&tag=b&verbose", &cfg, &mut stats);
//! query.observe_query("id=7&since=2024-01-05", &cfg, &mut stats);
//! let params = query.to_openapi_parameters("query");
//! assert_eq!(
//!     params[0],
//!     json!({"name": "id", "in": "query", "required": true, "schema": {"type": "integer"}})
//! );
//! assert_eq!(params[1]["schema"], json!({"type": "string", "format": "date"}));
//! assert_eq!(params[2]["schema"], json!({"type": "array", "items": {"type": "string"}}));
//!
//! let ct = ContentType::parse("Multipart/Form-Data; boundary=\"XyZ\"");
//! assert_eq!(ct.media_type(), "multipart/form-data");
//! let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"a.png\"\r\n\
//!              Content-Type: image/png\r\n\r\n\x89PNG\r\n--XyZ--\r\n";
//! let mut form = ParamSet::new();
//! form.observe_multipart(body, &ct.boundary().unwrap(), &cfg, &mut stats);
//! assert_eq!(
//!     form.to_body_schema()["properties"]["avatar"],
//!     json!({"type": "string", "contentMediaType": "image/png"})
//! );
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::schema::KindCounts;
use crate::value::{classify, ValueKind};

pub mod state;

/// Bounds of parameter learning. Every bound has a counter in [`ParamStats`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParamConfig {
    /// Distinct names remembered per [`ParamSet`]; later new names are dropped. Counter
    /// `names_limit`.
    pub max_names_per_set: usize,
    /// Longer names (after decoding) are dropped. Counter `names_too_long`.
    pub max_name_bytes: usize,
    /// Pairs read from one query string or form body; the rest are ignored. Counter
    /// `pairs_limit`.
    pub max_pairs_per_input: usize,
    /// Parts read from one multipart body; the rest are ignored. Counter `parts_limit`.
    pub max_parts_per_body: usize,
    /// Distinct media types remembered per file field. Counter `content_types_limit`.
    pub max_content_types_per_param: usize,
}

impl Default for ParamConfig {
    fn default() -> Self {
        ParamConfig {
            max_names_per_set: 100,
            max_name_bytes: 128,
            max_pairs_per_input: 256,
            max_parts_per_body: 64,
            max_content_types_per_param: 8,
        }
    }
}

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident, )*) => {
        /// Counters of parameter learning, all monotonic. Add workers together with
        /// [`ParamStats::merge`]; list them with [`ParamStats::counters`].
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct ParamStats {
            $( $(#[doc = $doc])* pub $name: u64, )*
        }

        impl ParamStats {
            /// Every counter as `(name, value)`, in declaration order.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name), )*]
            }

            /// Adds `other` into `self`.
            pub fn merge(&mut self, other: &ParamStats) {
                $( self.$name = self.$name.saturating_add(other.$name); )*
            }
        }
    };
}

counters! {
    /// Query strings observed (empty ones included).
    query_strings,
    /// Form bodies observed.
    form_bodies,
    /// Multipart bodies observed.
    multipart_bodies,
    /// Name/value pairs and parts read.
    pairs,
    /// Pairs with an empty name (`=x`).
    empty_names,
    /// Names that were identifiers or tokens, counted by kind and not kept.
    identifier_names,
    /// Names dropped for exceeding `max_name_bytes`.
    names_too_long,
    /// New names dropped because the set held `max_names_per_set`.
    names_limit,
    /// Inputs with more than `max_pairs_per_input` pairs.
    pairs_limit,
    /// Multipart bodies with more than `max_parts_per_body` parts.
    parts_limit,
    /// File media types not remembered beyond `max_content_types_per_param`.
    content_types_limit,
    /// Form bodies whose last pair was cut (only its name, when complete, was kept).
    forms_truncated,
    /// Multipart bodies that ended before their closing delimiter.
    multipart_truncated,
    /// Multipart bodies without a first delimiter, or with an unreadable part head.
    multipart_malformed,
    /// Multipart parts without a `name`.
    parts_without_name,
}

/// Percent-decodes `input`; with `plus_as_space`, `+` is a space. A `%` not followed by two
/// hex digits is kept as is; bytes that are not UTF-8 after decoding become U+FFFD. Borrows
/// when nothing needs decoding.
pub fn percent_decode(input: &[u8], plus_as_space: bool) -> Cow<'_, str> {
    if !input
        .iter()
        .any(|&c| c == b'%' || (plus_as_space && c == b'+'))
    {
        return String::from_utf8_lossy(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => {
                let digit = |j: usize| input.get(j).copied().and_then(hex);
                if let (Some(h), Some(l)) = (digit(i + 1), digit(i + 2)) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_as_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// One `name=value` of a query string or form body, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPair<'a> {
    pub name: Cow<'a, str>,
    /// `None` for a name without `=` (`?verbose`); `Some("")` for `?verbose=`.
    pub value: Option<Cow<'a, str>>,
}

/// Iterator over the pairs of a query string or form body; see [`form_pairs`].
#[derive(Debug, Clone)]
pub struct FormPairs<'a> {
    rest: &'a [u8],
}

/// The pairs of a query string (without the `?`) or an `application/x-www-form-urlencoded`
/// body, split on `&`, percent-decoded with `+` as a space (as WHATWG `URLSearchParams`, Go,
/// Python and PHP decode queries). Empty segments (`a=1&&b=2`) are skipped; a segment
/// without `=` is a name without value.
pub fn form_pairs(input: &[u8]) -> FormPairs<'_> {
    FormPairs { rest: input }
}

impl<'a> Iterator for FormPairs<'a> {
    type Item = FormPair<'a>;

    fn next(&mut self) -> Option<FormPair<'a>> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (seg, rest) = match self.rest.iter().position(|&c| c == b'&') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &self.rest[self.rest.len()..]),
            };
            self.rest = rest;
            if seg.is_empty() {
                continue;
            }
            return Some(match seg.iter().position(|&c| c == b'=') {
                Some(i) => FormPair {
                    name: percent_decode(&seg[..i], true),
                    value: Some(percent_decode(&seg[i + 1..], true)),
                },
                None => FormPair {
                    name: percent_decode(seg, true),
                    value: None,
                },
            });
        }
    }
}

/// A parsed `Content-Type` (or any `type/subtype; name=value` header value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType<'a> {
    media_type: Cow<'a, str>,
    params: &'a str,
}

impl<'a> ContentType<'a> {
    /// Parses a header value; never fails (a missing media type is `""`).
    pub fn parse(value: &'a str) -> ContentType<'a> {
        let (essence, params) = value.split_once(';').unwrap_or((value, ""));
        ContentType {
            media_type: lowercase(essence.trim()),
            params,
        }
    }

    /// Parses a header value given as bytes; `None` when it is not UTF-8.
    pub fn from_bytes(value: &'a [u8]) -> Option<ContentType<'a>> {
        std::str::from_utf8(value).ok().map(ContentType::parse)
    }

    /// The media type, lowercase, without parameters (`application/json`).
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// A parameter by (case-insensitive) name, unquoted.
    pub fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        header_params(self.params)
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The `boundary` parameter of a multipart type.
    pub fn boundary(&self) -> Option<Cow<'a, str>> {
        self.param("boundary").filter(|b| !b.is_empty())
    }

    /// The `charset` parameter, as sent.
    pub fn charset(&self) -> Option<Cow<'a, str>> {
        self.param("charset")
    }

    /// `application/json`, `text/json` or any `+json` type.
    pub fn is_json(&self) -> bool {
        let m = self.media_type();
        m == "application/json"
            || m == "text/json"
            || m == "application/x-json"
            || (m.contains('/') && m.ends_with("+json"))
    }

    /// `application/x-www-form-urlencoded`.
    pub fn is_form(&self) -> bool {
        self.media_type() == "application/x-www-form-urlencoded"
    }

    /// `multipart/form-data`.
    pub fn is_multipart_form(&self) -> bool {
        self.media_type() == "multipart/form-data"
    }

    /// `application/graphql`: a raw GraphQL document.
    pub fn is_graphql(&self) -> bool {
        self.media_type() == "application/graphql"
    }
}

/// The media type of a `Content-Type` value, lowercase, without parameters.
pub fn media_type(value: &str) -> Cow<'_, str> {
    ContentType::parse(value).media_type
}

fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|c| c.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// The `; name=value` parameters of a header value (quoted strings unescaped). A parameter
/// without `=` has an empty value.
fn header_params(s: &str) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b';') {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b';' {
            i += 1;
        }
        let name = s[start..i].trim();
        if i >= b.len() || b[i] == b';' {
            return Some((name, Cow::Borrowed("")));
        }
        i += 1; // '='
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let start = i;
            let mut escaped = false;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    escaped = true;
                    i += 1;
                }
                i += 1;
            }
            let raw = &s[start..i.min(b.len())];
            i += 1; // closing quote (or past the end)
            let value = if escaped {
                let mut out = String::with_capacity(raw.len());
                let mut chars = raw.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        if let Some(n) = chars.next() {
                            out.push(n);
                        }
                    } else {
                        out.push(c);
                    }
                }
                Cow::Owned(out)
            } else {
                Cow::Borrowed(raw)
            };
            Some((name, value))
        } else {
            let start = i;
            while i < b.len() && b[i] != b';' {
                i += 1;
            }
            Some((name, Cow::Borrowed(s[start..i].trim())))
        }
    })
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The `name` of its `Content-Disposition`.
    pub name: Option<Cow<'a, str>>,
    /// The disposition has a `filename` (or `filename*`): an uploaded file.
    pub is_file: bool,
    /// Its `Content-Type` header value, as sent.
    pub content_type: Option<&'a str>,
    /// Its content (up to the end of the captured prefix when not complete).
    pub body: &'a [u8],
    /// The delimiter after the content was seen.
    pub complete: bool,
}

/// How a multipart walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipartEnd {
    /// The closing delimiter `--boundary--` was seen.
    Closed,
    /// The data ended first (a truncated prefix, or a body without closing delimiter).
    Truncated,
    /// No first delimiter, or a part head that could not be read.
    Malformed,
}

/// Part heads longer than this are malformed.
const MAX_PART_HEAD_BYTES: usize = 8192;

/// Iterator over the parts of a multipart body; see [`multipart_parts`].
#[derive(Debug, Clone)]
pub struct Multipart<'a> {
    body: &'a [u8],
    boundary: &'a [u8],
    /// Start of the next part's head; `None` before the first delimiter was found.
    pos: Option<usize>,
    end: Option<MultipartEnd>,
}

/// The parts of a `multipart/form-data` body with the given boundary (from
/// [`ContentType::boundary`]). Reads what is complete in a truncated prefix: a part whose
/// head is complete is yielded with `complete: false` and the content captured so far; a
/// part whose head is cut is not yielded. A preamble before the first delimiter is skipped;
/// CRLF and bare LF line ends are both accepted. [`Multipart::end`] tells how it ended.
pub fn multipart_parts<'a>(body: &'a [u8], boundary: &'a str) -> Multipart<'a> {
    Multipart {
        body,
        boundary: boundary.as_bytes(),
        pos: None,
        end: (boundary.is_empty() || boundary.len() > 200).then_some(MultipartEnd::Malformed),
    }
}

/// What follows a candidate delimiter at `after` (just past the boundary text).
enum AfterDelimiter {
    /// `--`: the closing delimiter.
    Close,
    /// Optional padding, then a line end; the next part's head starts here.
    Next(usize),
    /// The data ends here.
    End,
    /// Not a delimiter (the boundary text continues).
    No,
}

impl<'a> Multipart<'a> {
    /// How the walk ended; `None` while parts remain to be read.
    pub fn end(&self) -> Option<MultipartEnd> {
        self.end
    }

    fn after_delimiter(&self, after: usize) -> AfterDelimiter {
        let b = self.body;
        if b.len() >= after + 2 && &b[after..after + 2] == b"--" {
            return AfterDelimiter::Close;
        }
        let mut i = after;
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        match b.get(i) {
            None => AfterDelimiter::End,
            Some(b'-') if i + 1 == b.len() && i == after => AfterDelimiter::End,
            Some(b'\n') => AfterDelimiter::Next(i + 1),
            Some(b'\r') => match b.get(i + 1) {
                None => AfterDelimiter::End,
                Some(b'\n') => AfterDelimiter::Next(i + 2),
                Some(_) => AfterDelimiter::No,
            },
            Some(_) => AfterDelimiter::No,
        }
    }

    /// The next delimiter at or after `from`: `(content_end, after_boundary)`, where a line
    /// starts with `--boundary` (or the body does, when `at_start`).
    fn find_delimiter(&self, from: usize, at_start: bool) -> Option<(usize, usize)> {
        let b = self.body;
        let n = self.boundary;
        let mut i = from;
        while let Some(p) = find(&b[i..], n) {
            let j = i + p; // boundary text starts here
            i = j + 1;
            if j < from + 2 || &b[j - 2..j] != b"--" {
                continue;
            }
            let dash = j - 2;
            let line_start = if dash == 0 && at_start {
                Some(0)
            } else if dash > 0 && b[dash - 1] == b'\n' {
                Some(if dash >= 2 && b[dash - 2] == b'\r' {
                    dash - 2
                } else {
                    dash - 1
                })
            } else {
                None
            };
            if let Some(content_end) = line_start {
                if !matches!(self.after_delimiter(j + n.len()), AfterDelimiter::No) {
                    return Some((content_end, j + n.len()));
                }
            }
        }
        None
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let p = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&c| c == first)?;
        let at = i + p;
        if &hay[at + 1..at + needle.len()] == rest {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Reads a part head starting at `pos`: `(name, is_file, content_type, body_start)`, or
/// `Err(true)` when it is cut by the end of the data, `Err(false)` when malformed.
type Head<'a> = (Option<Cow<'a, str>>, bool, Option<&'a str>, usize);

fn part_head(b: &[u8], pos: usize) -> Result<Head<'_>, bool> {
    let mut name = None;
    let mut is_file = false;
    let mut content_type = None;
    let mut i = pos;
    loop {
        if i - pos > MAX_PART_HEAD_BYTES {
            return Err(false);
        }
        let Some(nl) = b[i..].iter().position(|&c| c == b'\n') else {
            return Err(true);
        };
        let line = &b[i..i + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        i += nl + 1;
        if line.is_empty() {
            return Ok((name, is_file, content_type, i));
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Err(false);
        };
        let (hname, value) = (&line[..colon], &line[colon + 1..]);
        if hname.eq_ignore_ascii_case(b"content-disposition") {
            match String::from_utf8_lossy(value) {
                Cow::Borrowed(v) => (name, is_file) = disposition(v),
                Cow::Owned(v) => {
                    let (n, f) = disposition(&v);
                    name = n.map(|n| Cow::Owned(n.into_owned()));
                    is_file = f;
                }
            }
        } else if hname.eq_ignore_ascii_case(b"content-type") {
            content_type = std::str::from_utf8(value).ok().map(str::trim);
        }
    }
}

/// `form-data; name="x"; filename="y"` → (name, has filename).
fn disposition(v: &str) -> (Option<Cow<'_, str>>, bool) {
    let params = v.split_once(';').map_or("", |(_, p)| p);
    let mut name = None;
    let mut is_file = false;
    for (n, value) in header_params(params) {
        if n.eq_ignore_ascii_case("name") {
            name = Some(value);
        } else if n.eq_ignore_ascii_case("filename") || n.eq_ignore_ascii_case("filename*") {
            is_file = true;
        }
    }
    (name, is_file)
}

impl<'a> Iterator for Multipart<'a> {
    type Item = Part<'a>;

    fn next(&mut self) -> Option<Part<'a>> {
        if self.end.is_some() {
            return None;
        }
        let pos = match self.pos {
            Some(p) => p,
            None => {
                let Some((_, after)) = self.find_delimiter(0, true) else {
                    self.end = Some(MultipartEnd::Malformed);
                    return None;
                };
                match self.after_delimiter(after) {
                    AfterDelimiter::Next(p) => p,
                    AfterDelimiter::Close => {
                        self.end = Some(MultipartEnd::Closed);
                        return None;
                    }
                    AfterDelimiter::End | AfterDelimiter::No => {
                        self.end = Some(MultipartEnd::Truncated);
                        return None;
                    }
                }
            }
        };
        let (name, is_file, content_type, start) = match part_head(self.body, pos) {
            Ok(h) => h,
            Err(cut) => {
                self.end = Some(if cut {
                    MultipartEnd::Truncated
                } else {
                    MultipartEnd::Malformed
                });
                return None;
            }
        };
        // The content's line end belongs to the delimiter, so search from just before the
        // content too: an empty part is followed at once by `--boundary`.
        let search_from = start.saturating_sub(2).max(pos);
        let mut part = Part {
            name,
            is_file,
            content_type,
            body: &self.body[start..],
            complete: false,
        };
        match self.find_delimiter(search_from, false) {
            Some((content_end, after)) => {
                part.body = &self.body[start..content_end.max(start)];
                match self.after_delimiter(after) {
                    AfterDelimiter::Close => {
                        part.complete = true;
                        self.end = Some(MultipartEnd::Closed);
                    }
                    AfterDelimiter::Next(p) => {
                        part.complete = true;
                        self.pos = Some(p);
                    }
                    // The data ends just after what may be the delimiter, or the start of
                    // a line of content that goes on: the content may be longer.
                    AfterDelimiter::End | AfterDelimiter::No => {
                        self.end = Some(MultipartEnd::Truncated);
                    }
                }
            }
            None => self.end = Some(MultipartEnd::Truncated),
        }
        Some(part)
    }
}

/// What one parameter has been seen with, over every call of an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Param {
    /// Calls (samples of the set) that had it.
    pub present: u64,
    /// Times it was sent in all.
    pub occurrences: u64,
    /// Calls that sent it more than once.
    #[serde(skip_serializing_if = "is_zero")]
    pub repeated: u64,
    /// Occurrences without `=`.
    #[serde(skip_serializing_if = "is_zero")]
    pub no_value: u64,
    /// Kinds of its values (form and text parts; files and cut values have none).
    #[serde(skip_serializing_if = "KindCounts::is_empty")]
    pub kinds: KindCounts,
    /// Multipart parts that were files.
    #[serde(skip_serializing_if = "is_zero")]
    pub files: u64,
    /// Media types of its file parts, with counts (bounded).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub content_types: BTreeMap<String, u64>,
    /// Values not classified because the body was cut inside them.
    #[serde(skip_serializing_if = "is_zero")]
    pub incomplete: u64,
    /// The sample that last touched this parameter, and occurrences in it.
    #[serde(skip)]
    last_sample: u64,
    #[serde(skip)]
    in_sample: u32,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What one occurrence of a parameter carried.
enum Seen<'x> {
    Value(ValueKind),
    NoValue,
    File(Option<&'x str>),
    Incomplete,
}

impl Param {
    /// True when sent as an array: an array-style name or several times in one call.
    pub fn is_array(&self, name: &str) -> bool {
        name.ends_with("[]") || self.repeated > 0
    }

    /// The JSON Schema of one value: from the kinds (empty values ignored; integer with
    /// number is number; anything else mixed is string), or a file.
    fn value_schema(&self) -> Value {
        if self.files > 0 && self.kinds.is_empty() {
            let ct = match self.content_types.len() {
                1 => self.content_types.keys().next().map_or("", String::as_str),
                _ => "application/octet-stream",
            };
            return json!({"type": "string", "contentMediaType": ct});
        }
        let mut ty: Option<&str> = None;
        for (k, _) in self.kinds.iter().filter(|&(k, _)| k != ValueKind::Empty) {
            let t = k.openapi().0;
            ty = Some(match ty {
                None => t,
                Some(prev) if prev == t => t,
                Some("integer" | "number") if matches!(t, "integer" | "number") => "number",
                Some(_) => "string",
            });
        }
        let ty = ty.unwrap_or("string");
        let mut m = Map::new();
        m.insert("type".into(), ty.into());
        if ty == "string" {
            if let Some(f) = self.kinds.format(true) {
                m.insert("format".into(), f.into());
            }
        }
        Value::Object(m)
    }

    fn schema(&self, name: &str) -> Value {
        let item = self.value_schema();
        if self.is_array(name) {
            json!({"type": "array", "items": item})
        } else {
            item
        }
    }

    fn add_from(&mut self, other: &Param, cfg: &ParamConfig, stats: &mut ParamStats) {
        self.present = self.present.saturating_add(other.present);
        self.occurrences = self.occurrences.saturating_add(other.occurrences);
        self.repeated = self.repeated.saturating_add(other.repeated);
        self.no_value = self.no_value.saturating_add(other.no_value);
        self.kinds.merge(&other.kinds);
        self.files = self.files.saturating_add(other.files);
        self.incomplete = self.incomplete.saturating_add(other.incomplete);
        for (ct, n) in &other.content_types {
            self.add_content_type(ct, *n, cfg, stats);
        }
    }

    fn add_content_type(&mut self, ct: &str, n: u64, cfg: &ParamConfig, stats: &mut ParamStats) {
        if let Some(c) = self.content_types.get_mut(ct) {
            *c = c.saturating_add(n);
        } else if self.content_types.len() < cfg.max_content_types_per_param {
            self.content_types.insert(ct.to_owned(), n);
        } else {
            stats.content_types_limit += 1;
        }
    }
}

/// The parameters of one place (an endpoint's query, or its form body), merged over calls.
///
/// Every call of the endpoint must be observed, also those without parameters (pass an empty
/// query): `required` means present in every sample.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ParamSet {
    /// Calls observed.
    samples: u64,
    /// Parameters by (decoded, index-folded) name.
    params: BTreeMap<String, Param>,
    /// Kinds of names that were identifiers (not kept).
    #[serde(skip_serializing_if = "KindCounts::is_empty")]
    identifier_names: KindCounts,
    /// New names dropped by a bound (`max_names_per_set`, `max_name_bytes`).
    #[serde(skip_serializing_if = "is_zero")]
    names_dropped: u64,
    /// Samples cut by a bound on pairs or parts.
    #[serde(skip_serializing_if = "is_zero")]
    truncated_samples: u64,
}

/// Folds numeric indexes (`a[0][b]` → `a[][b]`). Borrows when there are none.
fn fold_indexes(name: &str) -> Cow<'_, str> {
    let b = name.as_bytes();
    let has_index = b.windows(2).enumerate().any(|(i, w)| {
        w[0] == b'[' && w[1].is_ascii_digit() && {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            b.get(i + 1 + digits) == Some(&b']')
        }
    });
    if !has_index {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'[' {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits > 0 && b.get(i + 1 + digits) == Some(&b']') {
                out.push_str("[]");
                i += digits + 2;
                continue;
            }
        }
        let ch_len = name[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&name[i..i + ch_len]);
        i += ch_len;
    }
    Cow::Owned(out)
}

impl ParamSet {
    /// An empty set.
    pub fn new() -> ParamSet {
        ParamSet::default()
    }

    /// Calls observed.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The parameters, sorted by name.
    pub fn params(&self) -> impl Iterator<Item = (&str, &Param)> + '_ {
        self.params.iter().map(|(k, p)| (k.as_str(), p))
    }

    /// One parameter by name.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.get(name)
    }

    /// True when `name` was in every sample.
    pub fn is_required(&self, name: &str) -> bool {
        self.samples > 0 && self.get(name).is_some_and(|p| p.present == self.samples)
    }

    /// Kinds of the names that were identifiers and were not kept.
    pub fn identifier_names(&self) -> &KindCounts {
        &self.identifier_names
    }

    /// New names dropped by a bound.
    pub fn names_dropped(&self) -> u64 {
        self.names_dropped
    }

    /// Merges the query string of one call (the part after `?`, which may be empty).
    pub fn observe_query(&mut self, query: &str, cfg: &ParamConfig, stats: &mut ParamStats) {
        stats.query_strings += 1;
        let query = query.strip_prefix('?').unwrap_or(query);
        self.observe_pairs(form_pairs(query.as_bytes()), cfg, stats);
    }

    /// Merges an `application/x-www-form-urlencoded` body. When `truncated`, the last pair
    /// may be cut: its name is kept only if its `=` was captured, its value is not classified.
    pub fn observe_form(
        &mut self,
        body: &[u8],
        truncated: bool,
        cfg: &ParamConfig,
        stats: &mut ParamStats,
    ) {
        stats.form_bodies += 1;
        if !truncated {
            self.observe_pairs(form_pairs(body), cfg, stats);
            return;
        }
        stats.forms_truncated += 1;
        let (whole, last) = match body.iter().rposition(|&c| c == b'&') {
            Some(i) => (&body[..i], &body[i + 1..]),
            None => (&body[..0], body),
        };
        self.begin_sample();
        let mut budget = cfg.max_pairs_per_input;
        let mut cut = self.add_pairs(form_pairs(whole), &mut budget, cfg, stats);
        if let Some(eq) = last.iter().position(|&c| c == b'=') {
            if budget == 0 {
                cut = true;
            } else {
                stats.pairs += 1;
                let name = percent_decode(&last[..eq], true);
                self.add(&name, Seen::Incomplete, cfg, stats);
            }
        }
        self.end_sample(cut, stats, |s| &mut s.pairs_limit);
    }

    /// Merges a `multipart/form-data` body (possibly a truncated prefix): part names, file
    /// parts and their media types, kinds of the complete text parts.
    pub fn observe_multipart(
        &mut self,
        body: &[u8],
        boundary: &str,
        cfg: &ParamConfig,
        stats: &mut ParamStats,
    ) {
        stats.multipart_bodies += 1;
        self.begin_sample();
        let mut parts = multipart_parts(body, boundary);
        let mut cut = false;
        for (i, part) in parts.by_ref().enumerate() {
            if i >= cfg.max_parts_per_body {
                cut = true;
                break;
            }
            stats.pairs += 1;
            let Some(name) = &part.name else {
                stats.parts_without_name += 1;
                continue;
            };
            let seen = if part.is_file {
                Seen::File(part.content_type)
            } else if !part.complete {
                Seen::Incomplete
            } else {
                Seen::Value(std::str::from_utf8(part.body).map_or(ValueKind::Text, classify))
            };
            self.add(name, seen, cfg, stats);
        }
        match parts.end() {
            Some(MultipartEnd::Truncated) => stats.multipart_truncated += 1,
            Some(MultipartEnd::Malformed) => stats.multipart_malformed += 1,
            _ => {}
        }
        self.end_sample(cut, stats, |s| &mut s.parts_limit);
    }

    /// Adds what `other` (the same place, learnt by another worker) knows, within bounds.
    pub fn merge(&mut self, other: &ParamSet, cfg: &ParamConfig, stats: &mut ParamStats) {
        self.samples = self.samples.saturating_add(other.samples);
        self.identifier_names.merge(&other.identifier_names);
        self.names_dropped = self.names_dropped.saturating_add(other.names_dropped);
        self.truncated_samples = self
            .truncated_samples
            .saturating_add(other.truncated_samples);
        for (name, p) in &other.params {
            if let Some(mine) = self.params.get_mut(name) {
                mine.add_from(p, cfg, stats);
            } else if self.params.len() < cfg.max_names_per_set {
                let mut mine = Param::default();
                mine.add_from(p, cfg, stats);
                self.params.insert(name.clone(), mine);
            } else {
                stats.names_limit += 1;
                self.names_dropped += 1;
            }
        }
    }

    /// OpenAPI 3.1 parameter objects, sorted by name: `name`, `in` (`location`, e.g.
    /// `"query"`), `required` (present in every sample) and `schema` (an array for
    /// array-style or repeated names).
    pub fn to_openapi_parameters(&self, location: &str) -> Vec<Value> {
        self.params
            .iter()
            .map(|(name, p)| {
                json!({
                    "name": name,
                    "in": location,
                    "required": self.samples > 0 && p.present == self.samples,
                    "schema": p.schema(name),
                })
            })
            .collect()
    }

    /// A JSON Schema for a form or multipart request body: an object with one property per
    /// field (file parts are strings with `contentMediaType`) and `required` fields.
    pub fn to_body_schema(&self) -> Value {
        let props: Map<String, Value> = self
            .params
            .iter()
            .map(|(name, p)| (name.clone(), p.schema(name)))
            .collect();
        let required: Vec<&str> = self
            .params
            .iter()
            .filter(|(_, p)| self.samples > 0 && p.present == self.samples)
            .map(|(n, _)| n.as_str())
            .collect();
        let mut m = Map::new();
        m.insert("type".into(), "object".into());
        m.insert("properties".into(), Value::Object(props));
        if !required.is_empty() {
            m.insert("required".into(), required.into());
        }
        Value::Object(m)
    }

    fn begin_sample(&mut self) {
        self.samples += 1;
    }

    fn end_sample(
        &mut self,
        cut: bool,
        stats: &mut ParamStats,
        counter: fn(&mut ParamStats) -> &mut u64,
    ) {
        if cut {
            *counter(stats) += 1;
            self.truncated_samples += 1;
        }
    }

    fn observe_pairs<'x>(
        &mut self,
        pairs: impl Iterator<Item = FormPair<'x>>,
        cfg: &ParamConfig,
        stats: &mut ParamStats,
    ) {
        self.begin_sample();
        let mut budget = cfg.max_pairs_per_input;
        let cut = self.add_pairs(pairs, &mut budget, cfg, stats);
        self.end_sample(cut, stats, |s| &mut s.pairs_limit);
    }

    /// Adds pairs until the budget is spent; true when some were left.
    fn add_pairs<'x>(
        &mut self,
        pairs: impl Iterator<Item = FormPair<'x>>,
        budget: &mut usize,
        cfg: &ParamConfig,
        stats: &mut ParamStats,
    ) -> bool {
        for pair in pairs {
            if *budget == 0 {
                return true;
            }
            *budget -= 1;
            stats.pairs += 1;
            let seen = match &pair.value {
                Some(v) => Seen::Value(classify(v)),
                None => Seen::NoValue,
            };
            self.add(&pair.name, seen, cfg, stats);
        }
        false
    }

    /// Counts one occurrence of `raw_name` in the current sample.
    fn add(&mut self, raw_name: &str, seen: Seen<'_>, cfg: &ParamConfig, stats: &mut ParamStats) {
        if raw_name.is_empty() {
            stats.empty_names += 1;
            return;
        }
        if raw_name.len() > cfg.max_name_bytes {
            stats.names_too_long += 1;
            self.names_dropped += 1;
            return;
        }
        let name = fold_indexes(raw_name);
        let name_kind = classify(name.trim_end_matches("[]"));
        if name_kind.is_identifier() {
            stats.identifier_names += 1;
            self.identifier_names.add(name_kind);
            return;
        }
        let sample = self.samples;
        let p = match self.params.get_mut(name.as_ref()) {
            Some(p) => p,
            None => {
                if self.params.len() >= cfg.max_names_per_set {
                    stats.names_limit += 1;
                    self.names_dropped += 1;
                    return;
                }
                self.params.entry(name.into_owned()).or_default()
            }
        };
        if p.last_sample != sample {
            p.last_sample = sample;
            p.in_sample = 0;
            p.present += 1;
        }
        p.in_sample = p.in_sample.saturating_add(1);
        if p.in_sample == 2 {
            p.repeated += 1;
        }
        p.occurrences += 1;
        match seen {
            Seen::Value(k) => p.kinds.add(k),
            Seen::NoValue => p.no_value += 1,
            Seen::Incomplete => p.incomplete += 1,
            Seen::File(ct) => {
                p.files += 1;
                let media = ct.map_or(Cow::Borrowed("application/octet-stream"), media_type);
                if !media.is_empty() {
                    p.add_content_type(&media, 1, cfg, stats);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(String, Option<String>)> {
        form_pairs(s.as_bytes())
            .map(|p| (p.name.into_owned(), p.value.map(Cow::into_owned)))
            .collect()
    }

    fn set(queries: &[&str]) -> (ParamSet, ParamStats) {
        let mut s = ParamSet::new();
        let mut stats = ParamStats::default();
        for q in queries {
            s.observe_query(q, &ParamConfig::default(), &mut stats);
        }
        (s, stats)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn query_decoding_oddities() {
        assert_eq!(
            pairs("a=1&&b=&c&d=x%20y+z&%65=%zz&f=%4&g=a=b&=v"),
            vec![
                ("a".into(), some("1")),
                ("b".into(), some("")),
                ("c".into(), None),
                ("d".into(), some("x y z")),
                ("e".into(), some("%zz")),
                ("f".into(), some("%4")),
                ("g".into(), some("a=b")),
                ("".into(), some("v")),
            ]
        );
        assert_eq!(pairs(""), vec![]);
        assert_eq!(pairs("&&&"), vec![]);
        assert_eq!(pairs("x=%C3%A9"), vec![("x".into(), some("é"))]);
        assert_eq!(pairs("x=%FF"), vec![("x".into(), some("\u{FFFD}"))]);
        assert_eq!(pairs("x=100%"), vec![("x".into(), some("100%"))]);
        assert_eq!(pairs("x%5B%5D=1"), vec![("x[]".into(), some("1"))]);
    }

    #[test]
    fn percent_decode_borrows_when_plain() {
        assert!(matches!(
            percent_decode(b"plain", true),
            Cow::Borrowed("plain")
        ));
        assert_eq!(percent_decode(b"a+b", false), "a+b");
        assert_eq!(percent_decode(b"a+b", true), "a b");
        assert_eq!(percent_decode(b"%41%4a%", true), "AJ%");
    }

    #[test]
    fn kinds_counts_and_presence() {
        let (s, stats) = set(&["id=42&q=hello", "id=7", "id=x1&id=9", ""]);
        assert_eq!(s.samples(), 4);
        assert_eq!(stats.query_strings, 4);
        let id = s.get("id").unwrap();
        assert_eq!((id.present, id.occurrences, id.repeated), (3, 4, 1));
        assert_eq!(id.kinds.get(ValueKind::Integer), 3);
        assert_eq!(id.kinds.get(ValueKind::SlugWithDigits), 1);
        assert!(!s.is_required("id"), "the empty query lacked it");
        let (s, _) = set(&["id=1", "?id=2"]);
        assert!(s.is_required("id"), "a leading ? is tolerated");
    }

    #[test]
    fn empty_values_and_names_without_equals() {
        let (s, stats) = set(&["flag&since=&=orphan", "flag=&since=2024-01-01"]);
        let flag = s.get("flag").unwrap();
        assert_eq!((flag.no_value, flag.kinds.get(ValueKind::Empty)), (1, 1));
        let params = s.to_openapi_parameters("query");
        assert_eq!(params[0]["name"], "flag");
        assert_eq!(params[0]["schema"], json!({"type": "string"}));
        assert_eq!(params[1]["name"], "since");
        assert_eq!(
            params[1]["schema"],
            json!({"type": "string", "format": "date"}),
            "an empty value does not hide the format"
        );
        assert_eq!(stats.empty_names, 1);
    }

    #[test]
    fn array_style_names_fold_indexes() {
        let (s, _) = set(&["ids[]=1&ids[]=2", "items[0][id]=1&items[1][id]=2&a[b]=x"]);
        let names: Vec<&str> = s.params().map(|(n, _)| n).collect();
        assert_eq!(names, ["a[b]", "ids[]", "items[][id]"]);
        let params = s.to_openapi_parameters("query");
        assert_eq!(
            params[1]["schema"],
            json!({"type": "array", "items": {"type": "integer"}})
        );
        assert_eq!(fold_indexes("x[12]"), "x[]");
        assert_eq!(fold_indexes("x[1a]"), "x[1a]");
        assert_eq!(fold_indexes("é[3]"), "é[]");
        assert!(matches!(fold_indexes("plain[]"), Cow::Borrowed(_)));
    }

    #[test]
    fn repeated_names_are_arrays() {
        let (s, _) = set(&["tag=a&tag=b", "tag=c"]);
        assert_eq!(s.get("tag").unwrap().repeated, 1);
        assert_eq!(
            s.to_openapi_parameters("query")[0]["schema"],
            json!({"type": "array", "items": {"type": "string"}})
        );
    }

    #[test]
    fn schema_type_from_kinds() {
        let ty = |qs: &[&str]| set(qs).0.to_openapi_parameters("query")[0]["schema"].clone();
        assert_eq!(ty(&["n=1", "n=2.5"]), json!({"type": "number"}));
        assert_eq!(ty(&["n=1", "n=abc"]), json!({"type": "string"}));
        assert_eq!(ty(&["n=true", "n=FALSE"]), json!({"type": "boolean"}));
        assert_eq!(
            ty(&["n=123e4567-e89b-12d3-a456-426614174000"]),
            json!({"type": "string", "format": "uuid"})
        );
        assert_eq!(ty(&["n="]), json!({"type": "string"}));
    }

    #[test]
    fn identifier_names_are_not_kept() {
        let (s, stats) = set(&["1699999999", "_=1&eyJhbGciOiJIUzI1NiJ9xx12=1"]);
        assert_eq!(s.params().count(), 1, "only `_` is a name");
        assert_eq!(stats.identifier_names, 2);
        assert_eq!(s.identifier_names().get(ValueKind::Integer), 1);
        assert_eq!(s.identifier_names().get(ValueKind::Token), 1);
    }

    #[test]
    fn name_bounds_are_counted() {
        let cfg = ParamConfig {
            max_names_per_set: 2,
            max_name_bytes: 5,
            max_pairs_per_input: 3,
            ..ParamConfig::default()
        };
        let mut s = ParamSet::new();
        let mut stats = ParamStats::default();
        s.observe_query("a=1&b=2&c=3&d=4", &cfg, &mut stats);
        s.observe_query("toolong=1&a=2", &cfg, &mut stats);
        assert_eq!(s.params().count(), 2);
        assert_eq!(stats.names_limit, 1, "c");
        assert_eq!(stats.pairs_limit, 1, "d never read");
        assert_eq!(stats.names_too_long, 1);
        assert_eq!(s.names_dropped(), 2);
        let summary = serde_json::to_value(&s).unwrap();
        assert_eq!(summary["names_dropped"], 2);
        assert_eq!(summary["truncated_samples"], 1);
    }

    #[test]
    fn form_bodies_share_the_query_path() {
        let mut s = ParamSet::new();
        let mut stats = ParamStats::default();
        let cfg = ParamConfig::default();
        s.observe_form(b"user=alice&age=31&remember", false, &cfg, &mut stats);
        s.observe_form(b"user=bob&age=4", true, &cfg, &mut stats);
        s.observe_form(b"user=carol&ag", true, &cfg, &mut stats);
        assert_eq!(stats.form_bodies, 3);
        assert_eq!(stats.forms_truncated, 2);
        let age = s.get("age").unwrap();
        assert_eq!(
            (age.present, age.incomplete),
            (2, 1),
            "cut value kept as a name"
        );
        assert_eq!(age.kinds.get(ValueKind::Integer), 1);
        assert!(s.get("ag").is_none(), "a cut name is dropped");
        assert!(s.is_required("user"));
        assert_eq!(
            s.to_body_schema(),
            json!({
                "type": "object",
                "properties": {
                    "age": {"type": "integer"},
                    "remember": {"type": "string"},
                    "user": {"type": "string"}
                },
                "required": ["user"]
            })
        );
    }

    #[test]
    fn content_type_parsing() {
        let ct = ContentType::parse("Text/HTML ; Charset=\"UTF-8\" ; q=1");
        assert_eq!(ct.media_type(), "text/html");
        assert_eq!(ct.charset().as_deref(), Some("UTF-8"));
        assert_eq!(ct.param("Q").as_deref(), Some("1"));
        let ct = ContentType::parse("multipart/form-data; boundary=\"a\\\"b;c\"");
        assert_eq!(ct.boundary().as_deref(), Some("a\"b;c"));
        let ct = ContentType::parse("multipart/form-data; boundary=----WebKitFormBoundaryX");
        assert_eq!(ct.boundary().as_deref(), Some("----WebKitFormBoundaryX"));
        assert!(ct.is_multipart_form());
        assert_eq!(ContentType::parse("").media_type(), "");
        assert_eq!(ContentType::parse("x; boundary=").boundary(), None);
        assert_eq!(
            ContentType::parse("x; boundary=\"unterminated")
                .boundary()
                .as_deref(),
            Some("unterminated")
        );
        assert!(ContentType::parse("application/vnd.api+json").is_json());
        assert!(ContentType::parse("application/json; charset=utf-8").is_json());
        assert!(!ContentType::parse("+json").is_json());
        assert!(ContentType::parse("application/x-www-form-urlencoded").is_form());
        assert!(ContentType::parse("application/graphql").is_graphql());
        assert_eq!(media_type("APPLICATION/JSON;x=y"), "application/json");
        assert!(matches!(media_type("text/plain"), Cow::Borrowed(_)));
        assert_eq!(ContentType::from_bytes(b"\xff"), None);
    }

    const MP: &[u8] = b"preamble\r\n--B\r\n\
Content-Disposition: form-data; name=\"title\"\r\n\r\n\
Hello\r\n--B\r\n\
content-disposition: form-data; name=\"count\"\r\n\r\n\
42\r\n--B\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\
Content-Type: image/png\r\n\r\n\
\x89PNG\r\n--B is in the file\r\n--B\r\n\
Content-Disposition: form-data; name=\"empty\"\r\n\r\n\
\r\n--B--\r\nepilogue";

    /// A part as `(name, is_file, body, complete)`.
    type OwnedPart = (Option<String>, bool, Vec<u8>, bool);

    fn parts(body: &[u8], b: &str) -> (Vec<OwnedPart>, Option<MultipartEnd>) {
        let mut it = multipart_parts(body, b);
        let v = it
            .by_ref()
            .map(|p| {
                (
                    p.name.map(Cow::into_owned),
                    p.is_file,
                    p.body.to_vec(),
                    p.complete,
                )
            })
            .collect();
        (v, it.end())
    }

    #[test]
    fn multipart_with_trailing_boundary() {
        let (v, end) = parts(MP, "B");
        assert_eq!(end, Some(MultipartEnd::Closed));
        assert_eq!(
            v,
            vec![
                (some("title"), false, b"Hello".to_vec(), true),
                (some("count"), false, b"42".to_vec(), true),
                (
                    some("file"),
                    true,
                    b"\x89PNG\r\n--B is in the file".to_vec(),
                    true
                ),
                (some("empty"), false, b"".to_vec(), true),
            ]
        );
    }

    #[test]
    fn multipart_without_trailing_boundary() {
        let body = &MP[..MP.len() - b"--\r\nepilogue".len()];
        let (v, end) = parts(body, "B");
        assert_eq!(v.len(), 4);
        let complete: Vec<bool> = v.iter().map(|p| p.3).collect();
        assert_eq!(
            complete,
            [true, true, true, false],
            "`--B` at the very end may go on"
        );
        assert_eq!(v[3].2, b"", "the content before it is kept");
        assert_eq!(end, Some(MultipartEnd::Truncated));
        let body = b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nxyz";
        let (v, end) = parts(body, "B");
        assert_eq!(v, vec![(some("a"), false, b"xyz".to_vec(), false)]);
        assert_eq!(end, Some(MultipartEnd::Truncated));
    }

    #[test]
    fn multipart_every_prefix_is_tolerated() {
        for end in 0..=MP.len() {
            let (v, how) = parts(&MP[..end], "B");
            assert!(how.is_some());
            for (i, p) in v.iter().enumerate() {
                let full = parts(MP, "B").0;
                assert_eq!(p.0, full[i].0, "names agree at {end}");
                if p.3 {
                    assert_eq!(p.2, full[i].2, "complete bodies agree at {end}");
                }
            }
        }
    }

    #[test]
    fn multipart_boundary_starting_with_dashes() {
        let b = "----WebKitFormBoundary7MA4YWxk";
        let body = b"------WebKitFormBoundary7MA4YWxk\r\n\
             Content-Disposition: form-data; name=\"a\"\r\n\r\n\
             ----WebKitFormBoundary7MA4YWxk\r\n\
             ------WebKitFormBoundary7MA4YWxk--\r\n";
        let (v, end) = parts(body, b);
        assert_eq!(end, Some(MultipartEnd::Closed));
        assert_eq!(
            v,
            vec![(
                some("a"),
                false,
                format!("--{}", &b[2..]).into_bytes(),
                true
            )]
        );
    }

    #[test]
    fn multipart_lf_only_and_malformed() {
        let body = b"--B\nContent-Disposition: form-data; name=\"a\"\n\nv\n--B--\n";
        let (v, end) = parts(body, "B");
        assert_eq!(v, vec![(some("a"), false, b"v".to_vec(), true)]);
        assert_eq!(end, Some(MultipartEnd::Closed));
        assert_eq!(
            parts(b"no delimiter here", "B").1,
            Some(MultipartEnd::Malformed)
        );
        assert_eq!(
            parts(b"--B\r\nno colon line\r\n\r\n", "B").1,
            Some(MultipartEnd::Malformed)
        );
        assert_eq!(parts(MP, "").1, Some(MultipartEnd::Malformed));
        assert_eq!(parts(b"--B--", "B").1, Some(MultipartEnd::Closed));
        assert_eq!(parts(b"--BB\r\n", "B").1, Some(MultipartEnd::Malformed));
    }

    #[test]
    fn multipart_into_param_set() {
        let mut s = ParamSet::new();
        let mut stats = ParamStats::default();
        let cfg = ParamConfig::default();
        s.observe_multipart(MP, "B", &cfg, &mut stats);
        let cut = &MP[..MP.len() / 2];
        s.observe_multipart(cut, "B", &cfg, &mut stats);
        assert_eq!(stats.multipart_bodies, 2);
        assert_eq!(stats.multipart_truncated, 1);
        assert_eq!(s.get("count").unwrap().kinds.get(ValueKind::Integer), 2);
        let file = s.get("file").unwrap();
        assert_eq!(file.files, 1);
        assert_eq!(file.content_types.get("image/png"), Some(&1));
        let schema = s.to_body_schema();
        assert_eq!(schema["properties"]["count"], json!({"type": "integer"}));
        assert_eq!(
            schema["properties"]["file"],
            json!({"type": "string", "contentMediaType": "image/png"})
        );
        assert_eq!(schema["required"], json!(["count", "title"]));
    }

    #[test]
    fn multipart_bounds_are_counted() {
        let cfg = ParamConfig {
            max_parts_per_body: 2,
            max_content_types_per_param: 1,
            ..ParamConfig::default()
        };
        let mut s = ParamSet::new();
        let mut stats = ParamStats::default();
        s.observe_multipart(MP, "B", &cfg, &mut stats);
        assert_eq!(stats.parts_limit, 1);
        assert_eq!(s.params().count(), 2);
        let f = |ct: &str| {
            format!("--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\nContent-Type: {ct}\r\n\r\nx\r\n--B--")
        };
        s.observe_multipart(f("image/png").as_bytes(), "B", &cfg, &mut stats);
        s.observe_multipart(f("image/gif").as_bytes(), "B", &cfg, &mut stats);
        assert_eq!(stats.content_types_limit, 1);
        assert_eq!(
            s.to_body_schema()["properties"]["f"],
            json!({"type": "string", "contentMediaType": "image/png"})
        );
    }

    #[test]
    fn merge_adds_counts_and_respects_bounds() {
        let (mut a, _) = set(&["x=1", "y=a"]);
        let (b, _) = set(&["x=2&z=3"]);
        let (all, _) = set(&["x=1", "y=a", "x=2&z=3"]);
        let mut stats = ParamStats::default();
        a.merge(&b, &ParamConfig::default(), &mut stats);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&all).unwrap()
        );
        let mut small = ParamSet::new();
        let cfg = ParamConfig {
            max_names_per_set: 1,
            ..ParamConfig::default()
        };
        small.merge(&all, &cfg, &mut stats);
        assert_eq!(small.params().count(), 1);
        assert_eq!(stats.names_limit, 2);
    }

    #[test]
    fn summary_shape() {
        let (s, _) = set(&["a=1&a=2&b", "a=x"]);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({
                "samples": 2,
                "params": {
                    "a": {"present": 2, "occurrences": 3, "repeated": 1,
                          "kinds": {"integer": 2, "string": 1}},
                    "b": {"present": 1, "occurrences": 1, "no_value": 1}
                }
            })
        );
    }

    #[test]
    fn no_panic_on_random_bytes() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"--B\r\n:;=\"&%+[]0a1fZ\\ \t\xff\xc3";
        let cfg = ParamConfig::default();
        let mut s = ParamSet::new();
        let mut stats = ParamStats::default();
        for _ in 0..20_000 {
            let len = (next() % 80) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let text = String::from_utf8_lossy(&input);
            s.observe_query(&text, &cfg, &mut stats);
            s.observe_form(&input, next() % 2 == 0, &cfg, &mut stats);
            s.observe_multipart(&input, "B", &cfg, &mut stats);
            s.observe_multipart(&input, "-", &cfg, &mut stats);
            let ct = ContentType::parse(&text);
            let _ = (ct.boundary(), ct.charset(), ct.is_json());
            let _ = disposition(&text);
        }
        assert!(s.params().count() <= cfg.max_names_per_set);
        let _ = s.to_openapi_parameters("query");
        let _ = s.to_body_schema();
    }
}
