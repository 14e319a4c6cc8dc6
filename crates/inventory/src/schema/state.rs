//! The lossless state form of a [`Schema`], saved at shutdown (or every flush) and loaded at
//! the next start so that counting goes on where it stopped; and what the state forms of
//! this crate share: [`StateError`], the version, the encoding of [`KindCounts`] and of
//! numbers. [`ParamSet::save`](crate::params::ParamSet::save) uses the same conventions.
//!
//! # Design
//!
//! The [`Serialize`](serde::Serialize) implementations of [`Schema`], [`Node`] and
//! [`KindCounts`] write the compact summary of the inventory's output, which leaves out what
//! the output does not need (enum constants not yet exported, whether an enum was closed,
//! number ranges as `f64`). The state is a
//! separate form, written by [`Schema::save`] as a [`serde_json::Value`] and read back by
//! [`Schema::load`], so the summary can change without breaking saved states and the other
//! way round. `Schema::load(&schema.save(), ..)` is `==` to `schema`, also after the value
//! went through JSON text, and observing more input after loading gives what observing it
//! without the save would have given.
//!
//! # Format
//!
//! This is the state of `{"id": 1, "tags": ["a", "b"]}` followed by the cut body
//! `{"id": 2.5, "tags": ["a", "b"` (the root and `tags` of the cut body were open, so they
//! count as samples but not as complete objects or arrays):
//!
//! ```json
//! {"version": 1, "partial_samples": 1, "nodes": [
//!   {"samples": 2, "types": {"object": 2}, "objects": 1},
//!   {"parent": 0, "in": "field", "name": "id", "present": 1, "samples": 2,
//!    "types": {"integer": 1, "number": 1}, "min": 1, "max": "2.5"},
//!   {"parent": 0, "in": "field", "name": "tags", "present": 1, "samples": 2,
//!    "types": {"array": 2}, "arrays": 1, "min_len": 2, "max_len": 2},
//!   {"parent": 2, "in": "items", "samples": 3, "types": {"string": 3},
//!    "kinds": {"string": 3}, "enum": ["a", "b"]}
//! ]}
//! ```
//!
//! - The nodes are a flat list in pre-order (the root first; each node after its parent),
//!   so the JSON nesting does not grow with the schema's depth: `serde_json` refuses to
//!   parse text nested deeper than 128 levels, which a nested form would reach with
//!   `max_depth` around 40.
//! - A node other than the root names its `parent` (an index into `nodes`) and its place
//!   there, `in`: `"field"` (with its `name` and `present`, the complete objects of the
//!   parent that had it), `"map_values"` or `"items"`.
//! - `samples`; `types` and `kinds` (counts by [`JsonType`] and [`ValueKind`] name, zeros
//!   left out); `enum` (the enum-like constants, sorted) and `enum_closed`; `min` and
//!   `max`; `objects` (complete objects; present when the node holds object fields at all,
//!   even with 0); `arrays`, `min_len`, `max_len` likewise; `truncated`. Zero counts, empty
//!   lists and false flags are left out.
//! - Numbers: an integral `f64` of at most 2^53 is written as a JSON integer, any other as a
//!   string in Rust's shortest round-trip notation (`"2.5"`, `"1e-300"`): `serde_json`'s
//!   default float parser is not exact (it may be one unit in the last place off), so a
//!   float written as a JSON number would not come back equal. Load takes both forms.
//! - Unknown keys are ignored, so a later version may add some without a version change.
//!
//! # Validation
//!
//! [`Schema::load`] never panics, whatever the value. It fails with [`StateError`] when the
//! state is not one this code could have written: wrong JSON types, missing entries,
//! negative or fractional counts, counts above [`MAX_STATE_COUNT`], unknown type or kind
//! names, a newer `version`, counts that do not add up (the type counts of a node must sum
//! to its samples, its kinds to its strings, a field cannot be present in more objects than
//! its parent saw, ...), a parent that does not come before its child, two children in the
//! same place, nodes nested deeper than [`MAX_STATE_DEPTH`].
//!
//! A state that is valid but exceeds the *configured* bounds (the configuration changed
//! between runs, or the state was edited) is accepted and cut down to them exactly as
//! [`Schema::merge`] would cut it: fields beyond `max_fields_per_object` (in name order) and
//! nodes beyond `max_nodes_per_schema` (in pre-order) are dropped, children deeper than
//! `max_depth` are not kept, too many enum constants close the enum, and the nodes where
//! something was dropped are marked truncated; `SchemaStats`' `field_limit`, `node_limit`
//! and `depth_limit` count what was dropped. Enum constants that the configuration would
//! not keep (longer than `max_enum_value_bytes`, or not shaped like a constant) close the
//! enum, so a state can never smuggle a value that observing would not have stored.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{
    is_enum_constant, ArrayShape, Field, JsonType, KindCounts, Node, ObjectShape, Schema,
    SchemaConfig, SchemaStats, MAX_PARSE_DEPTH,
};
use crate::value::{classify, ValueKind};

/// The version written in every state; [`Schema::load`] refuses a newer one.
pub const STATE_VERSION: u64 = 1;

/// The largest count a state may hold (`i64::MAX`, as SQLite stores integers). Real counts
/// never get near it; the bound keeps later additions from overflowing.
pub const MAX_STATE_COUNT: u64 = i64::MAX as u64;

/// The deepest node a schema state may hold (the root is depth 0). Deeper states are
/// refused: every walk over a schema is recursive. Bodies parsed by
/// [`parse_json`](super::parse_json) nest at most 128 levels.
pub const MAX_STATE_DEPTH: usize = 2 * MAX_PARSE_DEPTH;

/// Why a saved state could not be loaded. `path` points into the state, JSONPath-like:
/// `$.nodes[3].types.integer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Written by a newer build (or not a state at all).
    #[error("state version {found} is not supported (this build reads version {STATE_VERSION})")]
    Version { found: u64 },
    /// A required entry is absent (or `null`).
    #[error("state: `{path}` is missing")]
    Missing { path: String },
    /// An entry of the wrong JSON type, or a value out of range.
    #[error("state: `{path}`: {problem}")]
    Invalid { path: String, problem: String },
    /// Entries that contradict each other.
    #[error("state: `{path}`: {problem}")]
    Inconsistent { path: String, problem: &'static str },
    /// Nodes nested deeper than [`MAX_STATE_DEPTH`].
    #[error("state: `{path}`: nested deeper than {limit} levels")]
    TooDeep { path: String, limit: usize },
}

/// A position in a state, rendered only when there is an error.
#[derive(Debug, Clone, Copy)]
pub(crate) enum At<'a> {
    Top,
    Key(&'a At<'a>, &'static str),
    Name(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl<'a> At<'a> {
    pub(crate) fn key(&self, key: &'static str) -> At<'_> {
        At::Key(self, key)
    }

    pub(crate) fn name<'s>(&'s self, name: &'s str) -> At<'s> {
        At::Name(self, name)
    }

    pub(crate) fn index(&self, i: usize) -> At<'_> {
        At::Index(self, i)
    }

    fn render(&self) -> String {
        let mut chain = Vec::new();
        let mut at = self;
        loop {
            chain.push(at);
            at = match at {
                At::Top => break,
                At::Key(p, _) | At::Name(p, _) | At::Index(p, _) => p,
            };
        }
        let mut out = String::new();
        for at in chain.into_iter().rev() {
            match at {
                At::Top => out.push('$'),
                At::Key(_, k) => {
                    out.push('.');
                    out.push_str(k);
                }
                At::Name(_, n) => {
                    out.push('[');
                    out.push_str(&Value::from(*n).to_string());
                    out.push(']');
                }
                At::Index(_, i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    pub(crate) fn missing(&self) -> StateError {
        StateError::Missing {
            path: self.render(),
        }
    }

    pub(crate) fn invalid(&self, problem: impl Into<String>) -> StateError {
        StateError::Invalid {
            path: self.render(),
            problem: problem.into(),
        }
    }

    pub(crate) fn inconsistent(&self, problem: &'static str) -> StateError {
        StateError::Inconsistent {
            path: self.render(),
            problem,
        }
    }

    /// `Err(inconsistent(problem))` unless `ok`.
    pub(crate) fn ensure(&self, ok: bool, problem: &'static str) -> Result<(), StateError> {
        if ok {
            Ok(())
        } else {
            Err(self.inconsistent(problem))
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `v` as an object.
pub(crate) fn object<'v>(v: &'v Value, at: &At<'_>) -> Result<&'v Map<String, Value>, StateError> {
    v.as_object()
        .ok_or_else(|| at.invalid(format!("expected an object, found {}", type_name(v))))
}

/// The entry `key` of `m`; `None` when absent or `null`.
pub(crate) fn entry<'v>(m: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    m.get(key).filter(|v| !v.is_null())
}

/// `v` as a count: an integer from 0 to [`MAX_STATE_COUNT`].
pub(crate) fn count_value(v: &Value, at: &At<'_>) -> Result<u64, StateError> {
    match v.as_u64() {
        Some(n) if n <= MAX_STATE_COUNT => Ok(n),
        Some(_) => Err(at.invalid("count too large")),
        None => Err(at.invalid(format!(
            "expected a count (an integer >= 0), found {}",
            match v {
                Value::Number(_) => "a negative or fractional number",
                _ => type_name(v),
            }
        ))),
    }
}

/// The count `key` of `m`; 0 when absent unless `required`.
pub(crate) fn count(
    m: &Map<String, Value>,
    key: &'static str,
    at: &At<'_>,
    required: bool,
) -> Result<u64, StateError> {
    match entry(m, key) {
        Some(v) => count_value(v, &at.key(key)),
        None if required => Err(at.key(key).missing()),
        None => Ok(0),
    }
}

/// The flag `key` of `m`; false when absent.
pub(crate) fn flag(
    m: &Map<String, Value>,
    key: &'static str,
    at: &At<'_>,
) -> Result<bool, StateError> {
    match entry(m, key) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(at
            .key(key)
            .invalid(format!("expected a boolean, found {}", type_name(v)))),
        None => Ok(false),
    }
}

/// The string `key` of `m`, which must be there.
pub(crate) fn string<'v>(
    m: &'v Map<String, Value>,
    key: &'static str,
    at: &At<'_>,
) -> Result<&'v str, StateError> {
    match entry(m, key) {
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(at
            .key(key)
            .invalid(format!("expected a string, found {}", type_name(v)))),
        None => Err(at.key(key).missing()),
    }
}

/// Checks the `version` of a state object.
pub(crate) fn check_version(m: &Map<String, Value>, at: &At<'_>) -> Result<(), StateError> {
    let found = count(m, "version", at, true)?;
    if found == 0 || found > STATE_VERSION {
        return Err(StateError::Version { found });
    }
    Ok(())
}

/// `a + b`, or an error when the sum leaves the range of counts.
pub(crate) fn add_counts(a: u64, b: u64, at: &At<'_>) -> Result<u64, StateError> {
    a.checked_add(b)
        .filter(|&n| n <= MAX_STATE_COUNT)
        .ok_or_else(|| at.invalid("counts add up to more than a count can hold"))
}

/// Every [`ValueKind`], in order (the test `kind_list_is_complete` keeps it complete).
const KINDS: [ValueKind; 14] = [
    ValueKind::Empty,
    ValueKind::Boolean,
    ValueKind::Integer,
    ValueKind::Number,
    ValueKind::Uuid,
    ValueKind::ObjectId,
    ValueKind::Hex,
    ValueKind::Date,
    ValueKind::DateTime,
    ValueKind::Email,
    ValueKind::Ipv4,
    ValueKind::Token,
    ValueKind::SlugWithDigits,
    ValueKind::Text,
];

/// The kind whose [`ValueKind::as_str`] is `name`.
fn kind_from_name(name: &str) -> Option<ValueKind> {
    KINDS.into_iter().find(|k| k.as_str() == name)
}

impl KindCounts {
    /// Reads the map its [`Serialize`](serde::Serialize) implementation writes, checking the
    /// names and that the counts and their total are within [`MAX_STATE_COUNT`].
    pub(crate) fn from_state(v: &Value, at: &At<'_>) -> Result<KindCounts, StateError> {
        let mut counts = Vec::new();
        let mut total = 0u64;
        for (name, n) in object(v, at)? {
            let at = at.name(name);
            let kind = kind_from_name(name)
                .ok_or_else(|| at.invalid(format!("unknown value kind `{name}`")))?;
            let n = count_value(n, &at)?;
            total = add_counts(total, n, &at)?;
            counts.push((kind, n));
        }
        counts.sort_unstable_by_key(|&(k, _)| k);
        Ok(KindCounts(counts))
    }

    /// The state form: the same `{"uuid": 3, "empty": 1}` map as the summary.
    pub(crate) fn to_state(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|&(k, n)| (k.as_str().to_owned(), Value::from(n)))
                .collect(),
        )
    }
}

/// Reads what `KindCounts`' `Serialize` writes (`{"uuid": 3, "empty": 1}`), so the two
/// round-trip; an unknown kind name is an error.
impl<'de> Deserialize<'de> for KindCounts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KindCounts, D::Error> {
        struct V;

        impl<'de> Visitor<'de> for V {
            type Value = KindCounts;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from value kind names to counts")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<KindCounts, A::Error> {
                let mut counts = KindCounts::default();
                while let Some((name, n)) = a.next_entry::<std::borrow::Cow<'de, str>, u64>()? {
                    let kind = kind_from_name(&name).ok_or_else(|| {
                        A::Error::custom(format_args!("unknown value kind `{name}`"))
                    })?;
                    if counts.0.iter().any(|&(k, _)| k == kind) {
                        return Err(A::Error::custom(format_args!(
                            "duplicate value kind `{name}`"
                        )));
                    }
                    counts.add_n(kind, n);
                }
                Ok(counts)
            }
        }

        d.deserialize_map(V)
    }
}

/// 2^53: integral `f64`s up to this are exact as JSON integers.
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// A number for a state: a JSON integer when that is exact, else a string that parses back
/// to the same `f64` (see the module documentation).
pub(crate) fn f64_to_state(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() <= EXACT_INTEGER && !(x == 0.0 && x.is_sign_negative()) {
        Value::from(x as i64)
    } else {
        Value::String(format!("{x:?}"))
    }
}

/// Reads what [`f64_to_state`] writes (or any JSON number); it must be finite.
pub(crate) fn f64_from_state(v: &Value, at: &At<'_>) -> Result<f64, StateError> {
    let x = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    x.filter(|x| x.is_finite()).ok_or_else(|| {
        at.invalid(format!(
            "expected a finite number (or a string holding one), found {}",
            match v {
                Value::String(_) => "another string",
                _ => type_name(v),
            }
        ))
    })
}

/// Where a node sits in its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Field,
    MapValues,
    Items,
}

impl Place {
    const fn as_str(self) -> &'static str {
        match self {
            Place::Field => "field",
            Place::MapValues => "map_values",
            Place::Items => "items",
        }
    }
}

/// A non-root node's link to its parent while saving: parent index, place, field name and
/// `present`.
type Saved<'a> = (usize, Place, Option<(&'a str, u64)>);

/// A non-root node's link to its parent, as read from the state.
struct Link<'v> {
    parent: usize,
    place: Place,
    /// The field's name and `present` for [`Place::Field`].
    field: Option<(&'v str, u64)>,
}

impl Node {
    /// This node's own entries (not its children) into `m`.
    fn write_state(&self, m: &mut Map<String, Value>) {
        m.insert("samples".into(), self.samples.into());
        let types: Map<String, Value> = self
            .types()
            .map(|(t, n)| (t.as_str().to_owned(), Value::from(n)))
            .collect();
        if !types.is_empty() {
            m.insert("types".into(), Value::Object(types));
        }
        if !self.kinds.is_empty() {
            m.insert("kinds".into(), self.kinds.to_state());
        }
        if !self.enum_values.is_empty() {
            let values = self.enum_values.iter().map(|v| Value::from(&**v)).collect();
            m.insert("enum".into(), Value::Array(values));
        }
        if self.enum_closed {
            m.insert("enum_closed".into(), true.into());
        }
        if let Some(x) = self.min {
            m.insert("min".into(), f64_to_state(x));
        }
        if let Some(x) = self.max {
            m.insert("max".into(), f64_to_state(x));
        }
        if let Some(o) = &self.object {
            m.insert("objects".into(), o.count.into());
        }
        if let Some(a) = &self.array {
            m.insert("arrays".into(), a.count.into());
            if a.min_len != 0 || a.max_len != 0 {
                m.insert("min_len".into(), a.min_len.into());
                m.insert("max_len".into(), a.max_len.into());
            }
        }
        if self.truncated {
            m.insert("truncated".into(), true.into());
        }
    }

    /// A node's own entries (no children yet) from its state object.
    fn from_state(
        m: &Map<String, Value>,
        at: &At<'_>,
        cfg: &SchemaConfig,
    ) -> Result<Node, StateError> {
        let mut node = Node {
            samples: count(m, "samples", at, true)?,
            ..Node::default()
        };
        if let Some(v) = entry(m, "types") {
            let at = at.key("types");
            let mut total = 0u64;
            for (name, n) in object(v, &at)? {
                let at = at.name(name);
                let t = JsonType::ALL
                    .into_iter()
                    .find(|t| t.as_str() == name)
                    .ok_or_else(|| at.invalid(format!("unknown JSON type `{name}`")))?;
                let n = count_value(n, &at)?;
                total = add_counts(total, n, &at)?;
                node.types[super::type_index(t)] = n;
            }
            at.ensure(
                total == node.samples,
                "type counts do not add up to `samples`",
            )?;
        } else {
            at.key("types")
                .ensure(node.samples == 0, "missing while `samples` is not 0")?;
        }
        if let Some(v) = entry(m, "kinds") {
            node.kinds = KindCounts::from_state(v, &at.key("kinds"))?;
        }
        at.key("kinds").ensure(
            node.kinds.total() == node.type_count(JsonType::String),
            "kind counts do not add up to the string count",
        )?;
        node.enum_closed = flag(m, "enum_closed", at)?;
        if let Some(v) = entry(m, "enum") {
            let at = at.key("enum");
            let Value::Array(values) = v else {
                return Err(at.invalid(format!("expected an array, found {}", type_name(v))));
            };
            let mut prev: Option<&str> = None;
            let mut keep = values.len() <= cfg.max_enum_values;
            for (i, v) in values.iter().enumerate() {
                let at = at.index(i);
                let Value::String(s) = v else {
                    return Err(at.invalid(format!("expected a string, found {}", type_name(v))));
                };
                at.ensure(
                    prev < Some(s.as_str()),
                    "enum values not sorted and distinct",
                )?;
                prev = Some(s);
                keep &= is_enum_constant(s, classify(s), cfg);
            }
            at.ensure(
                !node.enum_closed || values.is_empty(),
                "values of a closed enum",
            )?;
            if keep {
                node.enum_values = values
                    .iter()
                    .filter_map(Value::as_str)
                    .map(Box::from)
                    .collect();
            } else if !values.is_empty() {
                // More constants than allowed, or one the configuration would not store:
                // what observing them would have done.
                node.close_enum();
            }
        }
        let (min, max) = (entry(m, "min"), entry(m, "max"));
        if let (Some(lo), Some(hi)) = (min, max) {
            let lo = f64_from_state(lo, &at.key("min"))?;
            let hi = f64_from_state(hi, &at.key("max"))?;
            at.key("min").ensure(lo <= hi, "greater than `max`")?;
            (node.min, node.max) = (Some(lo), Some(hi));
        } else if min.is_some() || max.is_some() {
            return Err(at.inconsistent("`min` and `max` must come together"));
        }
        if entry(m, "objects").is_some() {
            let count = count(m, "objects", at, true)?;
            at.key("objects").ensure(
                count <= node.type_count(JsonType::Object),
                "more complete objects than objects",
            )?;
            node.object = Some(Box::new(ObjectShape {
                count,
                ..ObjectShape::default()
            }));
        }
        let (min_len, max_len) = (
            count(m, "min_len", at, false)?,
            count(m, "max_len", at, false)?,
        );
        if entry(m, "arrays").is_some() {
            let count = count(m, "arrays", at, true)?;
            at.key("arrays").ensure(
                count <= node.type_count(JsonType::Array),
                "more complete arrays than arrays",
            )?;
            at.key("min_len")
                .ensure(min_len <= max_len, "greater than `max_len`")?;
            at.key("min_len").ensure(
                count > 0 || max_len == 0,
                "array lengths without complete arrays",
            )?;
            node.array = Some(Box::new(ArrayShape {
                count,
                min_len,
                max_len,
                items: None,
            }));
        } else {
            at.key("min_len").ensure(
                min_len == 0 && max_len == 0,
                "array lengths without `arrays`",
            )?;
        }
        node.truncated = flag(m, "truncated", at)?;
        Ok(node)
    }
}

/// A node's link to its parent from its state object (`None` for the root).
fn link_from_state<'v>(
    m: &'v Map<String, Value>,
    i: usize,
    at: &At<'_>,
) -> Result<Option<Link<'v>>, StateError> {
    let Some(parent) = entry(m, "parent") else {
        return if i == 0 {
            Ok(None)
        } else {
            Err(at.key("parent").missing())
        };
    };
    let at_parent = at.key("parent");
    at_parent.ensure(i > 0, "the root has no parent")?;
    let parent = count_value(parent, &at_parent)?;
    at_parent.ensure(parent < i as u64, "a parent must come before its children")?;
    let place = match string(m, "in", at)? {
        "field" => Place::Field,
        "map_values" => Place::MapValues,
        "items" => Place::Items,
        other => {
            return Err(at.key("in").invalid(format!(
                "expected \"field\", \"map_values\" or \"items\", found {:?}",
                other
            )))
        }
    };
    let field = match place {
        Place::Field => Some((string(m, "name", at)?, count(m, "present", at, true)?)),
        Place::MapValues | Place::Items => None,
    };
    Ok(Some(Link {
        parent: parent as usize,
        place,
        field,
    }))
}

/// Attaches `child` to `parent` at `link`.
fn attach(parent: &mut Node, link: &Link<'_>, child: Node, at: &At<'_>) -> Result<(), StateError> {
    let at_in = at.key("in");
    match link.place {
        Place::Field | Place::MapValues => {
            let Some(shape) = parent.object.as_deref_mut() else {
                return Err(at_in.inconsistent("a child of objects under a node without `objects`"));
            };
            if let Some((name, present)) = link.field {
                at.key("present").ensure(
                    present <= shape.count,
                    "present in more objects than its parent saw",
                )?;
                let field = Field {
                    present,
                    node: child,
                };
                if shape.fields.insert(name.to_owned(), field).is_some() {
                    return Err(at.key("name").inconsistent("a field named twice"));
                }
            } else {
                at_in.ensure(shape.additional.is_none(), "two `map_values` nodes")?;
                shape.additional = Some(child);
            }
        }
        Place::Items => {
            let Some(shape) = parent.array.as_deref_mut() else {
                return Err(at_in.inconsistent("`items` under a node without `arrays`"));
            };
            at_in.ensure(shape.items.is_none(), "two `items` nodes")?;
            shape.items = Some(child);
        }
    }
    Ok(())
}

impl Schema {
    /// The lossless state of this schema, to store and give to [`Schema::load`] at the next
    /// start. See [`state`](crate::schema::state) for the format.
    pub fn save(&self) -> Value {
        let mut nodes = Vec::with_capacity(self.nodes);
        // Pre-order with an explicit stack: (node, parent index, place, field).
        let mut stack: Vec<(&Node, Option<Saved<'_>>)> = vec![(&self.root, None)];
        while let Some((node, link)) = stack.pop() {
            let mut m = Map::new();
            if let Some((parent, place, field)) = link {
                m.insert("parent".into(), parent.into());
                m.insert("in".into(), place.as_str().into());
                if let Some((name, present)) = field {
                    m.insert("name".into(), name.into());
                    m.insert("present".into(), present.into());
                }
            }
            node.write_state(&mut m);
            let me = nodes.len();
            nodes.push(Value::Object(m));
            // Pushed in reverse, so fields come first (by name), then map values, then items.
            if let Some(items) = node.items() {
                stack.push((items, Some((me, Place::Items, None))));
            }
            if let Some(o) = &node.object {
                if let Some(add) = &o.additional {
                    stack.push((add, Some((me, Place::MapValues, None))));
                }
                for (name, f) in o.fields.iter().rev() {
                    let field = Some((name.as_str(), f.present));
                    stack.push((&f.node, Some((me, Place::Field, field))));
                }
            }
        }
        let mut m = Map::new();
        m.insert("version".into(), STATE_VERSION.into());
        if self.partial_samples > 0 {
            m.insert("partial_samples".into(), self.partial_samples.into());
        }
        if self.truncated_samples > 0 {
            m.insert("truncated_samples".into(), self.truncated_samples.into());
        }
        m.insert("nodes".into(), Value::Array(nodes));
        Value::Object(m)
    }

    /// A schema back from what [`Schema::save`] wrote, within the bounds of `cfg`: a state
    /// beyond them is cut down as [`Schema::merge`] would, counted in `stats`
    /// (`field_limit`, `node_limit`, `depth_limit`). Unknown keys are ignored.
    ///
    /// # Errors
    ///
    /// [`StateError`] when `state` is not a schema state this code could have written (see
    /// [`state`](crate::schema::state)); never panics.
    pub fn load(
        state: &Value,
        cfg: &SchemaConfig,
        stats: &mut SchemaStats,
    ) -> Result<Schema, StateError> {
        let top = At::Top;
        let m = object(state, &top)?;
        check_version(m, &top)?;
        let at_nodes = top.key("nodes");
        let list = match entry(m, "nodes") {
            Some(Value::Array(list)) => list,
            Some(v) => {
                return Err(at_nodes.invalid(format!("expected an array, found {}", type_name(v))))
            }
            None => return Err(at_nodes.missing()),
        };
        if list.is_empty() {
            return Err(at_nodes.index(0).missing());
        }
        // Read every node on its own, check the links, then attach children to parents
        // from the last node back: every node comes after its parent, so its own children
        // are attached before it is.
        let mut nodes: Vec<Option<Node>> = Vec::with_capacity(list.len());
        let mut links: Vec<Option<Link<'_>>> = Vec::with_capacity(list.len());
        let mut depths: Vec<usize> = Vec::with_capacity(list.len());
        let mut fields_per_parent: Vec<usize> = vec![0; list.len()];
        let mut fits = list.len() <= cfg.max_nodes_per_schema;
        for (i, v) in list.iter().enumerate() {
            let at = at_nodes.index(i);
            let nm = object(v, &at)?;
            let link = link_from_state(nm, i, &at)?;
            let depth = match &link {
                None => 0,
                Some(l) => depths[l.parent] + 1,
            };
            if depth > MAX_STATE_DEPTH {
                return Err(StateError::TooDeep {
                    path: at.render(),
                    limit: MAX_STATE_DEPTH,
                });
            }
            // A node deeper than `max_depth` is a child of a node `merge` would not descend
            // into.
            fits &= depth <= cfg.max_depth;
            if let Some(Link {
                parent,
                place: Place::Field,
                ..
            }) = link
            {
                fields_per_parent[parent] += 1;
                fits &= fields_per_parent[parent] <= cfg.max_fields_per_object;
            }
            nodes.push(Some(Node::from_state(nm, &at, cfg)?));
            links.push(link);
            depths.push(depth);
        }
        for i in (1..nodes.len()).rev() {
            let (Some(child), Some(link)) = (nodes[i].take(), links[i].as_ref()) else {
                continue;
            };
            let at = at_nodes.index(i);
            let Some(parent) = nodes[link.parent].as_mut() else {
                return Err(at
                    .key("parent")
                    .inconsistent("a parent must come before its children"));
            };
            attach(parent, link, child, &at)?;
        }
        let root = nodes[0].take().unwrap_or_default();
        let partial_samples = count(m, "partial_samples", &top, false)?;
        let truncated_samples = count(m, "truncated_samples", &top, false)?;
        top.key("partial_samples").ensure(
            partial_samples <= root.samples,
            "more than the root's samples",
        )?;
        top.key("truncated_samples").ensure(
            truncated_samples <= root.samples,
            "more than the root's samples",
        )?;
        let raw = Schema {
            root,
            nodes: list.len(),
            partial_samples,
            truncated_samples,
        };
        if fits {
            return Ok(raw);
        }
        let mut schema = Schema::new();
        schema.merge(&raw, cfg, stats);
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_json;
    use super::*;
    use serde_json::json;

    /// A small deterministic generator.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }
    }

    const KEYS: [&str; 12] = [
        "id", "name", "email", "tags", "items", "meta", "status", "a.b", "", "ünï", "n", "x\"y",
    ];
    const STRINGS: [&str; 16] = [
        "ACTIVE",
        "PENDING",
        "DISABLED",
        "a@example.com",
        "123e4567-e89b-12d3-a456-426614174000",
        "2024-01-05",
        "2024-01-05T10:00:00Z",
        "",
        "42",
        "two words",
        "true",
        "507f1f77bcf86cd799439011",
        "order-2023-17",
        "10.0.0.1",
        "a-very-long-constant-name-beyond-limit",
        "x",
    ];
    const FLOATS: [f64; 10] = [
        0.1,
        -2.5,
        1e-300,
        1.797_693_134_862_315_7e308,
        5e-324,
        -0.0,
        0.1 + 0.2,
        1_568_448_189_119.885_7,
        9_007_199_254_740_994.0,
        -1.819_967_304_027_17e-179,
    ];

    fn random_value(rng: &mut Rng, depth: usize) -> Value {
        let leaf = depth >= 5 || rng.below(3) == 0;
        match if leaf { rng.below(6) } else { 6 + rng.below(3) } {
            0 => Value::Null,
            1 => Value::Bool(rng.below(2) == 0),
            2 => json!(rng.below(2000) as i64 - 1000),
            3 => json!(*rng.pick(&FLOATS)),
            4 => json!(f64::from_bits(rng.next() >> 2)),
            5 => json!(*rng.pick(&STRINGS)),
            6 | 7 => {
                let n = rng.below(5);
                let mut m = Map::new();
                for _ in 0..n {
                    let key = if rng.below(6) == 0 {
                        // An identifier key: the object is a map.
                        (1000 + rng.below(50)).to_string()
                    } else {
                        (*rng.pick(&KEYS)).to_owned()
                    };
                    m.insert(key, random_value(rng, depth + 1));
                }
                Value::Object(m)
            }
            _ => {
                let n = rng.below(6);
                Value::Array((0..n).map(|_| random_value(rng, depth + 1)).collect())
            }
        }
    }

    /// A body as bytes, sometimes cut (a truncated capture).
    fn random_body(rng: &mut Rng) -> (Vec<u8>, bool) {
        let text = serde_json::to_vec(&random_value(rng, 0)).unwrap();
        if rng.below(4) == 0 && text.len() > 2 {
            let end = 1 + rng.below(text.len() as u64 - 1) as usize;
            (text[..end].to_vec(), true)
        } else {
            (text, false)
        }
    }

    fn random_config(rng: &mut Rng) -> SchemaConfig {
        match rng.below(4) {
            0 => SchemaConfig::default(),
            1 => SchemaConfig {
                max_depth: 1 + rng.below(4) as usize,
                max_fields_per_object: 1 + rng.below(4) as usize,
                max_nodes_per_schema: 1 + rng.below(12) as usize,
                max_items_per_array: 1 + rng.below(3) as usize,
                max_enum_values: rng.below(4) as usize,
                max_enum_value_bytes: 4 + rng.below(8) as usize,
            },
            2 => SchemaConfig {
                max_nodes_per_schema: 6,
                ..SchemaConfig::default()
            },
            _ => SchemaConfig {
                max_depth: 64,
                max_enum_values: 16,
                ..SchemaConfig::default()
            },
        }
    }

    fn observe_bytes(
        s: &mut Schema,
        body: &(Vec<u8>, bool),
        cfg: &SchemaConfig,
        st: &mut SchemaStats,
    ) {
        let r = parse_json(&body.0, body.1);
        st.count_parse(&r);
        if let Ok(b) = r {
            s.observe_body(&b, cfg, st);
        }
    }

    /// Save, through JSON text, load with the same configuration.
    fn round_trip(s: &Schema, cfg: &SchemaConfig) -> Schema {
        let text = serde_json::to_string(&s.save()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let mut stats = SchemaStats::default();
        let loaded = Schema::load(&v, cfg, &mut stats).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(stats, SchemaStats::default(), "nothing cut within bounds");
        loaded
    }

    #[test]
    fn kind_list_is_complete() {
        // A new `ValueKind` variant makes this match fail to compile: add it to `KINDS`.
        fn position(k: ValueKind) -> usize {
            match k {
                ValueKind::Empty => 0,
                ValueKind::Boolean => 1,
                ValueKind::Integer => 2,
                ValueKind::Number => 3,
                ValueKind::Uuid => 4,
                ValueKind::ObjectId => 5,
                ValueKind::Hex => 6,
                ValueKind::Date => 7,
                ValueKind::DateTime => 8,
                ValueKind::Email => 9,
                ValueKind::Ipv4 => 10,
                ValueKind::Token => 11,
                ValueKind::SlugWithDigits => 12,
                ValueKind::Text => 13,
            }
        }
        for (i, k) in KINDS.into_iter().enumerate() {
            assert_eq!(position(k), i);
            assert_eq!(kind_from_name(k.as_str()), Some(k));
        }
        assert!(KINDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn kind_counts_round_trip_through_serde() {
        let mut k = KindCounts::default();
        k.add_n(ValueKind::Uuid, 3);
        k.add(ValueKind::Empty);
        k.add_n(ValueKind::DateTime, 0);
        let v = serde_json::to_value(&k).unwrap();
        assert_eq!(v, json!({"uuid": 3, "empty": 1, "date-time": 0}));
        assert_eq!(serde_json::from_value::<KindCounts>(v.clone()).unwrap(), k);
        assert_eq!(KindCounts::from_state(&v, &At::Top).unwrap(), k);
        assert!(serde_json::from_value::<KindCounts>(json!({"nope": 1})).is_err());
        assert!(serde_json::from_value::<KindCounts>(json!({"uuid": -1})).is_err());
        assert!(serde_json::from_str::<KindCounts>(r#"{"uuid": 1, "uuid": 2}"#).is_err());
        assert!(serde_json::from_value::<KindCounts>(json!([1])).is_err());
    }

    #[test]
    fn floats_survive_json_text() {
        let mut rng = Rng(0x51_7CC1_B727_220A);
        let specials = FLOATS
            .iter()
            .copied()
            .chain([0.0, -1.0, 2f64.powi(53), 2f64.powi(60)]);
        let randoms = (0..50_000).map(|_| f64::from_bits(rng.next()));
        for x in specials.chain(randoms).filter(|x| x.is_finite()) {
            let text = f64_to_state(x).to_string();
            let back: Value = serde_json::from_str(&text).unwrap();
            let y = f64_from_state(&back, &At::Top).unwrap();
            assert_eq!(x.to_bits(), y.to_bits(), "{x:?} as {text}");
        }
        assert_eq!(f64_to_state(12.0), json!(12));
        assert_eq!(f64_to_state(2.5), json!("2.5"));
        for bad in [
            json!("NaN"),
            json!("inf"),
            json!("-infinity"),
            json!("x"),
            json!(true),
        ] {
            assert!(f64_from_state(&bad, &At::Top).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_example() {
        let mut s = Schema::new();
        let cfg = SchemaConfig::default();
        let mut stats = SchemaStats::default();
        for body in [
            &br#"{"id": 1, "tags": ["a", "b"]}"#[..],
            br#"{"id": 2.5, "tags": ["a", "b""#,
        ] {
            s.observe_body(&parse_json(body, false).unwrap(), &cfg, &mut stats);
        }
        assert_eq!(
            s.save(),
            json!({"version": 1, "partial_samples": 1, "nodes": [
                {"samples": 2, "types": {"object": 2}, "objects": 1},
                {"parent": 0, "in": "field", "name": "id", "present": 1, "samples": 2,
                 "types": {"integer": 1, "number": 1}, "min": 1, "max": "2.5"},
                {"parent": 0, "in": "field", "name": "tags", "present": 1, "samples": 2,
                 "types": {"array": 2}, "arrays": 1, "min_len": 2, "max_len": 2},
                {"parent": 2, "in": "items", "samples": 3, "types": {"string": 3},
                 "kinds": {"string": 3}, "enum": ["a", "b"]}
            ]})
        );
        assert_eq!(round_trip(&s, &cfg), s);
    }

    #[test]
    fn round_trip_and_continue_on_random_bodies() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        // What the trials covered: partial bodies, bounds hit, float strings, map values,
        // closed enums, open enums.
        let mut seen = [0u32; 6];
        for trial in 0..300 {
            let cfg = random_config(&mut rng);
            let n = 1 + rng.below(12);
            let first: Vec<_> = (0..n).map(|_| random_body(&mut rng)).collect();
            let then: Vec<_> = (0..1 + rng.below(8))
                .map(|_| random_body(&mut rng))
                .collect();
            let mut original = Schema::new();
            let mut st = SchemaStats::default();
            for b in &first {
                observe_bytes(&mut original, b, &cfg, &mut st);
            }
            if trial % 5 == 0 {
                // A schema that went through a merge too.
                let mut other = Schema::new();
                for _ in 0..3 {
                    observe_bytes(&mut other, &random_body(&mut rng), &cfg, &mut st);
                }
                original.merge(&other, &cfg, &mut st);
            }
            let state = original.save().to_string();
            for (i, hit) in [
                original.partial_samples() > 0,
                original.truncated_samples() > 0,
                state.contains(r#"max":""#),
                state.contains("map_values"),
                state.contains("enum_closed"),
                state.contains(r#""enum":"#),
            ]
            .into_iter()
            .enumerate()
            {
                seen[i] += u32::from(hit);
            }
            let mut loaded = round_trip(&original, &cfg);
            assert_eq!(loaded, original, "trial {trial}");
            assert_eq!(loaded.save(), original.save());
            assert_eq!(
                serde_json::to_value(&loaded).unwrap(),
                serde_json::to_value(&original).unwrap()
            );
            let (mut st_a, mut st_b) = (SchemaStats::default(), SchemaStats::default());
            for b in &then {
                observe_bytes(&mut original, b, &cfg, &mut st_a);
                observe_bytes(&mut loaded, b, &cfg, &mut st_b);
            }
            assert_eq!(loaded, original, "trial {trial}: after more input");
            assert_eq!(st_a, st_b);
            assert_eq!(loaded.to_json_schema(), original.to_json_schema());
            assert_eq!(round_trip(&loaded, &cfg), original);
        }
        assert!(seen.iter().all(|&n| n >= 10), "{seen:?}");
    }

    #[test]
    fn round_trip_of_handpicked_schemas() {
        let cfg = SchemaConfig::default();
        let enums: Vec<Value> = ["ACTIVE", "PENDING", "ACTIVE", "DISABLED"]
            .iter()
            .cycle()
            .take(12)
            .map(|s| json!({"status": s, "at": "2024-01-05T10:00:00Z", "id": "123e4567-e89b-12d3-a456-426614174000"}))
            .collect();
        let cases: Vec<(Vec<Value>, SchemaConfig)> = vec![
            (vec![], cfg.clone()),
            (vec![json!(null)], cfg.clone()),
            (enums, cfg.clone()),
            (
                vec![
                    json!({"1001": {"a": 1}, "1002": {"b": [1, 2.5]}}),
                    json!({"x": {}}),
                ],
                cfg.clone(),
            ),
            (
                vec![
                    json!({"a": 1, "b": 2, "c": 3}),
                    json!({"d": [[[]]], "e": "two words"}),
                ],
                SchemaConfig {
                    max_fields_per_object: 2,
                    max_depth: 1,
                    ..cfg.clone()
                },
            ),
            (
                vec![json!([{"a": {"b": {"c": 1}}}, 1, "x", [1, 2, 3, 4]])],
                SchemaConfig {
                    max_nodes_per_schema: 3,
                    max_items_per_array: 2,
                    ..cfg.clone()
                },
            ),
            (
                vec![json!(["A", "B", "C", "D"])],
                SchemaConfig {
                    max_enum_values: 2,
                    ..cfg.clone()
                },
            ),
        ];
        for (values, cfg) in cases {
            let mut s = Schema::new();
            let mut st = SchemaStats::default();
            for v in &values {
                s.observe(v, &cfg, &mut st);
            }
            assert_eq!(round_trip(&s, &cfg), s, "{values:?}");
        }
    }

    #[test]
    fn deep_schemas_stay_shallow_json() {
        // 120 nested objects: the state's JSON nesting does not grow with them.
        let cfg = SchemaConfig {
            max_depth: 200,
            ..SchemaConfig::default()
        };
        let text = "{\"a\":".repeat(120) + "1" + &"}".repeat(120);
        let mut s = Schema::new();
        let mut st = SchemaStats::default();
        s.observe_body(&parse_json(text.as_bytes(), false).unwrap(), &cfg, &mut st);
        assert_eq!(round_trip(&s, &cfg), s);
        // Loaded with the default depth, it is cut at depth 8 as a merge would cut it.
        let mut stats = SchemaStats::default();
        let cut = Schema::load(&s.save(), &SchemaConfig::default(), &mut stats).unwrap();
        let mut want = Schema::new();
        want.merge(&s, &SchemaConfig::default(), &mut SchemaStats::default());
        assert_eq!(cut, want);
        assert_eq!(cut.node_count(), 9);
        assert_eq!(stats.depth_limit, 1);
    }

    #[test]
    fn lower_bounds_cut_the_state_like_a_merge() {
        let big = SchemaConfig::default();
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for _ in 0..100 {
            let mut s = Schema::new();
            let mut st = SchemaStats::default();
            for _ in 0..6 {
                observe_bytes(&mut s, &random_body(&mut rng), &big, &mut st);
            }
            let small = SchemaConfig {
                max_depth: 1 + rng.below(3) as usize,
                max_fields_per_object: 1 + rng.below(3) as usize,
                max_nodes_per_schema: 1 + rng.below(8) as usize,
                max_enum_values: rng.below(3) as usize,
                ..big.clone()
            };
            let mut got_stats = SchemaStats::default();
            let got = Schema::load(&s.save(), &small, &mut got_stats).unwrap();
            let mut want = Schema::new();
            let mut want_stats = SchemaStats::default();
            want.merge(&s, &small, &mut want_stats);
            assert_eq!(got, want);
            assert_eq!(got_stats, want_stats);
            assert!(got.node_count() <= small.max_nodes_per_schema);
            assert!(got.root().fields().count() <= small.max_fields_per_object);
        }
    }

    #[test]
    fn explicit_bound_cut_is_marked_and_counted() {
        let mut s = Schema::new();
        let mut st = SchemaStats::default();
        s.observe(
            &json!({"a": 1, "b": 2, "c": 3}),
            &SchemaConfig::default(),
            &mut st,
        );
        let small = SchemaConfig {
            max_fields_per_object: 2,
            ..SchemaConfig::default()
        };
        let mut stats = SchemaStats::default();
        let got = Schema::load(&s.save(), &small, &mut stats).unwrap();
        let names: Vec<&str> = got.root().fields().map(|(k, _)| k).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(got.root().is_truncated());
        assert_eq!(got.node_count(), 3);
        assert_eq!(stats.field_limit, 1);
    }

    #[test]
    fn enum_values_the_configuration_would_not_keep_close_the_enum() {
        let mut s = Schema::new();
        let mut st = SchemaStats::default();
        for _ in 0..10 {
            s.observe(&json!("LONG_CONSTANT"), &SchemaConfig::default(), &mut st);
        }
        let mut state = s.save();
        assert_eq!(state["nodes"][0]["enum"], json!(["LONG_CONSTANT"]));
        let short = SchemaConfig {
            max_enum_value_bytes: 4,
            ..SchemaConfig::default()
        };
        let got = Schema::load(&state, &short, &mut SchemaStats::default()).unwrap();
        assert_eq!(got.root().enum_values(), None);
        assert!(got.root().enum_values.is_empty());
        // A hand-edited value that is no constant is not kept either.
        state["nodes"][0]["enum"] = json!(["a@example.com"]);
        let got = Schema::load(
            &state,
            &SchemaConfig::default(),
            &mut SchemaStats::default(),
        );
        assert!(got.unwrap().root().enum_values.is_empty());
    }

    fn sample_state() -> Value {
        let mut s = Schema::new();
        let mut st = SchemaStats::default();
        let cfg = SchemaConfig::default();
        for v in [
            json!({"id": 1, "tags": ["A", "B"], "m": {"1001": true}, "f": 0.5}),
            json!({"id": 2, "tags": [], "m": {}}),
        ] {
            s.observe(&v, &cfg, &mut st);
        }
        s.save()
    }

    fn load_err(state: &Value) -> StateError {
        match Schema::load(state, &SchemaConfig::default(), &mut SchemaStats::default()) {
            Ok(s) => panic!("loaded {state}: {s:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn garbage_states_are_errors() {
        let good = sample_state();
        assert!(Schema::load(&good, &SchemaConfig::default(), &mut SchemaStats::default()).is_ok());
        let nodes = good["nodes"].as_array().unwrap().clone();
        let id = nodes.iter().position(|n| n["name"] == "id").unwrap();
        let f = nodes.iter().position(|n| n["name"] == "f").unwrap();
        assert!(f < id);
        let tags = nodes.iter().position(|n| n["name"] == "tags").unwrap();
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            f(&mut v);
            v
        };
        let cases: Vec<(Value, &str)> = vec![
            (json!(null), "`$`: expected an object"),
            (json!([]), "`$`: expected an object"),
            (json!({}), "`$.version` is missing"),
            (edit(&|v| v["version"] = json!(2)), "version 2"),
            (edit(&|v| v["version"] = json!(0)), "version 0"),
            (
                edit(&|v| v["version"] = json!("1")),
                "`$.version`: expected a count",
            ),
            (
                edit(&|v| v["nodes"] = json!({})),
                "`$.nodes`: expected an array",
            ),
            (edit(&|v| v["nodes"] = json!([])), "`$.nodes[0]` is missing"),
            (
                edit(&|v| v["nodes"][0] = json!(7)),
                "`$.nodes[0]`: expected an object",
            ),
            (
                edit(&|v| v["nodes"][0]["samples"] = json!("2")),
                "`$.nodes[0].samples`: expected a count",
            ),
            (edit(&|v| v["nodes"][0]["samples"] = json!(-2)), "negative"),
            (
                edit(&|v| v["nodes"][0]["samples"] = json!(2.5)),
                "fractional",
            ),
            (
                edit(&|v| v["nodes"][0]["samples"] = json!(u64::MAX)),
                "too large",
            ),
            (
                edit(&|v| v["nodes"][0]["samples"] = json!(3)),
                "do not add up",
            ),
            (
                edit(&|v| {
                    v["nodes"][0].as_object_mut().unwrap().remove("samples");
                }),
                "samples` is missing",
            ),
            (
                edit(&|v| v["nodes"][0]["types"] = json!([2, 0, 0, 0, 0, 0, 0])),
                "`$.nodes[0].types`: expected an object",
            ),
            (
                edit(&|v| v["nodes"][0]["types"] = json!({"object": 1, "tuple": 1})),
                "unknown JSON type",
            ),
            (
                edit(&|v| v["nodes"][0]["types"] = json!({"object": i64::MAX, "null": i64::MAX})),
                "add up to more",
            ),
            (
                edit(&|v| v["nodes"][0]["parent"] = json!(0)),
                "the root has no parent",
            ),
            (
                edit(&|v| {
                    v["nodes"][id].as_object_mut().unwrap().remove("parent");
                }),
                "parent` is missing",
            ),
            (
                edit(&|v| v["nodes"][id]["parent"] = json!(id)),
                "must come before",
            ),
            (
                edit(&|v| v["nodes"][id]["parent"] = json!(1_000_000)),
                "must come before",
            ),
            (
                edit(&|v| v["nodes"][id]["in"] = json!("elsewhere")),
                "expected \"field\"",
            ),
            (
                edit(&|v| v["nodes"][id]["name"] = json!(1)),
                "expected a string",
            ),
            (
                edit(&|v| v["nodes"][id]["present"] = json!(3)),
                "present in more objects",
            ),
            (
                edit(&|v| v["nodes"][id]["name"] = json!("tags")),
                "a field named twice",
            ),
            (
                edit(&|v| v["nodes"][id]["parent"] = json!(f)),
                "without `objects`",
            ),
            (
                edit(&|v| v["nodes"][id]["in"] = json!("items")),
                "without `arrays`",
            ),
            (
                edit(&|v| v["nodes"][id]["kinds"] = json!({"uuid": 1})),
                "kind counts do not add up",
            ),
            (
                edit(&|v| v["nodes"][id]["kinds"] = json!({"weird": 0})),
                "unknown value kind",
            ),
            (
                edit(&|v| v["nodes"][id]["min"] = json!(5)),
                "greater than `max`",
            ),
            (
                edit(&|v| {
                    v["nodes"][id].as_object_mut().unwrap().remove("max");
                }),
                "must come together",
            ),
            (
                edit(&|v| v["nodes"][id]["min"] = json!("NaN")),
                "finite number",
            ),
            (
                edit(&|v| v["nodes"][id]["min"] = json!([1])),
                "finite number",
            ),
            (
                edit(&|v| v["nodes"][0]["objects"] = json!(3)),
                "more complete objects",
            ),
            (
                edit(&|v| v["nodes"][tags]["min_len"] = json!(9)),
                "greater than `max_len`",
            ),
            (
                edit(&|v| v["nodes"][tags]["arrays"] = json!(0)),
                "without complete arrays",
            ),
            (
                edit(&|v| v["nodes"][tags]["arrays"] = json!(9)),
                "more complete arrays",
            ),
            (
                edit(&|v| {
                    v["nodes"][tags].as_object_mut().unwrap().remove("arrays");
                }),
                "without `arrays`",
            ),
            (
                edit(&|v| v["nodes"][tags + 1]["enum"] = json!(["B", "A"])),
                "not sorted",
            ),
            (
                edit(&|v| v["nodes"][tags + 1]["enum"] = json!(["A", "A"])),
                "not sorted",
            ),
            (
                edit(&|v| v["nodes"][tags + 1]["enum"] = json!([1])),
                "expected a string",
            ),
            (
                edit(&|v| v["nodes"][tags + 1]["enum"] = json!("A")),
                "expected an array",
            ),
            (
                edit(&|v| v["nodes"][tags + 1]["enum_closed"] = json!(true)),
                "closed enum",
            ),
            (
                edit(&|v| v["nodes"][tags + 1]["enum_closed"] = json!(1)),
                "expected a boolean",
            ),
            (
                edit(&|v| v["nodes"][0]["truncated"] = json!("yes")),
                "expected a boolean",
            ),
            (
                edit(&|v| v["partial_samples"] = json!(3)),
                "more than the root's samples",
            ),
            (edit(&|v| v["truncated_samples"] = json!(-1)), "negative"),
        ];
        for (state, want) in cases {
            let e = load_err(&state).to_string();
            assert!(e.contains(want), "{state}\n  gave {e:?}\n  want {want:?}");
        }
    }

    #[test]
    fn huge_and_deep_states_are_bounded() {
        // A chain deeper than MAX_STATE_DEPTH: an error, no stack overflow.
        let mut nodes = vec![json!({"samples": 1, "types": {"object": 1}, "objects": 1})];
        for i in 0..MAX_STATE_DEPTH + 5 {
            nodes.push(
                json!({"parent": i, "in": "field", "name": "a", "present": 1,
                              "samples": 1, "types": {"object": 1}, "objects": 1}),
            );
        }
        let deep = json!({"version": 1, "nodes": nodes});
        assert!(matches!(load_err(&deep), StateError::TooDeep { .. }));
        // Exactly at the limit it loads (cut to max_depth).
        let at_limit = json!({"version": 1, "nodes": nodes[..=MAX_STATE_DEPTH]});
        let mut stats = SchemaStats::default();
        let s = Schema::load(&at_limit, &SchemaConfig::default(), &mut stats).unwrap();
        assert_eq!(s.node_count(), SchemaConfig::default().max_depth + 1);
        // 100 000 fields: cut to the bounds.
        let mut nodes = vec![json!({"samples": 1, "types": {"object": 1}, "objects": 1})];
        for i in 0..100_000 {
            nodes.push(
                json!({"parent": 0, "in": "field", "name": format!("f{i:06}"),
                              "present": 1, "samples": 1, "types": {"null": 1}}),
            );
        }
        let wide = json!({"version": 1, "nodes": nodes});
        let mut stats = SchemaStats::default();
        let s = Schema::load(&wide, &SchemaConfig::default(), &mut stats).unwrap();
        assert_eq!(s.root().fields().count(), 200);
        assert!(s.root().is_truncated());
        assert_eq!(stats.field_limit, 100_000 - 200);
        // A huge enum closes it.
        let values: Vec<String> = (0..50_000).map(|i| format!("V{i:06}")).collect();
        let big_enum = json!({"version": 1, "nodes": [{"samples": 50_000,
            "types": {"string": 50_000}, "kinds": {"string": 50_000}, "enum": values}]});
        let s = Schema::load(
            &big_enum,
            &SchemaConfig::default(),
            &mut SchemaStats::default(),
        );
        assert!(s.unwrap().root().enum_values.is_empty());
        // A huge types array is just the wrong type.
        let huge_types =
            json!({"version": 1, "nodes": [{"samples": 0, "types": vec![0; 100_000]}]});
        assert!(matches!(load_err(&huge_types), StateError::Invalid { .. }));
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let mut v = sample_state();
        v["future"] = json!({"x": [1, 2]});
        v["nodes"][0]["future"] = json!("y");
        v["nodes"][1]["also"] = json!(null);
        let cfg = SchemaConfig::default();
        let a = Schema::load(&v, &cfg, &mut SchemaStats::default()).unwrap();
        let b = Schema::load(&sample_state(), &cfg, &mut SchemaStats::default()).unwrap();
        assert_eq!(a, b);
    }

    /// Replaces one random sub-value of `v` with garbage, or removes an entry.
    fn mutate(v: &mut Value, rng: &mut Rng) {
        let garbage = [
            json!(null),
            json!(-1),
            json!(0),
            json!(1),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1.5),
            json!("x"),
            json!("1e400"),
            json!("field"),
            json!("items"),
            json!("map_values"),
            json!(true),
            json!([]),
            json!({}),
            json!(["A", "B"]),
            json!({"string": 1}),
        ];
        let stop = rng.below(3) == 0;
        match v {
            Value::Object(m) if !m.is_empty() && !stop => {
                let k = m
                    .keys()
                    .nth(rng.below(m.len() as u64) as usize)
                    .unwrap()
                    .clone();
                if rng.below(5) == 0 {
                    m.remove(&k);
                } else if let Some(child) = m.get_mut(&k) {
                    mutate(child, rng);
                }
            }
            Value::Array(a) if !a.is_empty() && !stop => {
                let i = rng.below(a.len() as u64) as usize;
                mutate(&mut a[i], rng);
            }
            _ => *v = rng.pick(&garbage).clone(),
        }
    }

    #[test]
    fn no_panic_on_mutated_states() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let cfg = SchemaConfig::default();
        let mut loaded_some = 0;
        for _ in 0..3000 {
            let mut s = Schema::new();
            let mut st = SchemaStats::default();
            for _ in 0..3 {
                observe_bytes(&mut s, &random_body(&mut rng), &cfg, &mut st);
            }
            let mut state = s.save();
            for _ in 0..1 + rng.below(3) {
                mutate(&mut state, &mut rng);
            }
            if let Ok(mut l) = Schema::load(&state, &cfg, &mut st) {
                loaded_some += 1;
                assert!(l.node_count() <= cfg.max_nodes_per_schema);
                let _ = l.to_json_schema();
                let _ = serde_json::to_string(&l).unwrap();
                observe_bytes(&mut l, &random_body(&mut rng), &cfg, &mut st);
                let again = Schema::load(&l.save(), &cfg, &mut st).unwrap();
                assert_eq!(again, l);
            }
        }
        assert!(loaded_some > 30, "{loaded_some}");
    }
}
