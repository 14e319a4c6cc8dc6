//! GraphQL operations in requests: which operation (type and name) a call runs and which
//! top-level fields it selects.
//!
//! Three ways a request carries GraphQL, one entry point each:
//!
//! - [`parse_json_request`]: a JSON body `{"query": ..., "operationName": ..., "variables":
//!   ...}`, or a batch (an array of those). A truncated body is salvaged as far as it is
//!   complete. Automatic persisted queries (no `query`, an `extensions.persistedQuery`) give
//!   an operation known only by name.
//! - [`parse_get_request`]: `GET ?query=...&operationName=...`.
//! - [`parse_document_request`]: an `application/graphql` body, the document itself.
//!
//! [`Document::parse`] reads a document with a small hand-written lexer (comments, strings and
//! block strings, commas as whitespace) and a parser that only looks at what it needs: each
//! operation's type, name and top-level selection (aliases resolved to field names, inline
//! fragments looked through, fragment spreads expanded from the document's `fragment`
//! definitions); arguments, variables, directives and nested selections are skipped. Work is
//! linear in the document and bounded by [`GraphqlConfig`]; garbage gives a
//! [`GraphqlError`], never a panic. Variables' values are never read.
//!
//! ```
//! use apiscope_inventory::graphql::{
//!     parse_json_request, GraphqlConfig, GraphqlStats, OperationType,
//! };
//!
//! let query = "query Profile($id: ID!) { me: user(id: $id) { name } ...Extra }
//!              fragment Extra on Query { viewer { id } }
//!              mutation Other { logout }";
//! let body = serde_json::json!({"operationName": "Profile", "query": query, "variables": {}});
//! let body = body.to_string();
//! let mut stats = GraphqlStats::default();
//! let cfg = GraphqlConfig::default();
//! let ops = parse_json_request(body.as_bytes(), false, &cfg, &mut stats).unwrap();
//! assert_eq!(ops.len(), 1);
//! assert_eq!(ops[0].kind, Some(OperationType::Query));
//! assert_eq!(ops[0].name.as_deref(), Some("Profile"));
//! assert_eq!(ops[0].fields, ["user", "viewer"]);
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::params::form_pairs;
use crate::schema::{parse_json, JsonError};

/// Bounds of GraphQL parsing. Every bound has a counter in [`GraphqlStats`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphqlConfig {
    /// Operations read from one batched request; the rest are ignored. Counter `batch_limit`.
    pub max_operations_per_request: usize,
    /// Distinct top-level fields kept per operation. Counter `fields_limit`.
    pub max_fields_per_operation: usize,
    /// Tokens read from one document before giving up ([`GraphqlError::TooLarge`]).
    pub max_tokens_per_document: usize,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        GraphqlConfig {
            max_operations_per_request: 16,
            max_fields_per_operation: 32,
            max_tokens_per_document: 100_000,
        }
    }
}

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident, )*) => {
        /// Counters of GraphQL parsing, all monotonic. Add workers together with
        /// [`GraphqlStats::merge`]; list them with [`GraphqlStats::counters`].
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct GraphqlStats {
            $( $(#[doc = $doc])* pub $name: u64, )*
        }

        impl GraphqlStats {
            /// Every counter as `(name, value)`, in declaration order.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name), )*]
            }

            /// Adds `other` into `self`.
            pub fn merge(&mut self, other: &GraphqlStats) {
                $( self.$name = self.$name.saturating_add(other.$name); )*
            }
        }
    };
}

counters! {
    /// Requests handed to an entry point.
    requests,
    /// Operations found.
    operations,
    /// Batched (array) requests.
    batches,
    /// Batch elements ignored beyond `max_operations_per_request`.
    batch_limit,
    /// Operations sent as persisted queries (no document).
    persisted,
    /// Operations whose fields were cut at `max_fields_per_operation`.
    fields_limit,
    /// Bodies that were not JSON.
    not_json,
    /// JSON without a query (nor a persisted query).
    not_graphql,
    /// Bodies or documents cut before anything usable.
    truncated,
    /// Documents that could not be read.
    syntax_errors,
    /// Documents over `max_tokens_per_document`.
    too_large,
    /// Documents without any operation.
    no_operation,
    /// `operationName` naming no operation of the document.
    unknown_operation_name,
    /// Several operations and no `operationName`.
    ambiguous_operation,
}

impl GraphqlStats {
    fn count_error(&mut self, e: GraphqlError) {
        let c = match e {
            GraphqlError::NotJson => &mut self.not_json,
            GraphqlError::NotGraphql => &mut self.not_graphql,
            GraphqlError::Truncated => &mut self.truncated,
            GraphqlError::Syntax => &mut self.syntax_errors,
            GraphqlError::TooLarge => &mut self.too_large,
            GraphqlError::NoOperation => &mut self.no_operation,
            GraphqlError::UnknownOperationName => &mut self.unknown_operation_name,
            GraphqlError::AmbiguousOperation => &mut self.ambiguous_operation,
        };
        *c += 1;
    }

    fn count_operation(&mut self, op: &Operation) {
        self.operations += 1;
        self.persisted += u64::from(op.persisted);
        self.fields_limit += u64::from(op.fields_truncated);
    }
}

/// Why a request gave no operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum GraphqlError {
    #[error("body is not JSON")]
    NotJson,
    #[error("no GraphQL query in the request")]
    NotGraphql,
    #[error("request cut before the query was complete")]
    Truncated,
    #[error("GraphQL document cannot be read")]
    Syntax,
    #[error("GraphQL document too large")]
    TooLarge,
    #[error("GraphQL document has no operation")]
    NoOperation,
    #[error("operationName names no operation of the document")]
    UnknownOperationName,
    #[error("several operations and no operationName")]
    AmbiguousOperation,
}

impl GraphqlError {
    /// A stable snake_case name for counters and evidence.
    pub const fn as_str(self) -> &'static str {
        match self {
            GraphqlError::NotJson => "not_json",
            GraphqlError::NotGraphql => "not_graphql",
            GraphqlError::Truncated => "truncated",
            GraphqlError::Syntax => "syntax",
            GraphqlError::TooLarge => "too_large",
            GraphqlError::NoOperation => "no_operation",
            GraphqlError::UnknownOperationName => "unknown_operation_name",
            GraphqlError::AmbiguousOperation => "ambiguous_operation",
        }
    }
}

/// The type of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationType {
    Query,
    Mutation,
    Subscription,
}

impl OperationType {
    /// `query`, `mutation` or `subscription`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        }
    }
}

/// One operation a request runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operation {
    /// Its type; `None` for a persisted query sent without its document.
    #[serde(rename = "type")]
    pub kind: Option<OperationType>,
    /// `operationName` when given, else the name in the document; `None` when anonymous.
    pub name: Option<String>,
    /// Distinct top-level field names (not aliases) in order of appearance, fragments
    /// expanded; at most `max_fields_per_operation`.
    pub fields: Vec<String>,
    /// Some fields were left out by the bound.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fields_truncated: bool,
    /// Sent as a persisted query (no document).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub persisted: bool,
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// One of `! $ & ( ) : = @ [ ] { } |`.
    Punct(u8),
    /// `...`
    Spread,
    Name(&'a str),
    /// A number, string or block string (its content is never needed).
    Value,
}

struct Lexer<'a> {
    src: &'a str,
    i: usize,
    tokens: usize,
    max_tokens: usize,
    peeked: Option<Option<Tok<'a>>>,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str, max_tokens: usize) -> Lexer<'a> {
        Lexer {
            src,
            i: 0,
            tokens: 0,
            max_tokens,
            peeked: None,
        }
    }

    fn peek(&mut self) -> Result<Option<Tok<'a>>, GraphqlError> {
        if let Some(t) = self.peeked {
            return Ok(t);
        }
        let t = self.lex()?;
        self.peeked = Some(t);
        Ok(t)
    }

    fn next(&mut self) -> Result<Option<Tok<'a>>, GraphqlError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    /// The next token, `None` at the end.
    fn lex(&mut self) -> Result<Option<Tok<'a>>, GraphqlError> {
        let b = self.src.as_bytes();
        // Whitespace, commas, byte-order marks, comments.
        loop {
            match b.get(self.i) {
                Some(b' ' | b'\t' | b'\n' | b'\r' | b',') => self.i += 1,
                Some(0xEF) if b[self.i..].starts_with(b"\xEF\xBB\xBF") => self.i += 3,
                Some(b'#') => {
                    while self.i < b.len() && b[self.i] != b'\n' && b[self.i] != b'\r' {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
        let Some(&c) = b.get(self.i) else {
            return Ok(None);
        };
        self.tokens += 1;
        if self.tokens > self.max_tokens {
            return Err(GraphqlError::TooLarge);
        }
        let start = self.i;
        let tok = match c {
            b'!' | b'$' | b'&' | b'(' | b')' | b':' | b'=' | b'@' | b'[' | b']' | b'{' | b'}'
            | b'|' => {
                self.i += 1;
                Tok::Punct(c)
            }
            b'.' => {
                if !b[start..].starts_with(b"...") {
                    return Err(if b.len() - start < 3 {
                        GraphqlError::Truncated
                    } else {
                        GraphqlError::Syntax
                    });
                }
                self.i += 3;
                Tok::Spread
            }
            b'"' if b[start..].starts_with(b"\"\"\"") => {
                self.i += 3;
                loop {
                    if self.i >= b.len() {
                        return Err(GraphqlError::Truncated);
                    }
                    if b[self.i..].starts_with(b"\\\"\"\"") {
                        self.i += 4;
                    } else if b[self.i..].starts_with(b"\"\"\"") {
                        self.i += 3;
                        break;
                    } else {
                        self.i += 1;
                    }
                }
                Tok::Value
            }
            b'"' => {
                self.i += 1;
                loop {
                    match b.get(self.i) {
                        None => return Err(GraphqlError::Truncated),
                        Some(b'\\') => self.i += 2,
                        Some(b'"') => {
                            self.i += 1;
                            break;
                        }
                        Some(b'\n' | b'\r') => return Err(GraphqlError::Syntax),
                        Some(_) => self.i += 1,
                    }
                }
                Tok::Value
            }
            b'-' | b'0'..=b'9' => {
                self.i += 1;
                while self.i < b.len()
                    && matches!(b[self.i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    self.i += 1;
                }
                Tok::Value
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                while self.i < b.len() && (b[self.i].is_ascii_alphanumeric() || b[self.i] == b'_') {
                    self.i += 1;
                }
                Tok::Name(&self.src[start..self.i])
            }
            _ => return Err(GraphqlError::Syntax),
        };
        Ok(Some(tok))
    }

    /// The next token, which must exist.
    fn need(&mut self) -> Result<Tok<'a>, GraphqlError> {
        self.next()?.ok_or(GraphqlError::Truncated)
    }

    fn expect(&mut self, c: u8) -> Result<(), GraphqlError> {
        match self.need()? {
            Tok::Punct(p) if p == c => Ok(()),
            _ => Err(GraphqlError::Syntax),
        }
    }

    fn expect_name(&mut self) -> Result<&'a str, GraphqlError> {
        match self.need()? {
            Tok::Name(n) => Ok(n),
            _ => Err(GraphqlError::Syntax),
        }
    }

    /// Consumes the token if it is the punctuator `c`.
    fn eat(&mut self, c: u8) -> Result<bool, GraphqlError> {
        if self.peek()? == Some(Tok::Punct(c)) {
            self.next()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Skips to the bracket closing one already consumed (any of `(`, `[`, `{`).
    fn skip_balanced(&mut self) -> Result<(), GraphqlError> {
        let mut depth = 1usize;
        loop {
            match self.need()? {
                Tok::Punct(b'(' | b'[' | b'{') => depth += 1,
                Tok::Punct(b')' | b']' | b'}') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
    }

    /// Skips `@name(args)` directives.
    fn skip_directives(&mut self) -> Result<(), GraphqlError> {
        while self.eat(b'@')? {
            self.expect_name()?;
            if self.eat(b'(')? {
                self.skip_balanced()?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Parser

/// The top level of one selection set: field names and fragment spreads.
#[derive(Debug, Default)]
struct Selection<'a> {
    fields: Vec<&'a str>,
    spreads: Vec<&'a str>,
}

#[derive(Debug)]
struct RawOperation<'a> {
    kind: OperationType,
    name: Option<&'a str>,
    selection: Selection<'a>,
}

/// Reads a selection set whose `{` was consumed, keeping its top level: inline fragments are
/// transparent, nested selections and arguments skipped.
fn selection_set<'a>(lx: &mut Lexer<'a>) -> Result<Selection<'a>, GraphqlError> {
    let mut sel = Selection::default();
    let mut inline_depth = 0usize;
    loop {
        match lx.need()? {
            Tok::Punct(b'}') => {
                if inline_depth == 0 {
                    return Ok(sel);
                }
                inline_depth -= 1;
            }
            Tok::Spread => match lx.peek()?.ok_or(GraphqlError::Truncated)? {
                Tok::Name("on") => {
                    lx.next()?;
                    lx.expect_name()?;
                    lx.skip_directives()?;
                    lx.expect(b'{')?;
                    inline_depth += 1;
                }
                Tok::Name(fragment) => {
                    lx.next()?;
                    sel.spreads.push(fragment);
                    lx.skip_directives()?;
                }
                Tok::Punct(b'@' | b'{') => {
                    lx.skip_directives()?;
                    lx.expect(b'{')?;
                    inline_depth += 1;
                }
                _ => return Err(GraphqlError::Syntax),
            },
            Tok::Name(first) => {
                let field = if lx.eat(b':')? {
                    lx.expect_name()?
                } else {
                    first
                };
                sel.fields.push(field);
                if lx.eat(b'(')? {
                    lx.skip_balanced()?;
                }
                lx.skip_directives()?;
                if lx.eat(b'{')? {
                    lx.skip_balanced()?;
                }
            }
            _ => return Err(GraphqlError::Syntax),
        }
    }
}

/// A parsed GraphQL document: its operations (type, name, top-level selection) and fragments.
/// Borrows the source text.
#[derive(Debug)]
pub struct Document<'a> {
    operations: Vec<RawOperation<'a>>,
    fragments: BTreeMap<&'a str, Selection<'a>>,
}

impl<'a> Document<'a> {
    /// Parses an executable document. Type-system definitions (`type`, `schema`, ...) are a
    /// syntax error here.
    ///
    /// # Errors
    ///
    /// [`GraphqlError::Truncated`] when the text ends inside a definition,
    /// [`GraphqlError::Syntax`] for anything else unreadable, [`GraphqlError::TooLarge`]
    /// beyond `max_tokens_per_document`, [`GraphqlError::NoOperation`] when there are only
    /// fragments (or nothing).
    pub fn parse(src: &'a str, cfg: &GraphqlConfig) -> Result<Document<'a>, GraphqlError> {
        let mut lx = Lexer::new(src, cfg.max_tokens_per_document);
        let mut doc = Document {
            operations: Vec::new(),
            fragments: BTreeMap::new(),
        };
        while let Some(tok) = lx.next()? {
            match tok {
                Tok::Punct(b'{') => {
                    let selection = selection_set(&mut lx)?;
                    doc.operations.push(RawOperation {
                        kind: OperationType::Query,
                        name: None,
                        selection,
                    });
                }
                Tok::Name(kw @ ("query" | "mutation" | "subscription")) => {
                    let kind = match kw {
                        "query" => OperationType::Query,
                        "mutation" => OperationType::Mutation,
                        _ => OperationType::Subscription,
                    };
                    let name = match lx.peek()? {
                        Some(Tok::Name(n)) => {
                            lx.next()?;
                            Some(n)
                        }
                        _ => None,
                    };
                    if lx.eat(b'(')? {
                        lx.skip_balanced()?;
                    }
                    lx.skip_directives()?;
                    lx.expect(b'{')?;
                    let selection = selection_set(&mut lx)?;
                    doc.operations.push(RawOperation {
                        kind,
                        name,
                        selection,
                    });
                }
                Tok::Name("fragment") => {
                    let name = lx.expect_name()?;
                    if name == "on" || lx.expect_name()? != "on" {
                        return Err(GraphqlError::Syntax);
                    }
                    lx.expect_name()?;
                    lx.skip_directives()?;
                    lx.expect(b'{')?;
                    let selection = selection_set(&mut lx)?;
                    doc.fragments.entry(name).or_insert(selection);
                }
                _ => return Err(GraphqlError::Syntax),
            }
        }
        if doc.operations.is_empty() {
            return Err(GraphqlError::NoOperation);
        }
        Ok(doc)
    }

    /// The operations defined, as `(type, name)` in document order.
    pub fn operations(&self) -> impl Iterator<Item = (OperationType, Option<&'a str>)> + '_ {
        self.operations.iter().map(|o| (o.kind, o.name))
    }

    /// The operation a server would run: the one named `operation_name`, or the only one.
    ///
    /// # Errors
    ///
    /// [`GraphqlError::UnknownOperationName`] when no operation has that name,
    /// [`GraphqlError::AmbiguousOperation`] when there are several and no name is given.
    pub fn select(
        &self,
        operation_name: Option<&str>,
        cfg: &GraphqlConfig,
    ) -> Result<Operation, GraphqlError> {
        let raw = match operation_name {
            Some(n) => self
                .operations
                .iter()
                .find(|o| o.name == Some(n))
                .ok_or(GraphqlError::UnknownOperationName)?,
            None => match self.operations.as_slice() {
                [one] => one,
                _ => return Err(GraphqlError::AmbiguousOperation),
            },
        };
        Ok(self.resolve(raw, cfg))
    }

    /// The operation's distinct top-level fields with fragment spreads expanded (each
    /// fragment once).
    fn resolve(&self, raw: &RawOperation<'a>, cfg: &GraphqlConfig) -> Operation {
        let mut op = Operation {
            kind: Some(raw.kind),
            name: raw.name.map(str::to_owned),
            fields: Vec::new(),
            fields_truncated: false,
            persisted: false,
        };
        let add = |f: &str, op: &mut Operation| {
            if op.fields.iter().any(|have| have == f) {
                return;
            }
            if op.fields.len() >= cfg.max_fields_per_operation {
                op.fields_truncated = true;
            } else {
                op.fields.push(f.to_owned());
            }
        };
        for &f in &raw.selection.fields {
            add(f, &mut op);
        }
        let mut pending: Vec<&str> = raw.selection.spreads.iter().rev().copied().collect();
        let mut visited = BTreeSet::new();
        while let Some(name) = pending.pop() {
            if !visited.insert(name) {
                continue;
            }
            if let Some(sel) = self.fragments.get(name) {
                for &f in &sel.fields {
                    add(f, &mut op);
                }
                pending.extend(sel.spreads.iter().rev());
            }
        }
        op
    }
}

/// Parses `doc` and selects the operation named `operation_name` (or the only one).
///
/// # Errors
///
/// As [`Document::parse`] and [`Document::select`].
pub fn parse_document(
    doc: &str,
    operation_name: Option<&str>,
    cfg: &GraphqlConfig,
) -> Result<Operation, GraphqlError> {
    let mut op = Document::parse(doc, cfg)?.select(operation_name, cfg)?;
    if op.name.is_none() {
        op.name = operation_name.map(str::to_owned);
    }
    Ok(op)
}

// ---------------------------------------------------------------------------------------
// Requests

fn counted<T>(r: Result<T, GraphqlError>, stats: &mut GraphqlStats) -> Result<T, GraphqlError> {
    if let Err(e) = &r {
        stats.count_error(*e);
    }
    r
}

/// The operation of one JSON request object.
fn from_object(
    m: &Map<String, Value>,
    partial: bool,
    cfg: &GraphqlConfig,
) -> Result<Operation, GraphqlError> {
    let name = match m.get("operationName") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    };
    match m.get("query") {
        Some(Value::String(q)) => parse_document(q, name, cfg),
        None | Some(Value::Null) => {
            let persisted = m
                .get("extensions")
                .and_then(|e| e.get("persistedQuery"))
                .is_some_and(Value::is_object);
            if persisted {
                Ok(Operation {
                    kind: None,
                    name: name.map(str::to_owned),
                    fields: Vec::new(),
                    fields_truncated: false,
                    persisted: true,
                })
            } else if partial {
                Err(GraphqlError::Truncated)
            } else {
                Err(GraphqlError::NotGraphql)
            }
        }
        Some(_) => Err(GraphqlError::NotGraphql),
    }
}

/// The operations of a JSON request body: one for an object, one per element (at most
/// `max_operations_per_request`) for a batch. `truncated` says the body is a prefix; what is
/// complete in it is used. Batch elements that fail are counted by kind and left out.
///
/// # Errors
///
/// [`GraphqlError::NotJson`], [`GraphqlError::NotGraphql`] (JSON without a query), a
/// [`Document`] error, or for a batch where no element gave an operation, the first
/// element's error ([`GraphqlError::NotGraphql`] for an empty batch).
pub fn parse_json_request(
    body: &[u8],
    truncated: bool,
    cfg: &GraphqlConfig,
    stats: &mut GraphqlStats,
) -> Result<Vec<Operation>, GraphqlError> {
    stats.requests += 1;
    let parsed = parse_json(body, truncated).map_err(|e| match e {
        JsonError::Truncated => GraphqlError::Truncated,
        JsonError::Empty | JsonError::NotJson | JsonError::TooDeep => GraphqlError::NotJson,
    });
    let body = counted(parsed, stats)?;
    let partial = body.is_partial();
    match body.value() {
        Value::Object(m) => {
            let op = counted(from_object(m, partial, cfg), stats)?;
            stats.count_operation(&op);
            Ok(vec![op])
        }
        Value::Array(items) => {
            stats.batches += 1;
            let limit = cfg.max_operations_per_request;
            if items.len() > limit {
                stats.batch_limit += (items.len() - limit) as u64;
            }
            let mut ops = Vec::new();
            let mut first_error = None;
            for item in items.iter().take(limit) {
                let r = match item {
                    Value::Object(m) => from_object(m, partial, cfg),
                    _ => Err(GraphqlError::NotGraphql),
                };
                match counted(r, stats) {
                    Ok(op) => {
                        stats.count_operation(&op);
                        ops.push(op);
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if ops.is_empty() {
                let e = first_error.unwrap_or(GraphqlError::NotGraphql);
                if items.is_empty() {
                    stats.count_error(e);
                }
                return Err(e);
            }
            Ok(ops)
        }
        _ => counted(Err(GraphqlError::NotGraphql), stats),
    }
}

/// The operation of a GET request, from its query string (`query`, `operationName`,
/// `extensions` for a persisted query; `variables` is not read).
///
/// # Errors
///
/// [`GraphqlError::NotGraphql`] without `query` (nor a persisted query), else as
/// [`parse_document`].
pub fn parse_get_request(
    query_string: &str,
    cfg: &GraphqlConfig,
    stats: &mut GraphqlStats,
) -> Result<Operation, GraphqlError> {
    stats.requests += 1;
    let mut query: Option<Cow<'_, str>> = None;
    let mut name: Option<Cow<'_, str>> = None;
    let mut persisted = false;
    let qs = query_string.strip_prefix('?').unwrap_or(query_string);
    for pair in form_pairs(qs.as_bytes()) {
        match pair.name.as_ref() {
            "query" if query.is_none() => query = pair.value,
            "operationName" if name.is_none() => name = pair.value.filter(|v| !v.is_empty()),
            "extensions" => {
                persisted |= pair
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_str::<Value>(v).ok())
                    .and_then(|v| v.get("persistedQuery").map(Value::is_object))
                    .unwrap_or(false);
            }
            _ => {}
        }
    }
    let r = match query {
        Some(q) => parse_document(&q, name.as_deref(), cfg),
        None if persisted => Ok(Operation {
            kind: None,
            name: name.map(Cow::into_owned),
            fields: Vec::new(),
            fields_truncated: false,
            persisted: true,
        }),
        None => Err(GraphqlError::NotGraphql),
    };
    let op = counted(r, stats)?;
    stats.count_operation(&op);
    Ok(op)
}

/// The operation of an `application/graphql` body (the document itself), with the
/// `operationName` of the query string if there is one.
///
/// # Errors
///
/// [`GraphqlError::NotGraphql`] when the body is not UTF-8, else as [`parse_document`].
pub fn parse_document_request(
    body: &[u8],
    operation_name: Option<&str>,
    cfg: &GraphqlConfig,
    stats: &mut GraphqlStats,
) -> Result<Operation, GraphqlError> {
    stats.requests += 1;
    let r = std::str::from_utf8(body)
        .map_err(|_| GraphqlError::NotGraphql)
        .and_then(|doc| parse_document(doc, operation_name, cfg));
    let op = counted(r, stats)?;
    stats.count_operation(&op);
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GraphqlConfig {
        GraphqlConfig::default()
    }

    fn op(doc: &str, name: Option<&str>) -> Result<Operation, GraphqlError> {
        parse_document(doc, name, &cfg())
    }

    fn summary(
        doc: &str,
        name: Option<&str>,
    ) -> (Option<OperationType>, Option<String>, Vec<String>) {
        let o = op(doc, name).unwrap_or_else(|e| panic!("{doc}: {e}"));
        (o.kind, o.name, o.fields)
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    use OperationType::{Mutation, Query, Subscription};

    #[test]
    fn anonymous_shorthand_is_a_query() {
        assert_eq!(
            summary("{ a b }", None),
            (Some(Query), None, v(&["a", "b"]))
        );
        assert_eq!(summary("query { a }", None), (Some(Query), None, v(&["a"])));
    }

    #[test]
    fn types_and_names() {
        assert_eq!(
            summary(
                "mutation AddUser($u: UserInput!) { addUser(input: $u) { id } }",
                None
            ),
            (Some(Mutation), Some("AddUser".into()), v(&["addUser"]))
        );
        assert_eq!(
            summary("subscription OnEvent @live { event { id } }", None),
            (Some(Subscription), Some("OnEvent".into()), v(&["event"]))
        );
        assert_eq!(
            summary("query query { query }", None),
            (Some(Query), Some("query".into()), v(&["query"])),
            "keywords are names where names go"
        );
    }

    #[test]
    fn aliases_arguments_directives_and_nesting() {
        let doc = r#"query Q($id: ID = "x") {
            me: user(id: $id, filter: {a: [1, 2], b: "}"}) @include(if: true) {
                friends(first: 10) { edges { node { id } } }
            }
            user(id: 2) { id }
            __typename
            count
        }"#;
        assert_eq!(summary(doc, None).2, v(&["user", "__typename", "count"]));
    }

    #[test]
    fn comments_and_strings_do_not_confuse() {
        let doc = "# leading comment { notAField }\n\
            query Q { # trailing } comment\n\
              a(s: \"} { b\", t: \"\"\"block } with \\\"\"\" escaped\n quote { c\"\"\")\n\
              d\n\
            }";
        assert_eq!(summary(doc, None).2, v(&["a", "d"]));
    }

    #[test]
    fn commas_and_bom_are_whitespace() {
        assert_eq!(summary("\u{FEFF}{a,b,,c}", None).2, v(&["a", "b", "c"]));
    }

    #[test]
    fn fragments_are_not_operations_and_are_expanded() {
        let doc = "fragment F on Query { b ...G }
                   query Q { a ...F ... on Query { c } ... @skip(if: false) { d } ...Missing }
                   fragment G on Query { e ...F a }";
        let (_, name, fields) = summary(doc, None);
        assert_eq!(name.as_deref(), Some("Q"));
        assert_eq!(fields, v(&["a", "c", "d", "b", "e"]));
        assert_eq!(
            op("fragment F on Q { a }", None),
            Err(GraphqlError::NoOperation)
        );
        assert_eq!(
            op("fragment on on Q { a }", None),
            Err(GraphqlError::Syntax)
        );
    }

    #[test]
    fn operation_name_picks_one_of_several() {
        let doc = "query A { a } mutation B { b } { c }";
        assert_eq!(
            summary(doc, Some("B")),
            (Some(Mutation), Some("B".into()), v(&["b"]))
        );
        assert_eq!(op(doc, Some("Z")), Err(GraphqlError::UnknownOperationName));
        assert_eq!(op(doc, None), Err(GraphqlError::AmbiguousOperation));
        let d = Document::parse(doc, &cfg()).unwrap();
        let all: Vec<_> = d.operations().collect();
        assert_eq!(
            all,
            [(Query, Some("A")), (Mutation, Some("B")), (Query, None)]
        );
    }

    #[test]
    fn field_bound_is_flagged_and_counted() {
        let cfg = GraphqlConfig {
            max_fields_per_operation: 2,
            ..cfg()
        };
        let o = parse_document("{ a b a c }", None, &cfg).unwrap();
        assert_eq!((o.fields, o.fields_truncated), (v(&["a", "b"]), true));
        let mut stats = GraphqlStats::default();
        parse_document_request(b"{ a b c }", None, &cfg, &mut stats).unwrap();
        assert_eq!(stats.fields_limit, 1);
    }

    #[test]
    fn token_bound_stops_work() {
        let cfg = GraphqlConfig {
            max_tokens_per_document: 10,
            ..cfg()
        };
        assert_eq!(
            parse_document("{ a b c d e f g h i j k }", None, &cfg),
            Err(GraphqlError::TooLarge)
        );
    }

    #[test]
    fn garbage_and_cut_documents() {
        for (doc, want) in [
            ("", GraphqlError::NoOperation),
            ("# only a comment", GraphqlError::NoOperation),
            ("{ a", GraphqlError::Truncated),
            ("query Q { a(x: \"unterminated", GraphqlError::Truncated),
            ("{ a(x: \"line\nbreak\") }", GraphqlError::Syntax),
            ("{ a \"\"\" never closed", GraphqlError::Truncated),
            ("type Query { a: Int }", GraphqlError::Syntax),
            ("<html>", GraphqlError::Syntax),
            ("{ a } }", GraphqlError::Syntax),
            ("{ ..a }", GraphqlError::Syntax),
            ("{ a ..", GraphqlError::Truncated),
            ("{ ... }", GraphqlError::Syntax),
            ("query Q ( { a }", GraphqlError::Truncated),
            ("{ a: }", GraphqlError::Syntax),
            ("{ é }", GraphqlError::Syntax),
        ] {
            assert_eq!(op(doc, None), Err(want), "{doc:?}");
        }
    }

    #[test]
    fn json_single_and_batched() {
        let mut stats = GraphqlStats::default();
        let body = br#"[
            {"query": "query A { a }", "variables": {"password": "x"}},
            {"query": "mutation { b }", "operationName": null},
            {"query": "{ broken"},
            {"query": "query C { c } query D { d }", "operationName": "D"},
            7
        ]"#;
        let ops = parse_json_request(body, false, &cfg(), &mut stats).unwrap();
        let got: Vec<_> = ops.iter().map(|o| (o.kind, o.name.as_deref())).collect();
        assert_eq!(
            got,
            [
                (Some(Query), Some("A")),
                (Some(Mutation), None),
                (Some(Query), Some("D"))
            ]
        );
        assert_eq!(stats.batches, 1);
        assert_eq!(stats.operations, 3);
        assert_eq!(stats.truncated, 1);
        assert_eq!(stats.not_graphql, 1);
        let single = br#"{"query": "{ x }", "operationName": ""}"#;
        let ops = parse_json_request(single, false, &cfg(), &mut stats).unwrap();
        assert_eq!(ops[0].fields, v(&["x"]));
    }

    #[test]
    fn json_errors_are_typed_and_counted() {
        let mut stats = GraphqlStats::default();
        let c = cfg();
        let mut run = |b: &[u8]| parse_json_request(b, false, &c, &mut stats).unwrap_err();
        assert_eq!(run(b"not json"), GraphqlError::NotJson);
        assert_eq!(run(b"{\"variables\": {}}"), GraphqlError::NotGraphql);
        assert_eq!(run(b"{\"query\": 5}"), GraphqlError::NotGraphql);
        assert_eq!(run(b"\"{ a }\""), GraphqlError::NotGraphql);
        assert_eq!(run(b"[]"), GraphqlError::NotGraphql);
        assert_eq!(run(b"[1]"), GraphqlError::NotGraphql);
        assert_eq!(
            run(b"{\"query\": \"{ a }\", \"operationName\": \"X\"}"),
            GraphqlError::UnknownOperationName
        );
        assert_eq!(stats.not_json, 1);
        assert_eq!(stats.not_graphql, 5);
        assert_eq!(stats.unknown_operation_name, 1);
        assert_eq!(
            GraphqlError::AmbiguousOperation.as_str(),
            "ambiguous_operation"
        );
    }

    #[test]
    fn batch_bound_is_counted() {
        let cfg = GraphqlConfig {
            max_operations_per_request: 2,
            ..cfg()
        };
        let mut stats = GraphqlStats::default();
        let body = br#"[{"query": "{a}"}, {"query": "{b}"}, {"query": "{c}"}]"#;
        let ops = parse_json_request(body, false, &cfg, &mut stats).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(stats.batch_limit, 1);
    }

    #[test]
    fn truncated_json_keeps_complete_operations() {
        let mut stats = GraphqlStats::default();
        let body = br#"{"operationName": "A", "query": "query A { a }", "variables": {"x": "long"#;
        let ops = parse_json_request(body, true, &cfg(), &mut stats).unwrap();
        assert_eq!(ops[0].name.as_deref(), Some("A"));
        let cut_in_query = br#"{"operationName": "A", "query": "query A { a"#;
        assert_eq!(
            parse_json_request(cut_in_query, true, &cfg(), &mut stats),
            Err(GraphqlError::Truncated)
        );
        let batch = br#"[{"query": "{ a }"}, {"query": "{ b"#;
        let ops = parse_json_request(batch, true, &cfg(), &mut stats).unwrap();
        assert_eq!(ops.len(), 1);
    }

    #[test]
    fn persisted_queries() {
        let mut stats = GraphqlStats::default();
        let body = br#"{"operationName": "Feed", "variables": {}, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab12"}}}"#;
        let ops = parse_json_request(body, false, &cfg(), &mut stats).unwrap();
        assert_eq!(ops[0].kind, None);
        assert_eq!(ops[0].name.as_deref(), Some("Feed"));
        assert!(ops[0].persisted);
        let get =
            "operationName=Feed&extensions=%7B%22persistedQuery%22%3A%7B%22version%22%3A1%7D%7D";
        let op = parse_get_request(get, &cfg(), &mut stats).unwrap();
        assert!(op.persisted);
        assert_eq!(stats.persisted, 2);
        assert_eq!(
            serde_json::to_value(&op).unwrap(),
            serde_json::json!({"type": null, "name": "Feed", "fields": [], "persisted": true})
        );
    }

    #[test]
    fn get_requests() {
        let mut stats = GraphqlStats::default();
        let qs = "?query=query+Q%28%24id%3A+ID%29+%7B+node%28id%3A+%24id%29+%7B+id+%7D+%7D&operationName=Q&variables=%7B%7D";
        let op = parse_get_request(qs, &cfg(), &mut stats).unwrap();
        assert_eq!((op.kind, op.name.as_deref()), (Some(Query), Some("Q")));
        assert_eq!(op.fields, v(&["node"]));
        assert_eq!(
            parse_get_request("page=2", &cfg(), &mut stats),
            Err(GraphqlError::NotGraphql)
        );
        assert_eq!(stats.requests, 2);
        assert_eq!(stats.not_graphql, 1);
    }

    #[test]
    fn document_bodies() {
        let mut stats = GraphqlStats::default();
        let op = parse_document_request(
            b"query A { a } query B { b }",
            Some("B"),
            &cfg(),
            &mut stats,
        )
        .unwrap();
        assert_eq!(op.fields, v(&["b"]));
        assert_eq!(
            parse_document_request(b"\xff{ a }", None, &cfg(), &mut stats),
            Err(GraphqlError::NotGraphql)
        );
        let op = parse_document_request(b"{ a }", Some("Named"), &cfg(), &mut stats);
        assert_eq!(op, Err(GraphqlError::UnknownOperationName));
    }

    #[test]
    fn stats_list_and_merge() {
        let mut a = GraphqlStats {
            operations: 1,
            ..GraphqlStats::default()
        };
        a.merge(&a.clone());
        assert_eq!(a.operations, 2);
        assert!(a.counters().contains(&("operations", 2)));
    }

    #[test]
    fn no_panic_on_random_bytes() {
        let mut x: u64 = 0xD1B5_4A32_D192_ED03;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet: &[u8] =
            b"{}()[]:@$!=|.\"\\#\n ,aqon0-\xef\xbb\xbf\xc3\xa9 query mutation fragment on ...";
        let all: Vec<u8> = (0..=255).collect();
        let cfg = GraphqlConfig {
            max_tokens_per_document: 50,
            ..cfg()
        };
        let mut stats = GraphqlStats::default();
        for i in 0..30_000 {
            let pool: &[u8] = if i % 3 == 0 { &all } else { alphabet };
            let len = (next() % 60) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| pool[(next() % pool.len() as u64) as usize])
                .collect();
            let _ = parse_document_request(&input, None, &cfg, &mut stats);
            let _ = parse_document_request(&input, Some("q"), &cfg, &mut stats);
            let text = String::from_utf8_lossy(&input);
            let json = serde_json::json!({"query": text}).to_string();
            let _ = parse_json_request(json.as_bytes(), false, &cfg, &mut stats);
            let _ = parse_json_request(&input, next() % 2 == 0, &cfg, &mut stats);
            let _ = parse_get_request(&format!("query={text}"), &cfg, &mut stats);
        }
        assert!(stats.requests > 0);
    }
}
