//! JSON body schemas, inferred from sampled bodies and merged across samples.
//!
//! [`parse_json`] turns a body (or a truncated prefix of one) into a [`JsonBody`], or says why
//! it could not with a countable [`JsonError`]. [`Schema::observe_body`] (or
//! [`Schema::observe`] for a plain [`serde_json::Value`]) merges it into the schema of an
//! endpoint's request or response; [`Schema::merge`] adds the schema another worker learnt.
//! Every node of a [`Schema`] counts the JSON types it saw (a field may have several), the
//! kinds of its string values ([`KindCounts`], from [`crate::value::classify`]), for objects
//! how many of them had each field, for arrays their length range and one merged item
//! schema.
//!
//! String values are never stored, only their kinds; the one exception is a short list of
//! enum-like constants (`"ACTIVE"`, `"pending_review"`) that [`SchemaConfig::max_enum_values`]
//! bounds and can switch off. Numbers keep their observed minimum and maximum.
//!
//! Every bound of [`SchemaConfig`] marks the node where it was hit (`truncated`) and bumps a
//! counter of [`SchemaStats`]. The outputs are [`Schema::to_json_schema`] (JSON Schema
//! 2020-12 as OpenAPI 3.1 uses it, deterministic) and the compact summary that `Schema`'s
//! [`Serialize`] implementation writes into the inventory. The lossless state, to save and
//! reload so that counting goes on after a restart, is separate: [`Schema::save`] and
//! [`Schema::load`], described in [`state`].
//!
//! ```
//! use apiscope_inventory::schema::{parse_json, Schema, SchemaConfig, SchemaStats};
//! use serde_json::json;
//!
//! let cfg = SchemaConfig::default();
//! let mut stats = SchemaStats::default();
//! let mut schema = Schema::new();
//! let bodies: [&[u8]; 2] = [
//!     br#"{"id": 1, "email": "a@example.com", "tags": ["x"]}"#,
//!     br#"{"id": 2.5, "email": null}"#,
//! ];
//! for body in bodies {
//!     let body = parse_json(body, false).expect("valid JSON");
//!     schema.observe_body(&body, &cfg, &mut stats);
//! }
//! let js = schema.to_json_schema();
//! assert_eq!(js["properties"]["id"]["type"], "number"); // integer merged with number
//! assert_eq!(js["properties"]["email"]["type"], json!(["string", "null"]));
//! assert_eq!(js["required"], json!(["email", "id"])); // `tags` was missing once
//! assert_eq!(js["properties"]["tags"]["items"]["type"], "string");
//!
//! // A body cut short still teaches what its complete part holds.
//! let cut = parse_json(br#"{"items": [{"id": 1}, {"id": 2, "name": "Bo"#, true).unwrap();
//! assert!(cut.is_partial());
//! assert_eq!(cut.value(), &json!({"items": [{"id": 1}, {"id": 2}]}));
//! ```

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::error::Category;
use serde_json::{Map, Value};

use crate::value::{classify, ValueKind};

pub mod state;

pub use state::StateError;

/// A string format is exported only when at least this share (in percent) of a node's string
/// samples have it, so one empty or odd value among many dates does not hide the format,
/// while a field that is half dates and half text gets none.
pub const FORMAT_AGREEMENT_PERCENT: u64 = 95;

/// An enum is exported only when the node saw at least this many string samples per distinct
/// value (and at least [`ENUM_MIN_SAMPLES`]): three samples with three values are not an enum.
pub const ENUM_SAMPLES_PER_VALUE: u64 = 3;

/// The fewest string samples for which an enum is exported.
pub const ENUM_MIN_SAMPLES: u64 = 5;

/// Nesting depth allowed while parsing, the same as `serde_json`'s own recursion limit.
const MAX_PARSE_DEPTH: usize = 128;

/// Bounds of one schema. Every bound has a counter in [`SchemaStats`] and marks the node where
/// it was hit as truncated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaConfig {
    /// Containers nested deeper than this (the body itself is depth 0) are recorded as a type
    /// but not descended into. Counter `depth_limit`.
    pub max_depth: usize,
    /// Distinct fields remembered per object node; later new fields are dropped. Counter
    /// `field_limit`.
    pub max_fields_per_object: usize,
    /// Nodes (the root, each field, each array-item and map-value schema) per schema. Counter
    /// `node_limit`.
    pub max_nodes_per_schema: usize,
    /// Items of each array value observed; the rest only count towards the length. Counter
    /// `array_items_skipped`.
    pub max_items_per_array: usize,
    /// Distinct enum-like string constants remembered per node; 0 stores no string value at
    /// all. A node with more distinct values (or any value that is not a short constant) is
    /// not an enum.
    pub max_enum_values: usize,
    /// Longest string (in bytes) that may be an enum constant.
    pub max_enum_value_bytes: usize,
}

impl Default for SchemaConfig {
    fn default() -> Self {
        SchemaConfig {
            max_depth: 8,
            max_fields_per_object: 200,
            max_nodes_per_schema: 2000,
            max_items_per_array: 64,
            max_enum_values: 8,
            max_enum_value_bytes: 24,
        }
    }
}

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident, )*) => {
        /// Counters of schema inference, all monotonic. Add workers together with
        /// [`SchemaStats::merge`]; list them with [`SchemaStats::counters`].
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct SchemaStats {
            $( $(#[doc = $doc])* pub $name: u64, )*
        }

        impl SchemaStats {
            /// Every counter as `(name, value)`, in declaration order.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name), )*]
            }

            /// Adds `other` into `self`.
            pub fn merge(&mut self, other: &SchemaStats) {
                $( self.$name = self.$name.saturating_add(other.$name); )*
            }
        }
    };
}

counters! {
    /// Bodies (or values) merged into a schema.
    samples,
    /// Of those, bodies salvaged from a truncated prefix.
    partial_samples,
    /// Samples during which at least one bound was hit.
    truncated_samples,
    /// Containers not descended into because of `max_depth`.
    depth_limit,
    /// New fields dropped because of `max_fields_per_object`.
    field_limit,
    /// New nodes not created because of `max_nodes_per_schema`.
    node_limit,
    /// Array items not observed because of `max_items_per_array`.
    array_items_skipped,
    /// Bodies [`parse_json`] rejected as empty.
    bodies_empty,
    /// Bodies [`parse_json`] rejected as not JSON.
    bodies_not_json,
    /// Truncated bodies with nothing complete to salvage.
    bodies_truncated,
    /// Bodies nested deeper than the parser allows.
    bodies_too_deep,
}

impl SchemaStats {
    /// Counts the outcome of [`parse_json`]: an error by its kind, a salvaged prefix as
    /// `partial_samples` is counted later by [`Schema::observe_body`].
    pub fn count_parse(&mut self, result: &Result<JsonBody, JsonError>) {
        if let Err(e) = result {
            let c = match e {
                JsonError::Empty => &mut self.bodies_empty,
                JsonError::NotJson => &mut self.bodies_not_json,
                JsonError::Truncated => &mut self.bodies_truncated,
                JsonError::TooDeep => &mut self.bodies_too_deep,
            };
            *c += 1;
        }
    }
}

/// Why a body gave no JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum JsonError {
    /// Nothing but whitespace (or a byte-order mark).
    #[error("empty body")]
    Empty,
    /// Not valid JSON (anywhere before the end of what was captured).
    #[error("body is not JSON")]
    NotJson,
    /// A valid JSON prefix that was cut before any complete part: a number at the top level,
    /// or the first characters of a document.
    #[error("JSON body cut before anything complete")]
    Truncated,
    /// Nested deeper than the parser allows (128 levels).
    #[error("JSON nested too deep")]
    TooDeep,
}

impl JsonError {
    /// A stable snake_case name for counters and evidence.
    pub const fn as_str(self) -> &'static str {
        match self {
            JsonError::Empty => "empty",
            JsonError::NotJson => "not_json",
            JsonError::Truncated => "truncated",
            JsonError::TooDeep => "too_deep",
        }
    }
}

/// One step from an open (cut) container to the open container inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OpenStep {
    /// The value of this field of an object.
    Field(String),
    /// The last item of an array.
    LastItem,
}

/// A parsed body: complete, or salvaged from a prefix that was cut.
///
/// A salvaged body keeps every complete value of the prefix and drops the one being written
/// when the cut came, then closes the containers that were open. Those open containers are
/// remembered: [`Schema::observe_body`] learns their fields and items but does not count them
/// as whole objects (so a missing field is not taken as optional) or arrays (their length is
/// unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonBody {
    value: Value,
    /// `None` when complete; otherwise the path from the root (which is open) through the
    /// open containers.
    open: Option<Vec<OpenStep>>,
}

impl JsonBody {
    /// The parsed (or salvaged) value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The value, consuming the body.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// True when the body was salvaged from a truncated prefix.
    pub fn is_partial(&self) -> bool {
        self.open.is_some()
    }
}

/// Parses a JSON body, salvaging what is complete when it was cut short.
///
/// `truncated` says the caller knows `bytes` is only a prefix of the body. A prefix that is
/// valid JSON as far as it goes is salvaged whether or not the caller said so (see
/// [`JsonBody`]). A leading UTF-8 byte-order mark is skipped.
///
/// # Errors
///
/// [`JsonError::Empty`] for a blank body, [`JsonError::NotJson`] when the bytes are not JSON
/// (also for trailing garbage after a complete value), [`JsonError::Truncated`] when a valid
/// prefix holds nothing complete (or `truncated` is set and the whole body is one number,
/// which may have been cut), [`JsonError::TooDeep`] beyond 128 nesting levels.
pub fn parse_json(bytes: &[u8], truncated: bool) -> Result<JsonBody, JsonError> {
    let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if b.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n')) {
        return Err(JsonError::Empty);
    }
    match serde_json::from_slice::<Value>(b) {
        Ok(v) if truncated && v.is_number() => Err(JsonError::Truncated),
        Ok(value) => Ok(JsonBody { value, open: None }),
        Err(e) if e.classify() == Category::Eof => salvage(b),
        Err(e) => Err(syntax_error(&e)),
    }
}

fn syntax_error(e: &serde_json::Error) -> JsonError {
    if e.to_string().starts_with("recursion limit exceeded") {
        JsonError::TooDeep
    } else {
        JsonError::NotJson
    }
}

/// A container open at some point of a scan.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// An object; `key` is the byte range (with quotes) of the last key read, `expect_key`
    /// whether the next string is a key.
    Object {
        key: Option<(usize, usize)>,
        expect_key: bool,
    },
    Array,
}

/// A structural scan of a JSON prefix that `serde_json` found valid up to its end.
#[derive(Debug)]
struct Scan {
    stack: Vec<Frame>,
    /// The last position where the prefix can be cut so that every value before it is
    /// complete: just after an opening bracket, just before a comma, just after a closing
    /// bracket (inside a container).
    last_cut: Option<usize>,
    too_deep: bool,
}

fn scan(b: &[u8]) -> Scan {
    let mut s = Scan {
        stack: Vec::new(),
        last_cut: None,
        too_deep: false,
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if i >= b.len() {
                    break;
                }
                if let Some(Frame::Object { key, expect_key }) = s.stack.last_mut() {
                    if *expect_key {
                        *key = Some((start, i + 1));
                        *expect_key = false;
                    }
                }
            }
            c @ (b'{' | b'[') => {
                if s.stack.len() >= MAX_PARSE_DEPTH {
                    s.too_deep = true;
                    return s;
                }
                s.stack.push(if c == b'{' {
                    Frame::Object {
                        key: None,
                        expect_key: true,
                    }
                } else {
                    Frame::Array
                });
                s.last_cut = Some(i + 1);
            }
            b'}' | b']' => {
                s.stack.pop();
                if s.stack.is_empty() {
                    // A complete document inside a prefix serde called incomplete cannot
                    // happen; stop rather than cut outside every container.
                    return s;
                }
                s.last_cut = Some(i + 1);
            }
            b',' => {
                s.last_cut = Some(i);
                if let Some(Frame::Object { expect_key, .. }) = s.stack.last_mut() {
                    *expect_key = true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    s
}

/// Keeps the complete part of a prefix that is valid JSON as far as it goes.
fn salvage(b: &[u8]) -> Result<JsonBody, JsonError> {
    let first = scan(b);
    if first.too_deep {
        return Err(JsonError::TooDeep);
    }
    let Some(cut) = first.last_cut else {
        return Err(JsonError::Truncated);
    };
    let at_cut = scan(&b[..cut]);
    let Some((_, outer)) = at_cut.stack.split_last() else {
        return Err(JsonError::Truncated);
    };
    let mut steps = Vec::with_capacity(outer.len());
    for frame in outer {
        match *frame {
            Frame::Object {
                key: Some((start, end)),
                ..
            } => {
                let key = serde_json::from_slice::<String>(&b[start..end])
                    .map_err(|_| JsonError::NotJson)?;
                steps.push(OpenStep::Field(key));
            }
            Frame::Object { key: None, .. } => return Err(JsonError::NotJson),
            Frame::Array => steps.push(OpenStep::LastItem),
        }
    }
    let mut text = Vec::with_capacity(cut + at_cut.stack.len());
    text.extend_from_slice(&b[..cut]);
    text.extend(at_cut.stack.iter().rev().map(|f| match f {
        Frame::Object { .. } => b'}',
        Frame::Array => b']',
    }));
    let value = serde_json::from_slice::<Value>(&text).map_err(|e| syntax_error(&e))?;
    Ok(JsonBody {
        value,
        open: Some(steps),
    })
}

/// A JSON type as JSON Schema names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JsonType {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
    Null,
}

impl JsonType {
    /// Every type, in the order outputs list them.
    pub const ALL: [JsonType; 7] = [
        JsonType::Object,
        JsonType::Array,
        JsonType::String,
        JsonType::Integer,
        JsonType::Number,
        JsonType::Boolean,
        JsonType::Null,
    ];

    /// The JSON Schema name (`object`, `integer`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            JsonType::Object => "object",
            JsonType::Array => "array",
            JsonType::String => "string",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::Boolean => "boolean",
            JsonType::Null => "null",
        }
    }

    /// The type of `v`; a number without fraction or exponent is an integer.
    pub fn of(v: &Value) -> JsonType {
        match v {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Boolean,
            Value::Number(n) if n.is_f64() => JsonType::Number,
            Value::Number(_) => JsonType::Integer,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }
}

/// How many values of each [`ValueKind`] were seen. Small (a node rarely sees more than two
/// kinds), ordered by kind, serialised as `{"uuid": 3, "empty": 1}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCounts(Vec<(ValueKind, u64)>);

impl KindCounts {
    /// Counts one value of `kind`.
    pub fn add(&mut self, kind: ValueKind) {
        self.add_n(kind, 1);
    }

    /// Counts `n` values of `kind`.
    pub fn add_n(&mut self, kind: ValueKind, n: u64) {
        match self.0.binary_search_by_key(&kind, |&(k, _)| k) {
            Ok(i) => self.0[i].1 = self.0[i].1.saturating_add(n),
            Err(i) => self.0.insert(i, (kind, n)),
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &KindCounts) {
        for &(k, n) in &other.0 {
            self.add_n(k, n);
        }
    }

    /// Values of `kind` seen.
    pub fn get(&self, kind: ValueKind) -> u64 {
        self.0
            .binary_search_by_key(&kind, |&(k, _)| k)
            .map_or(0, |i| self.0[i].1)
    }

    /// Values seen in all.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|&(_, n)| n).sum()
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(kind, count)` pairs in kind order.
    pub fn iter(&self) -> impl Iterator<Item = (ValueKind, u64)> + '_ {
        self.0.iter().copied()
    }

    /// The OpenAPI string format (`uuid`, `date-time`, ...) that at least
    /// [`FORMAT_AGREEMENT_PERCENT`] of the values have. With `ignore_empty`, empty values
    /// are left out of the total (query parameters: `?since=` is "not given", not a bad
    /// date); in JSON an empty string counts against the format.
    pub fn format(&self, ignore_empty: bool) -> Option<&'static str> {
        let total = self.total()
            - if ignore_empty {
                self.get(ValueKind::Empty)
            } else {
                0
            };
        if total == 0 {
            return None;
        }
        self.0.iter().find_map(|&(k, n)| {
            let format = k.openapi().1?;
            (n.saturating_mul(100) >= total.saturating_mul(FORMAT_AGREEMENT_PERCENT))
                .then_some(format)
        })
    }
}

impl Serialize for KindCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for &(k, n) in &self.0 {
            m.serialize_entry(k.as_str(), &n)?;
        }
        m.end()
    }
}

/// The schema of one place in a body: the root, a field, array items or map values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    samples: u64,
    /// Count per [`JsonType`], indexed by its position in [`JsonType::ALL`].
    types: [u64; 7],
    /// Kinds of the string values.
    kinds: KindCounts,
    /// Distinct enum-like string values, sorted, while `enum_closed` is false.
    enum_values: Vec<Box<str>>,
    /// A string that is not a short constant, or too many distinct ones, was seen.
    enum_closed: bool,
    min: Option<f64>,
    max: Option<f64>,
    object: Option<Box<ObjectShape>>,
    array: Option<Box<ArrayShape>>,
    truncated: bool,
}

/// What the objects seen at one node had.
#[derive(Debug, Clone, Default, PartialEq)]
struct ObjectShape {
    /// Complete objects seen (open objects of a salvaged prefix are not counted).
    count: u64,
    fields: BTreeMap<String, Field>,
    /// Values under keys that are identifiers (`{"42": {...}, "43": {...}}`): a map, whose
    /// keys are data and are not kept.
    additional: Option<Node>,
}

/// What the arrays seen at one node had.
#[derive(Debug, Clone, Default, PartialEq)]
struct ArrayShape {
    /// Complete arrays seen.
    count: u64,
    min_len: u64,
    max_len: u64,
    items: Option<Node>,
}

/// A field of an object node: in how many of the objects it was present, and its schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Field {
    present: u64,
    node: Node,
}

impl Field {
    /// Complete objects of the parent node that had this field.
    pub fn present(&self) -> u64 {
        self.present
    }

    /// The schema of the field's values.
    pub fn node(&self) -> &Node {
        &self.node
    }
}

/// Per-observation state: the schema's node budget, the bounds and the counters.
struct Cx<'a> {
    nodes: &'a mut usize,
    cfg: &'a SchemaConfig,
    stats: &'a mut SchemaStats,
    /// A bound was hit during this observation.
    hit: bool,
}

impl Cx<'_> {
    /// Takes one node from the budget; false (and counted) when it is spent.
    fn new_node(&mut self) -> bool {
        if *self.nodes >= self.cfg.max_nodes_per_schema {
            self.stats.node_limit += 1;
            self.hit = true;
            false
        } else {
            *self.nodes += 1;
            true
        }
    }
}

fn type_index(t: JsonType) -> usize {
    t as usize
}

impl Node {
    /// Values observed here (including those of open containers in salvaged prefixes).
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Values of type `t` observed here.
    pub fn type_count(&self, t: JsonType) -> u64 {
        self.types[type_index(t)]
    }

    /// The types observed, in [`JsonType::ALL`] order, with their counts.
    pub fn types(&self) -> impl Iterator<Item = (JsonType, u64)> + '_ {
        JsonType::ALL
            .into_iter()
            .map(|t| (t, self.type_count(t)))
            .filter(|&(_, n)| n > 0)
    }

    /// The kinds of the string values observed.
    pub fn kinds(&self) -> &KindCounts {
        &self.kinds
    }

    /// The string format nearly all string values agree on.
    pub fn format(&self) -> Option<&'static str> {
        self.kinds.format(false)
    }

    /// Smallest and largest number observed.
    pub fn range(&self) -> Option<(f64, f64)> {
        self.min.zip(self.max)
    }

    /// True when a bound stopped this node from learning everything it saw.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// Complete objects observed here.
    pub fn object_count(&self) -> u64 {
        self.object.as_ref().map_or(0, |o| o.count)
    }

    /// The fields of the objects observed here, sorted by name.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Field)> + '_ {
        self.object
            .iter()
            .flat_map(|o| o.fields.iter().map(|(k, f)| (k.as_str(), f)))
    }

    /// One field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.object.as_ref()?.fields.get(name)
    }

    /// True when `name` was in every complete object observed here.
    pub fn is_required(&self, name: &str) -> bool {
        let count = self.object_count();
        count > 0 && self.field(name).is_some_and(|f| f.present == count)
    }

    /// The schema of values under identifier-like keys (an object used as a map).
    pub fn map_values(&self) -> Option<&Node> {
        self.object.as_ref()?.additional.as_ref()
    }

    /// The merged schema of the items of the arrays observed here.
    pub fn items(&self) -> Option<&Node> {
        self.array.as_ref()?.items.as_ref()
    }

    /// Shortest and longest complete array observed here.
    pub fn len_range(&self) -> Option<(u64, u64)> {
        let a = self.array.as_ref()?;
        (a.count > 0).then_some((a.min_len, a.max_len))
    }

    /// The enum constants to export: only when every string seen was a short constant, there
    /// were few of them and enough samples. Sorted.
    pub fn enum_values(&self) -> Option<Vec<&str>> {
        let strings = self.type_count(JsonType::String);
        let distinct = self.enum_values.len() as u64;
        (!self.enum_closed
            && distinct > 0
            && strings >= ENUM_MIN_SAMPLES
            && strings >= distinct.saturating_mul(ENUM_SAMPLES_PER_VALUE))
        .then(|| self.enum_values.iter().map(|v| &**v).collect())
    }

    fn count_type(&mut self, t: JsonType, n: u64) {
        let c = &mut self.types[type_index(t)];
        *c = c.saturating_add(n);
    }

    fn note_number(&mut self, x: f64) {
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
    }

    fn note_enum(&mut self, s: &str, kind: ValueKind, cfg: &SchemaConfig) {
        if self.enum_closed {
            return;
        }
        if !is_enum_constant(s, kind, cfg) {
            self.close_enum();
            return;
        }
        if let Err(i) = self.enum_values.binary_search_by(|v| (**v).cmp(s)) {
            if self.enum_values.len() >= cfg.max_enum_values {
                self.close_enum();
            } else {
                self.enum_values.insert(i, s.into());
            }
        }
    }

    fn close_enum(&mut self) {
        self.enum_closed = true;
        self.enum_values = Vec::new();
    }

    fn cut_depth(&mut self, cx: &mut Cx<'_>) {
        self.truncated = true;
        cx.stats.depth_limit += 1;
        cx.hit = true;
    }

    /// Merges one value. `open` is `Some` when the value is an open container of a salvaged
    /// prefix, holding the path on to the next open container.
    fn observe(&mut self, v: &Value, depth: usize, open: Option<&[OpenStep]>, cx: &mut Cx<'_>) {
        self.samples += 1;
        let t = JsonType::of(v);
        self.count_type(t, 1);
        match v {
            Value::Null | Value::Bool(_) => {}
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    self.note_number(x);
                }
            }
            Value::String(s) => {
                let kind = classify(s);
                self.kinds.add(kind);
                self.note_enum(s, kind, cx.cfg);
            }
            Value::Array(a) => {
                if depth >= cx.cfg.max_depth {
                    if !a.is_empty() {
                        self.cut_depth(cx);
                    }
                    return;
                }
                self.observe_array(a, depth, open, cx);
            }
            Value::Object(m) => {
                if depth >= cx.cfg.max_depth {
                    if !m.is_empty() {
                        self.cut_depth(cx);
                    }
                    return;
                }
                self.observe_object(m, depth, open, cx);
            }
        }
    }

    fn observe_array(
        &mut self,
        a: &[Value],
        depth: usize,
        open: Option<&[OpenStep]>,
        cx: &mut Cx<'_>,
    ) {
        let shape = self.array.get_or_insert_with(Default::default);
        if open.is_none() {
            let len = a.len() as u64;
            if shape.count == 0 {
                (shape.min_len, shape.max_len) = (len, len);
            } else {
                shape.min_len = shape.min_len.min(len);
                shape.max_len = shape.max_len.max(len);
            }
            shape.count += 1;
        }
        if a.is_empty() {
            return;
        }
        if shape.items.is_none() {
            if !cx.new_node() {
                self.truncated = true;
                return;
            }
            shape.items = Some(Node::default());
        }
        let Some(items) = shape.items.as_mut() else {
            return;
        };
        let limit = cx.cfg.max_items_per_array;
        if a.len() > limit {
            cx.stats.array_items_skipped += (a.len() - limit) as u64;
        }
        let last = a.len() - 1;
        for (i, item) in a.iter().take(limit).enumerate() {
            let child_open = match open {
                Some([OpenStep::LastItem, rest @ ..]) if i == last => Some(rest),
                _ => None,
            };
            items.observe(item, depth + 1, child_open, cx);
        }
    }

    fn observe_object(
        &mut self,
        m: &Map<String, Value>,
        depth: usize,
        open: Option<&[OpenStep]>,
        cx: &mut Cx<'_>,
    ) {
        let shape = self.object.get_or_insert_with(Default::default);
        let complete = open.is_none();
        if complete {
            shape.count += 1;
        }
        for (k, v) in m {
            let child_open = match open {
                Some([OpenStep::Field(name), rest @ ..]) if name == k => Some(rest),
                _ => None,
            };
            if let Some(field) = shape.fields.get_mut(k.as_str()) {
                field.present += u64::from(complete);
                field.node.observe(v, depth + 1, child_open, cx);
                continue;
            }
            if classify(k).is_identifier() {
                if shape.additional.is_none() {
                    if !cx.new_node() {
                        self.truncated = true;
                        continue;
                    }
                    shape.additional = Some(Node::default());
                }
                if let Some(node) = shape.additional.as_mut() {
                    node.observe(v, depth + 1, child_open, cx);
                }
                continue;
            }
            if shape.fields.len() >= cx.cfg.max_fields_per_object {
                cx.stats.field_limit += 1;
                cx.hit = true;
                self.truncated = true;
                continue;
            }
            if !cx.new_node() {
                self.truncated = true;
                continue;
            }
            let field = shape.fields.entry(k.clone()).or_default();
            field.present += u64::from(complete);
            field.node.observe(v, depth + 1, child_open, cx);
        }
    }

    /// Adds everything `other` learnt (within this schema's bounds).
    fn merge(&mut self, other: &Node, depth: usize, cx: &mut Cx<'_>) {
        self.samples = self.samples.saturating_add(other.samples);
        for t in JsonType::ALL {
            self.count_type(t, other.type_count(t));
        }
        self.kinds.merge(&other.kinds);
        if other.enum_closed {
            self.close_enum();
        } else {
            for v in &other.enum_values {
                if self.enum_closed {
                    break;
                }
                if let Err(i) = self.enum_values.binary_search(v) {
                    if self.enum_values.len() >= cx.cfg.max_enum_values {
                        self.close_enum();
                    } else {
                        self.enum_values.insert(i, v.clone());
                    }
                }
            }
        }
        if let (Some(lo), Some(hi)) = (other.min, other.max) {
            self.note_number(lo);
            self.note_number(hi);
        }
        self.truncated |= other.truncated;
        if let Some(o) = &other.object {
            self.merge_object(o, depth, cx);
        }
        if let Some(a) = &other.array {
            self.merge_array(a, depth, cx);
        }
    }

    fn merge_object(&mut self, o: &ObjectShape, depth: usize, cx: &mut Cx<'_>) {
        let has_children = !o.fields.is_empty() || o.additional.is_some();
        if depth >= cx.cfg.max_depth && has_children {
            self.cut_depth(cx);
        }
        let shape = self.object.get_or_insert_with(Default::default);
        shape.count = shape.count.saturating_add(o.count);
        if depth >= cx.cfg.max_depth {
            return;
        }
        for (k, f) in &o.fields {
            if let Some(mine) = shape.fields.get_mut(k.as_str()) {
                mine.present = mine.present.saturating_add(f.present);
                mine.node.merge(&f.node, depth + 1, cx);
                continue;
            }
            if shape.fields.len() >= cx.cfg.max_fields_per_object {
                cx.stats.field_limit += 1;
                cx.hit = true;
                self.truncated = true;
                continue;
            }
            if !cx.new_node() {
                self.truncated = true;
                continue;
            }
            let mine = shape.fields.entry(k.clone()).or_default();
            mine.present = f.present;
            mine.node.merge(&f.node, depth + 1, cx);
        }
        if let Some(add) = &o.additional {
            if shape.additional.is_none() {
                if !cx.new_node() {
                    self.truncated = true;
                    return;
                }
                shape.additional = Some(Node::default());
            }
            if let Some(mine) = shape.additional.as_mut() {
                mine.merge(add, depth + 1, cx);
            }
        }
    }

    fn merge_array(&mut self, a: &ArrayShape, depth: usize, cx: &mut Cx<'_>) {
        if depth >= cx.cfg.max_depth && a.items.is_some() {
            self.cut_depth(cx);
        }
        let shape = self.array.get_or_insert_with(Default::default);
        if a.count > 0 {
            if shape.count == 0 {
                (shape.min_len, shape.max_len) = (a.min_len, a.max_len);
            } else {
                shape.min_len = shape.min_len.min(a.min_len);
                shape.max_len = shape.max_len.max(a.max_len);
            }
            shape.count = shape.count.saturating_add(a.count);
        }
        let Some(items) = &a.items else { return };
        if depth >= cx.cfg.max_depth {
            return;
        }
        if shape.items.is_none() {
            if !cx.new_node() {
                self.truncated = true;
                return;
            }
            shape.items = Some(Node::default());
        }
        if let Some(mine) = shape.items.as_mut() {
            mine.merge(items, depth + 1, cx);
        }
    }

    /// This node as a JSON Schema object.
    fn to_json_schema(&self) -> Value {
        let mut m = Map::new();
        if self.samples == 0 {
            return Value::Object(m);
        }
        let number = self.type_count(JsonType::Number) > 0;
        let types: Vec<&str> = self
            .types()
            .filter(|&(t, _)| !(t == JsonType::Integer && number))
            .map(|(t, _)| t.as_str())
            .collect();
        let ty = match types.as_slice() {
            [one] => Value::from(*one),
            _ => Value::from(types),
        };
        m.insert("type".into(), ty);
        if self.type_count(JsonType::String) > 0 {
            if let Some(f) = self.format() {
                m.insert("format".into(), f.into());
            }
            if let Some(values) = self.enum_values() {
                let mut e: Vec<Value> = values.into_iter().map(Value::from).collect();
                if self.type_count(JsonType::Null) > 0 {
                    e.push(Value::Null);
                }
                m.insert("enum".into(), Value::Array(e));
            }
        }
        if let Some(o) = &self.object {
            if !o.fields.is_empty() {
                let props: Map<String, Value> = o
                    .fields
                    .iter()
                    .map(|(k, f)| (k.clone(), f.node.to_json_schema()))
                    .collect();
                m.insert("properties".into(), Value::Object(props));
                let required: Vec<Value> = o
                    .fields
                    .iter()
                    .filter(|(_, f)| o.count > 0 && f.present == o.count)
                    .map(|(k, _)| Value::from(k.as_str()))
                    .collect();
                if !required.is_empty() {
                    m.insert("required".into(), Value::Array(required));
                }
            }
            if let Some(add) = &o.additional {
                m.insert("additionalProperties".into(), add.to_json_schema());
            }
        }
        if let Some(items) = self.items() {
            m.insert("items".into(), items.to_json_schema());
        }
        Value::Object(m)
    }

    /// Writes this node's summary entries into a map being serialised.
    fn write_entries<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        m.serialize_entry("samples", &self.samples)?;
        m.serialize_entry("types", &TypesSer(self))?;
        if !self.kinds.is_empty() {
            m.serialize_entry("kinds", &self.kinds)?;
        }
        if let Some(f) = self.format() {
            m.serialize_entry("format", f)?;
        }
        if let Some(e) = self.enum_values() {
            m.serialize_entry("enum", &e)?;
        }
        if let Some((lo, hi)) = self.range() {
            if self.type_count(JsonType::Number) == 0 {
                // Integers only: print them as integers (exact up to 2^53).
                m.serialize_entry("min", &(lo as i64))?;
                m.serialize_entry("max", &(hi as i64))?;
            } else {
                m.serialize_entry("min", &lo)?;
                m.serialize_entry("max", &hi)?;
            }
        }
        if let Some(o) = &self.object {
            m.serialize_entry("objects", &o.count)?;
            if !o.fields.is_empty() {
                m.serialize_entry("properties", &FieldsSer(o))?;
            }
            if let Some(add) = &o.additional {
                m.serialize_entry("map_values", add)?;
            }
        }
        if let Some(a) = &self.array {
            m.serialize_entry("arrays", &a.count)?;
            if a.count > 0 {
                m.serialize_entry("min_items", &a.min_len)?;
                m.serialize_entry("max_items", &a.max_len)?;
            }
            if let Some(items) = &a.items {
                m.serialize_entry("items", items)?;
            }
        }
        if self.truncated {
            m.serialize_entry("truncated", &true)?;
        }
        Ok(())
    }
}

/// Whether a string may be kept as an enum constant: short, shaped like a constant name, and
/// of a kind that is neither an identifier nor anything like a secret.
fn is_enum_constant(s: &str, kind: ValueKind, cfg: &SchemaConfig) -> bool {
    let b = s.as_bytes();
    cfg.max_enum_values > 0
        && !b.is_empty()
        && b.len() <= cfg.max_enum_value_bytes
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        && matches!(kind, ValueKind::Text | ValueKind::Boolean)
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        self.write_entries(&mut m)?;
        m.end()
    }
}

struct TypesSer<'a>(&'a Node);

impl Serialize for TypesSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (t, n) in self.0.types() {
            m.serialize_entry(t.as_str(), &n)?;
        }
        m.end()
    }
}

struct FieldsSer<'a>(&'a ObjectShape);

impl Serialize for FieldsSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.fields.len()))?;
        for (k, f) in &self.0.fields {
            m.serialize_entry(k, &FieldSer(f, self.0.count))?;
        }
        m.end()
    }
}

struct FieldSer<'a>(&'a Field, u64);

impl Serialize for FieldSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let FieldSer(f, count) = *self;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("present", &f.present)?;
        if count > 0 {
            // Three decimals keep the inventory compact.
            let ratio = (f.present as f64 / count as f64 * 1000.0).round() / 1000.0;
            m.serialize_entry("ratio", &ratio)?;
            m.serialize_entry("required", &(f.present == count))?;
        }
        f.node.write_entries(&mut m)?;
        m.end()
    }
}

/// The schema of one kind of body (an endpoint's request, or its response for one status),
/// merged over every sample.
///
/// Serialises as the compact summary for the inventory:
/// `{"samples": 2, "nodes": 3, "root": {"samples": 2, "types": {"object": 2},
/// "objects": 2, "properties": {"id": {"present": 2, "ratio": 1.0, "required": true, ...}}}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    root: Node,
    /// Nodes allocated, the root included.
    nodes: usize,
    partial_samples: u64,
    truncated_samples: u64,
}

impl Default for Schema {
    fn default() -> Self {
        Schema::new()
    }
}

impl Schema {
    /// An empty schema (no samples).
    pub fn new() -> Schema {
        Schema {
            root: Node::default(),
            nodes: 1,
            partial_samples: 0,
            truncated_samples: 0,
        }
    }

    /// Merges one complete value.
    pub fn observe(&mut self, value: &Value, cfg: &SchemaConfig, stats: &mut SchemaStats) {
        self.observe_inner(value, None, cfg, stats);
    }

    /// Merges a parsed body; for a salvaged prefix, the containers that were cut open teach
    /// their fields and items but not which fields are required or how long arrays are.
    pub fn observe_body(&mut self, body: &JsonBody, cfg: &SchemaConfig, stats: &mut SchemaStats) {
        if body.is_partial() {
            self.partial_samples += 1;
            stats.partial_samples += 1;
        }
        self.observe_inner(&body.value, body.open.as_deref(), cfg, stats);
    }

    fn observe_inner(
        &mut self,
        value: &Value,
        open: Option<&[OpenStep]>,
        cfg: &SchemaConfig,
        stats: &mut SchemaStats,
    ) {
        stats.samples += 1;
        let mut cx = Cx {
            nodes: &mut self.nodes,
            cfg,
            stats,
            hit: false,
        };
        self.root.observe(value, 0, open, &mut cx);
        if cx.hit {
            cx.stats.truncated_samples += 1;
            self.truncated_samples += 1;
        }
    }

    /// Adds what `other` (the same body kind, learnt by another worker) knows, within this
    /// schema's bounds.
    pub fn merge(&mut self, other: &Schema, cfg: &SchemaConfig, stats: &mut SchemaStats) {
        let mut cx = Cx {
            nodes: &mut self.nodes,
            cfg,
            stats,
            hit: false,
        };
        self.root.merge(&other.root, 0, &mut cx);
        self.partial_samples = self.partial_samples.saturating_add(other.partial_samples);
        self.truncated_samples = self
            .truncated_samples
            .saturating_add(other.truncated_samples);
    }

    /// Samples merged.
    pub fn samples(&self) -> u64 {
        self.root.samples
    }

    /// Samples that were salvaged from a truncated prefix.
    pub fn partial_samples(&self) -> u64 {
        self.partial_samples
    }

    /// Samples during which a bound was hit.
    pub fn truncated_samples(&self) -> u64 {
        self.truncated_samples
    }

    /// Nodes in use, the root included (bounded by `max_nodes_per_schema`).
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// The schema of the whole body.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// JSON Schema 2020-12, as OpenAPI 3.1 uses it: `type` (an array when several were seen;
    /// integer and number together are `number`), `format` when nearly all strings agree,
    /// `enum` for constant-like strings, `properties` (sorted) and `required` (fields present
    /// in every complete object), `additionalProperties` for objects keyed by identifiers,
    /// `items`. A schema without samples is `{}`. The same schema always gives the same
    /// output.
    pub fn to_json_schema(&self) -> Value {
        self.root.to_json_schema()
    }
}

impl Serialize for Schema {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("samples", &self.root.samples)?;
        if self.partial_samples > 0 {
            m.serialize_entry("partial_samples", &self.partial_samples)?;
        }
        if self.truncated_samples > 0 {
            m.serialize_entry("truncated_samples", &self.truncated_samples)?;
        }
        m.serialize_entry("nodes", &self.nodes)?;
        m.serialize_entry("root", &self.root)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn learn(values: &[Value]) -> (Schema, SchemaStats) {
        learn_with(values, &SchemaConfig::default())
    }

    fn learn_with(values: &[Value], cfg: &SchemaConfig) -> (Schema, SchemaStats) {
        let mut schema = Schema::new();
        let mut stats = SchemaStats::default();
        for v in values {
            schema.observe(v, cfg, &mut stats);
        }
        (schema, stats)
    }

    fn js(values: &[Value]) -> Value {
        learn(values).0.to_json_schema()
    }

    #[test]
    fn scalar_types() {
        assert_eq!(js(&[json!(1)]), json!({"type": "integer"}));
        assert_eq!(js(&[json!(1.5)]), json!({"type": "number"}));
        assert_eq!(js(&[json!("x")]), json!({"type": "string"}));
        assert_eq!(js(&[json!(true)]), json!({"type": "boolean"}));
        assert_eq!(js(&[json!(null)]), json!({"type": "null"}));
        assert_eq!(Schema::new().to_json_schema(), json!({}));
    }

    #[test]
    fn integer_merged_with_number_is_number() {
        assert_eq!(js(&[json!(1), json!(2.5)]), json!({"type": "number"}));
        assert_eq!(
            js(&[json!(1), json!(2.5), json!(null)]),
            json!({"type": ["number", "null"]})
        );
    }

    #[test]
    fn several_types_are_a_type_array_in_fixed_order() {
        assert_eq!(
            js(&[json!(null), json!(true), json!("s"), json!({}), json!([])]),
            json!({"type": ["object", "array", "string", "boolean", "null"]})
        );
    }

    #[test]
    fn presence_counts_give_required_and_ratio() {
        let (s, _) = learn(&[
            json!({"id": 1, "name": "a"}),
            json!({"id": 2}),
            json!({"id": 3, "name": null}),
            json!({"id": 4, "name": "b"}),
        ]);
        let root = s.root();
        assert_eq!(root.object_count(), 4);
        assert_eq!(root.field("id").map(Field::present), Some(4));
        assert_eq!(root.field("name").map(Field::present), Some(3));
        assert!(root.is_required("id"));
        assert!(!root.is_required("name"));
        let out = s.to_json_schema();
        assert_eq!(out["required"], json!(["id"]));
        assert_eq!(out["properties"]["name"]["type"], json!(["string", "null"]));
        let summary = serde_json::to_value(&s).unwrap();
        let name = &summary["root"]["properties"]["name"];
        assert_eq!(name["present"], 3);
        assert_eq!(name["ratio"], 0.75);
        assert_eq!(name["required"], false);
    }

    #[test]
    fn properties_and_required_are_sorted() {
        let out = js(&[json!({"zeta": 1, "alpha": 2, "mid": 3})]);
        let keys: Vec<&String> = out["properties"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["alpha", "mid", "zeta"]);
        assert_eq!(out["required"], json!(["alpha", "mid", "zeta"]));
    }

    #[test]
    fn formats_need_near_agreement() {
        let ts = |i: u32| json!(format!("2024-01-{:02}T10:00:00Z", i % 28 + 1));
        let mut values: Vec<Value> = (0..19).map(ts).collect();
        values.push(json!("not a date"));
        assert_eq!(js(&values)["format"], "date-time", "19 of 20 agree");
        values.push(json!(""));
        assert_eq!(js(&values).get("format"), None, "19 of 21 do not");
        let out = js(&[json!("123e4567-e89b-12d3-a456-426614174000"), json!(null)]);
        assert_eq!(out, json!({"type": ["string", "null"], "format": "uuid"}));
    }

    #[test]
    fn format_counts_are_kept_per_kind() {
        let (s, _) = learn(&[json!("a@example.com"), json!("b@example.org"), json!("x")]);
        let kinds = s.root().kinds();
        assert_eq!(kinds.get(ValueKind::Email), 2);
        assert_eq!(kinds.get(ValueKind::Text), 1);
        assert_eq!(kinds.total(), 3);
        let summary = serde_json::to_value(&s).unwrap();
        assert_eq!(summary["root"]["kinds"], json!({"email": 2, "string": 1}));
    }

    #[test]
    fn numeric_strings_stay_strings() {
        assert_eq!(js(&[json!("42")]), json!({"type": "string"}));
    }

    #[test]
    fn arrays_merge_items_and_lengths() {
        let (s, _) = learn(&[json!([1, 2, 3]), json!([]), json!(["a"])]);
        assert_eq!(s.root().len_range(), Some((0, 3)));
        assert_eq!(
            s.to_json_schema(),
            json!({"type": "array", "items": {"type": ["string", "integer"]}})
        );
        let summary = serde_json::to_value(&s).unwrap();
        assert_eq!(summary["root"]["min_items"], 0);
        assert_eq!(summary["root"]["max_items"], 3);
        assert_eq!(summary["root"]["items"]["samples"], 4);
    }

    #[test]
    fn array_of_objects_counts_presence_per_item() {
        let out = js(&[json!([{"id": 1, "x": 1}, {"id": 2}])]);
        assert_eq!(out["items"]["required"], json!(["id"]));
    }

    #[test]
    fn number_range_is_kept_in_summary() {
        let (s, _) = learn(&[json!({"n": 5}), json!({"n": -3}), json!({"n": 12})]);
        assert_eq!(
            s.root().field("n").unwrap().node().range(),
            Some((-3.0, 12.0))
        );
        let summary = serde_json::to_value(&s).unwrap();
        assert_eq!(summary["root"]["properties"]["n"]["min"], json!(-3));
        assert_eq!(summary["root"]["properties"]["n"]["max"], json!(12));
        let (s, _) = learn(&[json!(0.5), json!(2)]);
        let summary = serde_json::to_value(&s).unwrap();
        assert_eq!(summary["root"]["min"], json!(0.5));
    }

    #[test]
    fn identifier_keys_are_a_map_not_fields() {
        let (s, _) = learn(&[json!({
            "1001": {"name": "a"},
            "1002": {"name": "b"},
            "123e4567-e89b-12d3-a456-426614174000": {"name": "c"},
        })]);
        assert_eq!(s.root().fields().count(), 0);
        assert_eq!(s.root().map_values().unwrap().samples(), 3);
        assert_eq!(
            s.to_json_schema(),
            json!({"type": "object", "additionalProperties": {
                "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]
            }})
        );
        assert_eq!(s.node_count(), 3, "root, map values, name");
    }

    #[test]
    fn depth_bound_stops_descent_and_is_counted() {
        let cfg = SchemaConfig {
            max_depth: 2,
            ..SchemaConfig::default()
        };
        let (s, stats) = learn_with(&[json!({"a": {"b": {"c": 1}}, "e": {"f": {}}})], &cfg);
        let b = s
            .root()
            .field("a")
            .unwrap()
            .node()
            .field("b")
            .unwrap()
            .node();
        assert_eq!(b.type_count(JsonType::Object), 1);
        assert!(b.is_truncated());
        assert_eq!(b.fields().count(), 0);
        let f = s
            .root()
            .field("e")
            .unwrap()
            .node()
            .field("f")
            .unwrap()
            .node();
        assert!(!f.is_truncated(), "an empty container loses nothing");
        assert_eq!(stats.depth_limit, 1);
        assert_eq!(stats.truncated_samples, 1);
        assert_eq!(s.truncated_samples(), 1);
        let summary = serde_json::to_value(&s).unwrap();
        assert_eq!(
            summary["root"]["properties"]["a"]["properties"]["b"]["truncated"],
            true
        );
    }

    #[test]
    fn field_bound_drops_new_fields_and_is_counted() {
        let cfg = SchemaConfig {
            max_fields_per_object: 2,
            ..SchemaConfig::default()
        };
        let (s, stats) = learn_with(
            &[json!({"a": 1, "b": 2, "c": 3}), json!({"a": 1, "d": 4})],
            &cfg,
        );
        let names: Vec<&str> = s.root().fields().map(|(k, _)| k).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(s.root().is_truncated());
        assert_eq!(stats.field_limit, 2);
        assert_eq!(stats.truncated_samples, 2);
    }

    #[test]
    fn node_bound_is_global_per_schema_and_counted() {
        let cfg = SchemaConfig {
            max_nodes_per_schema: 3,
            ..SchemaConfig::default()
        };
        let (s, stats) = learn_with(&[json!({"a": {"x": 1, "y": 2}, "b": [1]})], &cfg);
        assert_eq!(s.node_count(), 3);
        assert!(stats.node_limit >= 1);
        assert!(s.root().is_truncated() || s.root().field("a").unwrap().node().is_truncated());
    }

    #[test]
    fn array_item_bound_samples_the_first_items() {
        let cfg = SchemaConfig {
            max_items_per_array: 2,
            ..SchemaConfig::default()
        };
        let (s, stats) = learn_with(&[json!([1, 2, "late"])], &cfg);
        assert_eq!(s.root().items().unwrap().samples(), 2);
        assert_eq!(s.root().len_range(), Some((3, 3)));
        assert_eq!(stats.array_items_skipped, 1);
    }

    #[test]
    fn enums_from_repeated_constants() {
        let v: Vec<Value> = [
            "ACTIVE", "PENDING", "ACTIVE", "DISABLED", "ACTIVE", "PENDING",
        ]
        .iter()
        .cycle()
        .take(10)
        .map(|s| json!(s))
        .chain([json!(null)])
        .collect();
        assert_eq!(
            js(&v),
            json!({"type": ["string", "null"], "enum": ["ACTIVE", "DISABLED", "PENDING", null]})
        );
    }

    #[test]
    fn enum_needs_enough_samples() {
        assert_eq!(js(&[json!("a"), json!("b"), json!("c")]).get("enum"), None);
    }

    #[test]
    fn enum_never_keeps_identifiers_or_free_text() {
        for odd in [
            "a@example.com",
            "123e4567-e89b-12d3-a456-426614174000",
            "d41d8cd98f00b204e9800998ecf8427e",
            "eyJhbGciOiJIUzI1NiJ9xx12",
            "42",
            "two words",
            "order-2023-17",
            "a-very-long-constant-name-beyond-limit",
        ] {
            let mut v = vec![json!("OK"); 10];
            v.push(json!(odd));
            let (s, _) = learn(&v);
            assert_eq!(s.root().enum_values(), None, "{odd}");
            assert!(s.root().enum_values.is_empty(), "{odd}: values dropped");
        }
    }

    #[test]
    fn enum_bounded_by_distinct_values() {
        let cfg = SchemaConfig {
            max_enum_values: 2,
            ..SchemaConfig::default()
        };
        let v: Vec<Value> = ["a", "b", "c"]
            .iter()
            .cycle()
            .take(30)
            .map(|s| json!(s))
            .collect();
        let (s, _) = learn_with(&v, &cfg);
        assert_eq!(s.root().enum_values(), None);
        let off = SchemaConfig {
            max_enum_values: 0,
            ..SchemaConfig::default()
        };
        let (s, _) = learn_with(&vec![json!("A"); 10], &off);
        assert_eq!(s.root().enum_values(), None);
    }

    #[test]
    fn merge_equals_observing_everything_once() {
        let a = [
            json!({"id": 1, "tags": ["x"], "m": {"7": 1}}),
            json!({"id": 2}),
        ];
        let b = [json!({"id": 3.5, "name": "n"}), json!([1])];
        let (mut sa, _) = learn(&a);
        let (sb, _) = learn(&b);
        let all: Vec<Value> = a.iter().chain(&b).cloned().collect();
        let (whole, _) = learn(&all);
        let mut stats = SchemaStats::default();
        sa.merge(&sb, &SchemaConfig::default(), &mut stats);
        assert_eq!(sa.to_json_schema(), whole.to_json_schema());
        assert_eq!(
            serde_json::to_value(&sa).unwrap(),
            serde_json::to_value(&whole).unwrap()
        );
        assert_eq!(sa.node_count(), whole.node_count());
    }

    #[test]
    fn merge_respects_bounds() {
        let (big, _) = learn(&[json!({"a": 1, "b": 2, "c": 3})]);
        let cfg = SchemaConfig {
            max_fields_per_object: 1,
            ..SchemaConfig::default()
        };
        let mut small = Schema::new();
        let mut stats = SchemaStats::default();
        small.merge(&big, &cfg, &mut stats);
        assert_eq!(small.root().fields().count(), 1);
        assert_eq!(stats.field_limit, 2);
        assert!(small.root().is_truncated());
    }

    #[test]
    fn parse_errors_are_typed() {
        assert_eq!(parse_json(b"", false), Err(JsonError::Empty));
        assert_eq!(parse_json(b" \r\n", true), Err(JsonError::Empty));
        assert_eq!(parse_json(b"<html>", false), Err(JsonError::NotJson));
        assert_eq!(parse_json(b"<html>", true), Err(JsonError::NotJson));
        assert_eq!(parse_json(b"{\"a\":1} x", false), Err(JsonError::NotJson));
        assert_eq!(parse_json(b"{\"a\" 1", true), Err(JsonError::NotJson));
        assert_eq!(parse_json(b"12", true), Err(JsonError::Truncated));
        assert_eq!(parse_json(b"\"abc", true), Err(JsonError::Truncated));
        assert_eq!(parse_json(b"tr", false), Err(JsonError::Truncated));
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(parse_json(deep.as_bytes(), false), Err(JsonError::TooDeep));
        assert_eq!(
            parse_json(&deep.as_bytes()[..300], true),
            Err(JsonError::TooDeep)
        );
        let mut stats = SchemaStats::default();
        stats.count_parse(&parse_json(b"<", false));
        stats.count_parse(&parse_json(b"{}", false));
        assert_eq!(stats.bodies_not_json, 1);
        assert_eq!(JsonError::TooDeep.as_str(), "too_deep");
    }

    #[test]
    fn parse_skips_bom_and_keeps_complete_bodies() {
        let b = parse_json(b"\xEF\xBB\xBF{\"a\": [1]}", true).unwrap();
        assert!(!b.is_partial());
        assert_eq!(b.into_value(), json!({"a": [1]}));
        assert_eq!(parse_json(b"\"s\"", true).unwrap().value(), &json!("s"));
        assert_eq!(parse_json(b"12", false).unwrap().value(), &json!(12));
    }

    #[test]
    fn truncated_prefix_keeps_complete_values() {
        let cases: [(&str, Value); 9] = [
            (r#"{"a": 1, "b": "xy"#, json!({"a": 1})),
            (r#"{"a": 1, "b": 2"#, json!({"a": 1})),
            (r#"{"a": 1,"#, json!({"a": 1})),
            (r#"{"a": {"b": [1, 2, 3"#, json!({"a": {"b": [1, 2]}})),
            (r#"{"a": {"b": [1, 2, 3]"#, json!({"a": {"b": [1, 2, 3]}})),
            (
                r#"[{"id": 1}, {"id": 2, "n": tr"#,
                json!([{"id": 1}, {"id": 2}]),
            ),
            (r#"{"k\"ey": [{"x": "}],"#, json!({"k\"ey": [{}]})),
            (r#"{"#, json!({})),
            (r#"[[[], [1"#, json!([[[], []]])),
        ];
        for (text, want) in cases {
            let body = parse_json(text.as_bytes(), true).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(body.is_partial(), "{text}");
            assert_eq!(body.value(), &want, "{text}");
        }
    }

    #[test]
    fn truncated_prefix_does_not_make_fields_optional() {
        let mut s = Schema::new();
        let cfg = SchemaConfig::default();
        let mut stats = SchemaStats::default();
        let full = parse_json(br#"{"items": [{"id": 1, "name": "a"}], "total": 1}"#, false);
        s.observe_body(&full.unwrap(), &cfg, &mut stats);
        let cut = parse_json(br#"{"items": [{"id": 1, "name": "a"}, {"id": 2, "na"#, true);
        s.observe_body(&cut.unwrap(), &cfg, &mut stats);
        assert_eq!(stats.partial_samples, 1);
        assert_eq!(s.partial_samples(), 1);
        let root = s.root();
        assert_eq!(
            root.object_count(),
            1,
            "the cut root object is not a whole sample"
        );
        assert!(root.is_required("total"), "missing only because of the cut");
        let items = root.field("items").unwrap().node();
        assert_eq!(items.len_range(), Some((1, 1)), "cut array length unknown");
        let item = items.items().unwrap();
        assert_eq!(item.samples(), 3);
        assert_eq!(item.object_count(), 2);
        assert!(item.is_required("name"));
        assert_eq!(item.field("id").unwrap().node().samples(), 3);
    }

    #[test]
    fn eof_without_truncated_flag_is_salvaged_too() {
        let b = parse_json(br#"[1, 2, 3"#, false).unwrap();
        assert!(b.is_partial());
        assert_eq!(b.value(), &json!([1, 2]));
    }

    #[test]
    fn summary_shape() {
        let (s, _) = learn(&[json!({"id": 1, "tags": ["a", "b"]})]);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({
                "samples": 1,
                "nodes": 4,
                "root": {
                    "samples": 1, "types": {"object": 1}, "objects": 1,
                    "properties": {
                        "id": {"present": 1, "ratio": 1.0, "required": true, "samples": 1,
                               "types": {"integer": 1}, "min": 1, "max": 1},
                        "tags": {"present": 1, "ratio": 1.0, "required": true, "samples": 1,
                                 "types": {"array": 1}, "arrays": 1, "min_items": 2,
                                 "max_items": 2,
                                 "items": {"samples": 2, "types": {"string": 2},
                                           "kinds": {"string": 2}}}
                    }
                }
            })
        );
    }

    #[test]
    fn stats_list_and_merge() {
        let mut a = SchemaStats {
            samples: 2,
            ..SchemaStats::default()
        };
        a.merge(&SchemaStats {
            samples: 3,
            depth_limit: 1,
            ..SchemaStats::default()
        });
        assert_eq!(a.samples, 5);
        assert!(a.counters().contains(&("depth_limit", 1)));
    }

    /// A small deterministic generator for the no-panic tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self, alphabet: &[u8], max_len: usize) -> Vec<u8> {
            let len = (self.next() % (max_len as u64 + 1)) as usize;
            (0..len)
                .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn no_panic_on_random_bytes() {
        let all: Vec<u8> = (0..=255).collect();
        let json_ish = br#"{}[],:"\ 0123456789.eE+-truefalsnul"#;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let cfg = SchemaConfig {
            max_nodes_per_schema: 50,
            max_depth: 4,
            ..SchemaConfig::default()
        };
        let mut schema = Schema::new();
        let mut stats = SchemaStats::default();
        for i in 0..20_000 {
            let input = if i % 2 == 0 {
                rng.bytes(&all, 64)
            } else {
                rng.bytes(json_ish, 64)
            };
            let truncated = rng.next() % 2 == 0;
            let r = parse_json(&input, truncated);
            stats.count_parse(&r);
            if let Ok(body) = r {
                schema.observe_body(&body, &cfg, &mut stats);
            }
        }
        let _ = schema.to_json_schema();
        let _ = serde_json::to_string(&schema).unwrap();
        assert!(schema.node_count() <= 50);
    }

    #[test]
    fn no_panic_on_every_prefix_of_a_real_body() {
        let body = br#"{"data": {"users": [{"id": "123e4567-e89b-12d3-a456-426614174000", "email": "a@b.co", "roles": ["ADMIN"], "meta": {"1": true}, "n": -1.5e3, "s": "q\"\\u00e9"}], "next": null}}"#;
        let mut schema = Schema::new();
        let mut stats = SchemaStats::default();
        for end in 0..=body.len() {
            if let Ok(b) = parse_json(&body[..end], end < body.len()) {
                schema.observe_body(&b, &SchemaConfig::default(), &mut stats);
            }
        }
        let out = schema.to_json_schema();
        assert_eq!(
            out["properties"]["data"]["properties"]["users"]["items"]["properties"]["id"]["format"],
            "uuid"
        );
    }
}
