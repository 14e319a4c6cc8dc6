//! Path templating: concrete request paths in, route templates out (`/users/42/orders/7` →
//! `/users/{user_id}/orders/{id}`), per host, learnt from traffic.
//!
//! # Main types
//!
//! - [`Templater`]: one segment tree per host. [`Templater::observe`] learns from a path and
//!   answers its [`RouteId`]; [`Templater::lookup`] answers without learning (for 404s, so a
//!   scanner spraying random paths creates nothing); [`Templater::add_spec_template`] imports
//!   a template from an API spec, whose parameters and literals then win;
//!   [`Templater::restore_template`] recreates a template saved by an earlier run, without
//!   pinning anything.
//! - [`RouteId`]: a small `Copy` id. An id always names the same template string
//!   ([`Templater::template`]); when learning changes a template, the route gets a new id and
//!   the old one is reported in a [`RouteChange`] ([`Templater::drain_changes`]) so the caller
//!   can move its statistics. Old ids stay valid for `template()` and [`Templater::resolve`].
//! - [`ParamEvidence`]: per parameter of a template, the rule that made it, a few redacted
//!   sample values, counts by [`ValueKind`], the distinct count (bounded).
//! - [`TemplateConfig`] (bounds and thresholds) and [`TemplateStats`] (counters, one per bound).
//!
//! # Rules
//!
//! `docs/templating.md` explains the rules with examples and the measured accuracy; in
//! short: a path is split on `/` (query string and fragment cut off, trailing slashes
//! ignored: `/users/` is `/users`; empty segments inside, as in `/a//b`, are kept as empty
//! literals; `/` is the root route). Segments stay as on the wire (percent-encoded); a
//! segment's *class* is judged on its percent-decoded text:
//!
//! - **static**: empty, versions (`v1`, `v2beta`, `v1.2`, `1.0`), RPC method names
//!   (`getUser`, `users.list`, `chat.postMessage`) and a core vocabulary of words that sit
//!   beside identifiers (`me`, `self`, `search`, `new`, `featured`, `count`, `bulk`,
//!   `login`, ..., plus [`TemplateConfig::static_words`]);
//! - **noun**: a larger vocabulary of resource and route nouns (`users`, `settings`,
//!   `history`, `blog`, ...) and compound names led by a view word (`new-arrivals`,
//!   `top-rated`);
//! - **identifier**: the identifier kinds of [`crate::value`] (integer, number, UUID,
//!   ObjectId, hex/hash, date, date-time, email, IPv4, token), a name around one (`42.json`),
//!   a generated name with digits (`order-2023-17`, `red-shoe-42`, `INV-00042`: three or more
//!   digits, or a separator then a digit) and a segment longer than
//!   [`max_literal_bytes`](TemplateConfig::max_literal_bytes);
//! - **name**: anything else, a plain word (`[a-z]+([-_][a-z]+)*`: `torvalds`, `red-shoe`)
//!   or plainly not a word (`report.pdf`, `Alice`, `mike88`, `%`-escapes, non-ASCII).
//!
//! At each tree node, **a known literal child always wins** (no fall-back to the parameter
//! once it is taken). Otherwise an identifier goes to the node's parameter (created with rule
//! `type:<kind>`, `type:generated` or `type:long`); a name goes to the parameter if that
//! *absorbs* names (learnt, forced or from a spec); anything else becomes a literal child.
//! A typed parameter never absorbs names: plain literals beside it are static siblings
//! (`/users/me` beside `/users/{id}`).
//!
//! **Learning** runs at a node when a name literal appears under it (unless its parameter
//! is typed by kind or already absorbs names). *Candidates* are the literal children that
//! are names or nouns, not pinned (by a spec or a split) and not collections (a literal whose
//! child is a typed or spec parameter, as `orders` in `/orders/{id}`). Names hit at least
//! [`static_min_hits`](TemplateConfig::static_min_hits) times and
//! [`static_hit_ratio`](TemplateConfig::static_hit_ratio) × the lower quartile of the names'
//! hits are *recurring static siblings* and left out. The rest (the *usual* names; values of
//! a `type:generated` parameter there count as names) merge into a parameter when there are
//! at least [`min_distinct`](TemplateConfig::min_distinct) of them (`learned:distinct>=N`),
//! or, below the root, when at least
//! [`min_distinct_similar`](TemplateConfig::min_distinct_similar) names share a
//! continuation, a child or grandchild name such as `repos` in `/users/alice/repos` and
//! `/users/bob/repos` (`learned:similar>=N`; every candidate sharing it merges too, however
//! often hit: a popular owner, a repository named `blog`), or when at least that many are
//! plainly not words (`learned:names>=N`). Merging moves subtrees under the parameter,
//! uniting children of the same name, and learning runs again below: that is how
//! `/repos/{owner}/{repo}` forms.
//!
//! **Joins and extraction**, beside a parameter that absorbs names, run every
//! [`join_every_hits`](TemplateConfig::join_every_hits) calls of the node, when a literal
//! beside it grows a child, and when a plain-word value reaches `static_min_hits` hits (and
//! each doubling). A leftover literal joins the parameter when it shares its continuation,
//! or when it is old ([`static_min_age`](TemplateConfig::static_min_age) calls) and rare
//! (less than 1/[`static_rate_div`](TemplateConfig::static_rate_div) of them). A plain-word
//! value seen at least `static_min_hits` times, always as the last segment, where a share `q`
//! of the parameter's other calls ended there and `q^hits` is below
//! [`extract_chance_percent`](TemplateConfig::extract_chance_percent), is a static sibling
//! that first came after the parameter formed: it becomes a pinned literal again
//! ([`RouteChange::Extracted`]).
//!
//! **Split-back**: a learnt parameter that, once it has
//! [`split_after_hits`](TemplateConfig::split_after_hits) observations (checked then and at
//! each doubling), has seen at most [`split_max_values`](TemplateConfig::split_max_values)
//! distinct values, each at least [`split_min_value_hits`](TemplateConfig::split_min_value_hits)
//! times and none an identifier, turns back into pinned literals (`/en/docs`, `/fr/docs`),
//! each with a copy of the parameter's subtree ([`RouteChange::Split`]). Typed and spec
//! parameters never split.
//!
//! **Spec templates** ([`Templater::add_spec_template`]): literal segments are created and
//! pinned; a `{...}` segment (whole or mixed, as `{name}.json`) becomes the node's parameter,
//! keeps the spec's text as its name, absorbs names, and existing name literals beside it
//! merge into it at once.
//!
//! # Parameter names
//!
//! Spec parameters keep their spec text. Generated names: the last parameter of a template
//! is `{id}` (so a template with one parameter has `{id}`); each earlier one is
//! `{<base>_id}`, `<base>` being the nearest literal segment before it (versions skipped),
//! lower-cased, singularised (`users` → `user`, `categories` → `category`) and reduced to
//! `[a-z0-9_]`, or `param` when there is none. A name already used in the template gets
//! `_2`, `_3`, ...: `/users/{user_id}/orders/{id}`, `/repos/{repo_id}/{repo_id_2}/pulls/{id}`.
//! The same parameter node can thus carry different names in different templates.
//!
//! # Bounds (each with a counter in [`TemplateStats`])
//!
//! | bound | what happens when hit | counter |
//! |---|---|---|
//! | [`max_hosts`](TemplateConfig::max_hosts) | further hosts share one tree named `*` | `hosts_overflow` |
//! | [`max_nodes_per_host`](TemplateConfig::max_nodes_per_host) | the rest of the path maps to a catch-all route `<prefix>/{*rest}` | `node_limit` |
//! | [`max_literal_children`](TemplateConfig::max_literal_children) | forced merge of the node's candidates and its route-word literals into a parameter (rule `forced:children>=N`); further unknown segments go to it | `literal_children_limit` |
//! | [`max_segments`](TemplateConfig::max_segments) | segments beyond it map to the catch-all route | `paths_truncated` |
//! | [`max_literal_bytes`](TemplateConfig::max_literal_bytes) | a longer segment is a parameter (`type:long`) | `long_segments` |
//! | [`max_tracked_values`](TemplateConfig::max_tracked_values) | distinct values of a parameter stop being tracked; `distinct` is then a lower bound | `distinct_saturated` |
//! | [`max_samples`](TemplateConfig::max_samples) | further sample values are not kept | `samples_full` |
//! | [`max_pending_changes`](TemplateConfig::max_pending_changes) | the oldest undrained changes are dropped ([`Templater::resolve`] still works) | `changes_dropped` |
//!
//! # Cost
//!
//! `observe` walks the path once, splitting it with an iterator and finding each literal
//! child by binary search on `&str`. When every node of the path exists it does not allocate,
//! apart from a parameter's value table and samples, which grow only until they reach their
//! bounds (`crates/inventory/tests/template_alloc.rs` checks this with a counting allocator).
//! Learning, merges and splits allocate, and happen when the tree changes, not per call.
//! Everything is deterministic: children are kept sorted, values are hashed with FNV-1a, no
//! randomness and no hash-map iteration order reaches a result.
//!
//! ```
//! use apiscope_inventory::template::{TemplateConfig, Templater};
//!
//! let mut t = Templater::new(TemplateConfig::default());
//! let a = t.observe("api.example.com", "/users/42/orders/7");
//! let b = t.observe("api.example.com", "/users/43/orders/9");
//! assert_eq!(a, b);
//! assert_eq!(t.template(a), "/users/{user_id}/orders/{id}");
//!
//! // A static sibling stays literal and wins over the parameter.
//! let me = t.observe("api.example.com", "/users/me");
//! assert_eq!(t.template(me), "/users/me");
//!
//! // Names become a parameter once enough of them share a continuation.
//! for owner in ["alice", "bob", "carol"] {
//!     t.observe("api.example.com", &format!("/people/{owner}/repos"));
//! }
//! let r = t.lookup("api.example.com", "/people/dave/repos").unwrap();
//! assert_eq!(t.template(r), "/people/{id}/repos");
//! let ev = t.evidence(r);
//! assert_eq!(ev[0].rule, "learned:similar>=3");
//!
//! // lookup never learns: an unknown path is None.
//! assert_eq!(t.lookup("api.example.com", "/admin/backup.zip"), None);
//!
//! // Spec templates win and keep their names.
//! let pet = t.add_spec_template("api.example.com", "/pets/{petId}");
//! assert_eq!(t.observe("api.example.com", "/pets/fluffy"), pet);
//! assert_eq!(t.template(pet), "/pets/{petId}");
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::value::{classify, ValueKind};

/// Bounds and learning thresholds. Every bound has a counter in [`TemplateStats`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateConfig {
    /// Hosts with a tree of their own; further hosts share one tree named `*`
    /// (`hosts_overflow`).
    pub max_hosts: usize,
    /// Tree nodes per host; beyond, the rest of a path maps to a catch-all route
    /// `<prefix>/{*rest}` (`node_limit`).
    pub max_nodes_per_host: usize,
    /// Literal children per node; one more forces a merge into a parameter
    /// (`literal_children_limit`).
    pub max_literal_children: usize,
    /// Segments templated per path; the rest maps to the catch-all route (`paths_truncated`).
    pub max_segments: usize,
    /// A segment longer than this is never a literal: it is a parameter (`long_segments`).
    pub max_literal_bytes: usize,
    /// Distinct values tracked per parameter; beyond, `distinct` is a lower bound
    /// (`distinct_saturated`).
    pub max_tracked_values: usize,
    /// Sample values kept per parameter, the first distinct ones, emails and tokens redacted
    /// (`samples_full`).
    pub max_samples: usize,
    /// Undrained [`RouteChange`]s kept; beyond, the oldest are dropped (`changes_dropped`).
    pub max_pending_changes: usize,
    /// Name candidates at one position that make a parameter on count alone.
    pub min_distinct: usize,
    /// Name candidates that make a parameter when they share a continuation or are plainly
    /// not words (below the root only).
    pub min_distinct_similar: usize,
    /// A candidate hit at least this often ...
    pub static_min_hits: u32,
    /// ... and at least this many times the lower quartile of its siblings' hits is a
    /// recurring static sibling: it stays literal.
    pub static_hit_ratio: u32,
    /// A literal (or a value of a parameter) that took at least 1/`static_rate_div` of its
    /// parent's calls since it appeared *recurs*: it is a static sibling.
    pub static_rate_div: u32,
    /// Calls of the parent since a literal appeared before it can be judged not to recur.
    pub static_min_age: u32,
    /// Calls of a node between two checks of its absorbing parameter: leftover literals
    /// join it, recurring plain-word values are extracted from it.
    pub join_every_hits: u32,
    /// A plain-word value is extracted from a parameter (as a static sibling) when the
    /// chance that a value of it never went further in as many calls is below this, in
    /// percent.
    pub extract_chance_percent: u32,
    /// Observations of a learnt parameter before split-back is considered (then at each
    /// doubling).
    pub split_after_hits: u32,
    /// A learnt parameter with at most this many distinct values may split back; must not
    /// exceed `max_samples` (the values are taken from the samples).
    pub split_max_values: usize,
    /// ... if each of them was seen at least this often.
    pub split_min_value_hits: u32,
    /// Extra route words that never become parameters (ASCII case-insensitive).
    pub static_words: Vec<String>,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            max_hosts: 1024,
            max_nodes_per_host: 50_000,
            max_literal_children: 128,
            max_segments: 32,
            max_literal_bytes: 96,
            max_tracked_values: 256,
            max_samples: 5,
            max_pending_changes: 4096,
            min_distinct: 6,
            min_distinct_similar: 3,
            static_min_hits: 5,
            static_hit_ratio: 4,
            static_rate_div: 32,
            static_min_age: 64,
            join_every_hits: 32,
            extract_chance_percent: 1,
            split_after_hits: 256,
            split_max_values: 3,
            split_min_value_hits: 32,
            static_words: Vec::new(),
        }
    }
}

impl TemplateConfig {
    /// Every problem with these values, each as `key: message`; empty when usable.
    /// [`Templater::new`] clamps bad values to the nearest usable one instead of failing.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                errors.push(msg.to_owned());
            }
        };
        check(self.max_hosts >= 1, "max_hosts: must be at least 1");
        check(
            self.max_nodes_per_host >= 16,
            "max_nodes_per_host: must be at least 16",
        );
        check(
            self.max_literal_children >= 2,
            "max_literal_children: must be at least 2",
        );
        check(self.max_segments >= 1, "max_segments: must be at least 1");
        check(
            self.max_literal_bytes >= 8,
            "max_literal_bytes: must be at least 8",
        );
        check(
            self.max_tracked_values >= 1,
            "max_tracked_values: must be at least 1",
        );
        check(self.min_distinct >= 2, "min_distinct: must be at least 2");
        check(
            self.min_distinct_similar >= 2,
            "min_distinct_similar: must be at least 2",
        );
        check(
            self.static_hit_ratio >= 1,
            "static_hit_ratio: must be at least 1",
        );
        check(
            self.split_max_values <= self.max_samples,
            "split_max_values: must not exceed max_samples",
        );
        check(
            self.static_words.iter().all(|w| !w.is_empty()),
            "static_words: empty word",
        );
        errors
    }

    fn clamped(mut self) -> Self {
        self.max_hosts = self.max_hosts.max(1);
        self.max_nodes_per_host = self.max_nodes_per_host.max(16);
        self.max_literal_children = self.max_literal_children.max(2);
        self.max_segments = self.max_segments.max(1);
        self.max_literal_bytes = self.max_literal_bytes.max(8);
        self.max_tracked_values = self.max_tracked_values.max(1);
        self.min_distinct = self.min_distinct.max(2);
        self.min_distinct_similar = self.min_distinct_similar.max(2);
        self.static_hit_ratio = self.static_hit_ratio.max(1);
        self.static_rate_div = self.static_rate_div.max(1);
        self.join_every_hits = self.join_every_hits.max(1);
        self.split_max_values = self.split_max_values.min(self.max_samples);
        self
    }
}

/// A route (one template of one host). Ids are dense, start at 0 and are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RouteId(u32);

impl RouteId {
    /// The id as a number (dense, from 0), e.g. to index the caller's own tables.
    pub const fn index(self) -> u32 {
        self.0
    }
}

/// A change of templates since the last [`Templater::drain_changes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RouteChange {
    /// The routes `from` became `into` (they merged into a parameter, or their template
    /// changed and they got a new id): move their statistics to `into`.
    Merged {
        /// The live route.
        into: RouteId,
        /// Routes that no longer match anything (sorted).
        from: Vec<RouteId>,
    },
    /// One value of the parameter route `from` turned out to be a recurring static sibling:
    /// paths with it now match the literal route `into`; `from` stays live for the others.
    Extracted {
        /// The parameter route (still live).
        from: RouteId,
        /// The new literal route.
        into: RouteId,
    },
    /// The parameter route `from` split back into literal routes `into` (sorted); paths
    /// that matched `from` now match one of them.
    Split {
        /// The route that no longer matches anything.
        from: RouteId,
        /// Its literal successors.
        into: Vec<RouteId>,
    },
}

/// What is known about one parameter of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamEvidence {
    /// Its name in this template (`id`, `user_id`, or the spec's text).
    pub name: String,
    /// Its segment index in the template, from 0.
    pub position: usize,
    /// The rule that made it: `type:<kind>`, `type:generated`, `type:long`,
    /// `learned:distinct>=N`, `learned:similar>=N`, `learned:names>=N`,
    /// `forced:children>=N` or `spec`.
    pub rule: String,
    /// Rules that later widened it (a forced merge into a typed parameter, a spec
    /// adopting a learnt one), in order.
    pub also: Vec<String>,
    /// The first distinct values seen (at most `max_samples`), as on the wire; a value that
    /// is an email or a token is `<email>` / `<token>`.
    pub samples: Vec<String>,
    /// Observations by value kind (`integer`, `uuid`, `string`, ...).
    pub kinds: BTreeMap<String, u64>,
    /// Distinct values seen (a lower bound when `distinct_saturated`).
    pub distinct: u64,
    /// True when more than `max_tracked_values` distinct values were seen.
    pub distinct_saturated: bool,
    /// Observations through this parameter.
    pub observations: u64,
}

macro_rules! template_counters {
    ($( $(#[doc = $doc:literal])* $name:ident, )*) => {
        /// Counters of a [`Templater`] (monotonic), and a few current sizes (`hosts`,
        /// `nodes`, `routes`).
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
        pub struct TemplateStats {
            $( $(#[doc = $doc])* pub $name: u64, )*
        }

        impl TemplateStats {
            /// Every field as `(name, value)`, in declaration order.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name), )*]
            }
        }
    };
}

template_counters! {
    /// Calls to `observe`.
    observations,
    /// Routes created (including the successors of merged and split routes).
    routes_created,
    /// Parameters made by type (`type:*`).
    params_typed,
    /// Parameters learnt from names (`learned:*`).
    params_learned,
    /// Parameters created by a forced merge.
    params_forced,
    /// Parameters created or adopted by a spec template.
    params_spec,
    /// Parameters recreated by `restore_template`.
    params_restored,
    /// Learning merges (one per node where names merged into a parameter).
    merges,
    /// Literal nodes merged into a parameter by learning, forcing or a spec.
    literals_merged,
    /// Parameters split back into literals.
    splits,
    /// Recurring plain-word values extracted from a learnt parameter back into literals.
    values_extracted,
    /// Observations of a host beyond `max_hosts`, mapped to the shared `*` tree.
    hosts_overflow,
    /// Observations that hit `max_nodes_per_host` and went to a catch-all route.
    node_limit,
    /// Forced merges because a node reached `max_literal_children`.
    literal_children_limit,
    /// Paths longer than `max_segments`.
    paths_truncated,
    /// Segments longer than `max_literal_bytes` turned into parameters.
    long_segments,
    /// Parameters whose distinct values exceeded `max_tracked_values`.
    distinct_saturated,
    /// Parameters that saw more distinct values than `max_samples`.
    samples_full,
    /// Route changes dropped because `max_pending_changes` were undrained.
    changes_dropped,
    /// Current number of host trees.
    hosts,
    /// Current number of tree nodes, all hosts.
    nodes,
    /// Current number of live routes.
    routes,
}

// ---------------------------------------------------------------------------------------------
// Internal state

const ROOT: u32 = 0;
const NO_PARENT: u32 = u32::MAX;
const KIND_COUNT: usize = 14;
const ALL_KINDS: [ValueKind; KIND_COUNT] = [
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

fn kind_index(k: ValueKind) -> usize {
    ALL_KINDS
        .iter()
        .position(|x| *x == k)
        .unwrap_or(KIND_COUNT - 1)
}

/// Why a parameter exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Type(ValueKind),
    Generated,
    Long,
    Distinct(usize),
    Similar(usize),
    Names(usize),
    Forced(usize),
    Spec,
    /// Recreated by [`Templater::restore_template`].
    Restored,
}

impl Rule {
    fn describe(self) -> String {
        match self {
            Rule::Type(k) => format!("type:{}", k.as_str()),
            Rule::Generated => "type:generated".to_owned(),
            Rule::Long => "type:long".to_owned(),
            Rule::Distinct(n) => format!("learned:distinct>={n}"),
            Rule::Similar(n) => format!("learned:similar>={n}"),
            Rule::Names(n) => format!("learned:names>={n}"),
            Rule::Forced(n) => format!("forced:children>={n}"),
            Rule::Spec => "spec".to_owned(),
            Rule::Restored => "restored".to_owned(),
        }
    }

    fn typed(self) -> bool {
        matches!(self, Rule::Type(_) | Rule::Generated | Rule::Long)
    }

    fn learned(self) -> bool {
        matches!(self, Rule::Distinct(_) | Rule::Similar(_) | Rule::Names(_))
    }
}

#[derive(Debug, Clone)]
struct ParamState {
    rule: Rule,
    also: Vec<Rule>,
    /// Absorbs names (learnt, forced or spec); a purely typed parameter does not.
    absorbing: bool,
    /// The spec's segment text (`{petId}`), used verbatim as the name.
    spec_label: Option<Box<str>>,
    kinds: [u64; KIND_COUNT],
    /// Tracked values, sorted by hash.
    values: Vec<ValueStat>,
    saturated: bool,
    samples: Vec<Box<str>>,
    samples_full: bool,
    /// Next `hits` value at which split-back is considered.
    next_split_check: u32,
    /// Parent hits at which the next join check runs (every `join_every_hits`).
    join_at: u32,
}

/// One tracked value of a parameter.
#[derive(Debug, Clone)]
struct ValueStat {
    /// FNV-1a of the value as on the wire.
    hash: u64,
    hits: u32,
    /// The parent's hits when first seen.
    born: u32,
    /// Never followed by a further segment.
    leaf_only: bool,
    /// The text, kept for plain words only (the values that may be extracted back into a
    /// literal).
    word: Option<Box<str>>,
}

impl ParamState {
    fn new(rule: Rule, cfg: &TemplateConfig, parent_hits: u32) -> Self {
        ParamState {
            rule,
            also: Vec::new(),
            absorbing: !rule.typed() && rule != Rule::Restored,
            spec_label: None,
            kinds: [0; KIND_COUNT],
            values: Vec::new(),
            saturated: false,
            samples: Vec::new(),
            samples_full: false,
            next_split_check: cfg.split_after_hits.max(1),
            join_at: parent_hits.saturating_add(cfg.join_every_hits),
        }
    }

    fn find(&self, hash: u64) -> Result<usize, usize> {
        self.values.binary_search_by_key(&hash, |v| v.hash)
    }

    /// Whether `raw` is among the tracked values.
    fn holds(&self, raw: &str) -> bool {
        self.find(fnv1a(raw.as_bytes())).is_ok()
    }

    fn add_rule(&mut self, r: Rule) {
        if self.rule != r && !self.also.contains(&r) {
            self.also.push(r);
        }
    }
}

/// Why a literal may not merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pin {
    None,
    Spec,
    Split,
}

#[derive(Debug, Clone)]
struct Node {
    parent: u32,
    /// Literal text as on the wire; empty for a parameter.
    label: Box<str>,
    /// `Some` for a parameter node.
    param_state: Option<Box<ParamState>>,
    pin: Pin,
    /// Literal children, sorted by label.
    literals: Vec<u32>,
    param: Option<u32>,
    route: Option<RouteId>,
    overflow_route: Option<RouteId>,
    hits: u32,
    /// Observations that ended at this node.
    ended: u32,
    /// The parent's hits when this node was created (its age is measured in them).
    born: u32,
    alive: bool,
}

impl Node {
    fn new(parent: u32, label: Box<str>, param_state: Option<Box<ParamState>>) -> Self {
        Node {
            parent,
            label,
            param_state,
            pin: Pin::None,
            literals: Vec::new(),
            param: None,
            route: None,
            overflow_route: None,
            hits: 0,
            ended: 0,
            born: 0,
            alive: true,
        }
    }

    fn is_param(&self) -> bool {
        self.param_state.is_some()
    }
}

#[derive(Debug)]
struct Host {
    name: Box<str>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    live: usize,
}

impl Host {
    fn new(name: &str) -> Self {
        Host {
            name: name.into(),
            nodes: vec![Node::new(NO_PARENT, "".into(), None)],
            free: Vec::new(),
            live: 1,
        }
    }

    fn node(&self, n: u32) -> &Node {
        &self.nodes[n as usize]
    }

    fn node_mut(&mut self, n: u32) -> &mut Node {
        &mut self.nodes[n as usize]
    }

    fn state(&self, n: u32) -> Option<&ParamState> {
        self.node(n).param_state.as_deref()
    }

    fn state_mut(&mut self, n: u32) -> Option<&mut ParamState> {
        self.node_mut(n).param_state.as_deref_mut()
    }

    fn find_literal(&self, n: u32, seg: &str) -> Option<u32> {
        let lits = &self.node(n).literals;
        lits.binary_search_by(|&c| (*self.node(c).label).cmp(seg))
            .ok()
            .map(|i| lits[i])
    }

    fn insert_literal(&mut self, parent: u32, child: u32) {
        let label = self.node(child).label.clone();
        let pos = {
            let lits = &self.node(parent).literals;
            match lits.binary_search_by(|&c| (*self.node(c).label).cmp(&label)) {
                Ok(i) | Err(i) => i,
            }
        };
        self.node_mut(parent).literals.insert(pos, child);
        self.node_mut(child).parent = parent;
    }

    fn remove_literal(&mut self, parent: u32, child: u32) {
        self.node_mut(parent).literals.retain(|&c| c != child);
    }

    /// A new node, or `None` when the host's node budget is spent (unless `force`).
    fn alloc(&mut self, node: Node, max: usize, force: bool) -> Option<u32> {
        if self.live >= max && !force {
            return None;
        }
        self.live += 1;
        if let Some(i) = self.free.pop() {
            self.nodes[i as usize] = node;
            Some(i)
        } else {
            self.nodes.push(node);
            Some((self.nodes.len() - 1) as u32)
        }
    }

    fn release(&mut self, n: u32) {
        let node = self.node_mut(n);
        node.alive = false;
        node.label = "".into();
        node.param_state = None;
        node.literals = Vec::new();
        node.param = None;
        node.route = None;
        node.overflow_route = None;
        self.live -= 1;
        self.free.push(n);
    }

    /// Root-to-node chain, root excluded.
    fn chain(&self, mut n: u32) -> Vec<u32> {
        let mut v = Vec::new();
        while n != ROOT && n != NO_PARENT {
            v.push(n);
            n = self.node(n).parent;
        }
        v.reverse();
        v
    }

    /// All nodes of the subtree at `n` (pre-order, literals in order, then the parameter).
    fn subtree(&self, n: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut stack = vec![n];
        while let Some(x) = stack.pop() {
            out.push(x);
            let node = self.node(x);
            if let Some(p) = node.param {
                stack.push(p);
            }
            stack.extend(node.literals.iter().rev());
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Live,
    Merged(RouteId),
    Split,
}

#[derive(Debug)]
struct Route {
    host: u32,
    template: Box<str>,
    /// (parameter node, its name in this template, segment index)
    params: Box<[(u32, Box<str>, usize)]>,
    fate: Fate,
}

/// Work after a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Post {
    /// A name literal was created under this node: learning check.
    Learn,
    /// This absorbing parameter reached a join check.
    Join,
    /// This learnt parameter reached a split-back check.
    Split,
}

/// The class of one segment, for templating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg {
    /// Route word, version, RPC method or empty: always literal.
    Static,
    /// A resource noun (`users`, `blog`, `channels`): literal, but may join a parameter whose
    /// continuation it shares (a repository named `blog`).
    Noun(ValueKind),
    /// A parameter at once.
    Ident(ValueKind, Rule),
    /// A name that looks like a word (`[a-z]+([-_][a-z]+)*`).
    Word(ValueKind),
    /// A name that is plainly not a word.
    Name(ValueKind),
}

// ---------------------------------------------------------------------------------------------
// The templater

/// Per-host route trees. See the [module documentation](self).
#[derive(Debug)]
pub struct Templater {
    cfg: TemplateConfig,
    vocab: Vocab,
    host_index: HashMap<Box<str>, u32>,
    hosts: Vec<Host>,
    routes: Vec<Route>,
    changes: Vec<RouteChange>,
    /// (retired route, successor) pairs of the operation in progress.
    retired: Vec<(RouteId, RouteId)>,
    /// Work found during a walk, done after it.
    pending: Vec<(Post, u32)>,
    /// Routes with an id from here on were created by the operation in progress.
    op_start: u32,
    stats: TemplateStats,
}

impl Templater {
    /// A templater with these bounds (out-of-range values are clamped, see
    /// [`TemplateConfig::validate`]).
    pub fn new(cfg: TemplateConfig) -> Self {
        let cfg = cfg.clamped();
        let vocab = Vocab::new(&cfg.static_words);
        Templater {
            cfg,
            vocab,
            host_index: HashMap::new(),
            hosts: Vec::new(),
            routes: Vec::new(),
            changes: Vec::new(),
            retired: Vec::new(),
            pending: Vec::new(),
            op_start: 0,
            stats: TemplateStats::default(),
        }
    }

    /// The configuration in use (after clamping).
    pub fn config(&self) -> &TemplateConfig {
        &self.cfg
    }

    /// Learns from one request path (percent-encoded, as on the wire; a query string is
    /// ignored) of `host` and answers its route. Hosts are compared as given (normalise case
    /// and default ports before). Never panics; allocates only when the tree grows.
    pub fn observe(&mut self, host: &str, path: &str) -> RouteId {
        self.stats.observations += 1;
        self.op_start = self.routes.len() as u32;
        let h = self.host_slot(host);
        self.pending.clear();
        let mut node = ROOT;
        let mut overflow = false;
        let mut last_value: Option<(u32, u64)> = None;
        self.hosts[h].nodes[ROOT as usize].hits =
            self.hosts[h].nodes[ROOT as usize].hits.saturating_add(1);
        for (i, seg) in segments(path).enumerate() {
            if i >= self.cfg.max_segments {
                self.stats.paths_truncated += 1;
                overflow = true;
                break;
            }
            self.check_join(h, node);
            if let Some((p, hash)) = last_value.take() {
                // The value before this segment was not the last one.
                if let Some(st) = self.hosts[h].state_mut(p) {
                    if let Ok(i) = st.find(hash) {
                        st.values[i].leaf_only = false;
                    }
                }
            }
            if let Some(c) = self.hosts[h].find_literal(node, seg) {
                let n = self.hosts[h].node_mut(c);
                n.hits = n.hits.saturating_add(1);
                node = c;
                continue;
            }
            let class = classify_segment(seg, &self.vocab, &self.cfg);
            if matches!(class, Seg::Ident(_, Rule::Long)) {
                self.stats.long_segments += 1;
            }
            let host_ref = &self.hosts[h];
            let param = host_ref.node(node).param;
            let mut to_param = goes_to_param(class, seg, param.and_then(|p| host_ref.state(p)));
            if !to_param && host_ref.node(node).literals.len() >= self.cfg.max_literal_children {
                self.stats.literal_children_limit += 1;
                self.force_merge(h, node);
                // Names go to the (now absorbing) parameter; a route word takes the room the
                // merge made, or the parameter if there is none.
                to_param = !matches!(class, Seg::Static | Seg::Noun(_))
                    || self.hosts[h].node(node).literals.len() >= self.cfg.max_literal_children;
            }
            let next = if to_param {
                let p = match self.hosts[h].node(node).param {
                    Some(p) => Some(p),
                    None => {
                        let rule = match class {
                            Seg::Ident(_, r) => r,
                            _ => Rule::Forced(self.cfg.max_literal_children),
                        };
                        self.new_param(h, node, rule, false)
                    }
                };
                if let Some(p) = p {
                    let (kind, _) = seg_kind(class, seg);
                    let cfg = &self.cfg;
                    let host = &mut self.hosts[h];
                    let born = host.node(node).hits;
                    let n = host.node_mut(p);
                    n.hits = n.hits.saturating_add(1);
                    let hits = n.hits;
                    if let Some(st) = n.param_state.as_deref_mut() {
                        let v = NewValue {
                            raw: seg,
                            kind,
                            hits: 1,
                            born,
                            leaf_only: true,
                            word: matches!(class, Seg::Word(_) | Seg::Noun(_)),
                        };
                        let word = v.word;
                        let value_hits = record_value(st, v, cfg, &mut self.stats);
                        last_value = Some((p, fnv1a(seg.as_bytes())));
                        // A plain word that keeps coming back: is it a static sibling?
                        let m = cfg.static_min_hits.max(1);
                        if word
                            && st.absorbing
                            && value_hits >= m
                            && value_hits % m == 0
                            && (value_hits / m).is_power_of_two()
                        {
                            self.pending.push((Post::Join, p));
                        }
                        if st.rule.learned() && hits >= st.next_split_check {
                            st.next_split_check = st.next_split_check.saturating_mul(2);
                            self.pending.push((Post::Split, p));
                        }
                    }
                }
                p
            } else {
                let c = self.new_literal(h, node, seg);
                if c.is_some() {
                    if matches!(class, Seg::Word(_) | Seg::Name(_)) {
                        self.pending.push((Post::Learn, node));
                    }
                    // A literal beside a parameter grew a child: it may now share the
                    // parameter's continuation.
                    let host = &self.hosts[h];
                    let parent = host.node(node).parent;
                    if node != ROOT
                        && !host.node(node).is_param()
                        && host.node(parent).param.is_some()
                    {
                        self.pending.push((Post::Learn, parent));
                    }
                }
                c
            };
            match next {
                Some(c) => node = c,
                None => {
                    self.stats.node_limit += 1;
                    overflow = true;
                    break;
                }
            }
        }
        if !overflow {
            let n = self.hosts[h].node_mut(node);
            n.ended = n.ended.saturating_add(1);
        }
        let id = self.route_at(h, node, overflow);
        if self.pending.is_empty() {
            return id;
        }
        // The tree may change: learn, then answer with the route the path now matches.
        let pending = std::mem::take(&mut self.pending);
        for &(what, n) in &pending {
            if !self.hosts[h].nodes.get(n as usize).is_some_and(|x| x.alive) {
                continue;
            }
            match what {
                Post::Learn => {
                    // A merge here cascades into the merged subtree (`merge_into_param`).
                    self.maybe_learn(h, n);
                }
                Post::Join => {
                    self.extract_recurring(h, n);
                    self.join_leftovers(h, n, true);
                }
                Post::Split => self.try_split(h, n),
            }
        }
        self.pending = pending;
        self.flush_retired();
        self.lookup_in(h, path).unwrap_or(id)
    }

    /// The route `path` of `host` matches now, without learning anything: `None` when the
    /// path (or host) is not known, i.e. when [`observe`](Self::observe) would have to create
    /// a node or a route for it. A path that leaves the known tree at a node where a bound
    /// once made a catch-all route (`<prefix>/{*rest}`) answers that route. Never panics,
    /// never allocates.
    pub fn lookup(&self, host: &str, path: &str) -> Option<RouteId> {
        let h = match self.host_index.get(host) {
            Some(&h) => h as usize,
            None if self.hosts.len() >= self.cfg.max_hosts => *self.host_index.get("*")? as usize,
            None => return None,
        };
        self.lookup_in(h, path)
    }

    /// The template of a route (`/users/{id}`), also for routes that merged or split away
    /// (the template they had). Panics if `id` does not come from this templater.
    pub fn template(&self, id: RouteId) -> &str {
        &self.routes[id.0 as usize].template
    }

    /// The host of a route. Panics if `id` does not come from this templater.
    pub fn host_of(&self, id: RouteId) -> &str {
        &self.hosts[self.routes[id.0 as usize].host as usize].name
    }

    /// The live route `id` now stands for: itself while live, its successor after merges,
    /// `None` if it split into several. Panics if `id` does not come from this templater.
    pub fn resolve(&self, mut id: RouteId) -> Option<RouteId> {
        for _ in 0..=self.routes.len() {
            match self.routes[id.0 as usize].fate {
                Fate::Live => return Some(id),
                Fate::Merged(to) => id = to,
                Fate::Split => return None,
            }
        }
        None
    }

    /// Live routes, in id order.
    pub fn live_routes(&self) -> impl Iterator<Item = RouteId> + '_ {
        self.routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.fate == Fate::Live)
            .map(|(i, _)| RouteId(i as u32))
    }

    /// Imports a template from a spec (`/pets/{petId}`, `/files/{name}.json`): its literals
    /// are pinned, its parameters keep their text as names and absorb any non-route-word
    /// value. Returns its route. Never panics; if the node budget is spent the answer is the
    /// catch-all route of the deepest node reached.
    pub fn add_spec_template(&mut self, host: &str, template: &str) -> RouteId {
        self.op_start = self.routes.len() as u32;
        let h = self.host_slot(host);
        let mut node = ROOT;
        let mut overflow = false;
        for (i, seg) in segments(template).enumerate() {
            if i >= self.cfg.max_segments {
                self.stats.paths_truncated += 1;
                overflow = true;
                break;
            }
            let is_param = seg.contains('{') && seg.contains('}');
            if !is_param {
                let c = match self.hosts[h].find_literal(node, seg) {
                    Some(c) => Some(c),
                    None => self.new_literal(h, node, seg),
                };
                match c {
                    Some(c) => {
                        self.hosts[h].node_mut(c).pin = Pin::Spec;
                        node = c;
                    }
                    None => {
                        self.stats.node_limit += 1;
                        overflow = true;
                        break;
                    }
                }
                continue;
            }
            let p = match self.hosts[h].node(node).param {
                Some(p) => {
                    let already = self.hosts[h]
                        .state(p)
                        .is_some_and(|s| s.spec_label.as_deref() == Some(seg));
                    if !already {
                        let st = self.hosts[h].state_mut(p).expect("param node has state");
                        st.add_rule(Rule::Spec);
                        st.absorbing = true;
                        st.spec_label = Some(seg.into());
                        self.stats.params_spec += 1;
                        // Names change: re-key every route below.
                        self.rerender_subtree(h, p);
                    }
                    Some(p)
                }
                None => self.new_param(h, node, Rule::Spec, true),
            };
            let Some(p) = p else {
                self.stats.node_limit += 1;
                overflow = true;
                break;
            };
            if let Some(st) = self.hosts[h].state_mut(p) {
                if st.spec_label.is_none() {
                    st.spec_label = Some(seg.into());
                }
            }
            // The spec says this position is a parameter: names beside it merge into it.
            let cands: Vec<u32> = self.hosts[h]
                .node(node)
                .literals
                .iter()
                .copied()
                .filter(|&c| {
                    let n = self.hosts[h].node(c);
                    n.pin == Pin::None
                        && matches!(
                            classify_segment(&n.label, &self.vocab, &self.cfg),
                            Seg::Word(_) | Seg::Name(_)
                        )
                })
                .collect();
            if !cands.is_empty() {
                self.merge_into_param(h, node, &cands, Rule::Spec);
            }
            node = self.hosts[h].node(node).param.unwrap_or(p);
        }
        let id = self.route_at(h, node, overflow);
        self.flush_retired();
        id
    }

    /// Recreates a template this templater produced before (saved by the caller across
    /// restarts), without pinning anything: literals can still merge, and each `{...}`
    /// segment becomes a parameter (rule `restored`) that takes identifiers like a typed
    /// one and takes names once learning confirms it (like a `type:generated` one). A final
    /// `{*rest}` segment restores a catch-all route. Parameter names are generated again
    /// by the naming scheme. Returns the route; never panics (when the node budget is spent
    /// the answer is the catch-all route of the deepest node reached).
    pub fn restore_template(&mut self, host: &str, template: &str) -> RouteId {
        self.op_start = self.routes.len() as u32;
        let h = self.host_slot(host);
        let mut node = ROOT;
        let mut overflow = false;
        for (i, seg) in segments(template).enumerate() {
            if i >= self.cfg.max_segments || seg.starts_with("{*") {
                overflow = true;
                break;
            }
            let next = if seg.contains('{') && seg.contains('}') {
                match self.hosts[h].node(node).param {
                    Some(p) => Some(p),
                    None => self.new_param(h, node, Rule::Restored, false),
                }
            } else {
                match self.hosts[h].find_literal(node, seg) {
                    Some(c) => Some(c),
                    None => self.new_literal(h, node, seg),
                }
            };
            match next {
                Some(c) => node = c,
                None => {
                    self.stats.node_limit += 1;
                    overflow = true;
                    break;
                }
            }
        }
        let id = self.route_at(h, node, overflow);
        self.flush_retired();
        id
    }

    /// One entry per parameter of the route's template, in path order. For a route that
    /// merged away, the evidence of its successor; empty for one that split.
    pub fn evidence(&self, id: RouteId) -> Vec<ParamEvidence> {
        let Some(live) = self.resolve(id) else {
            return Vec::new();
        };
        let route = &self.routes[live.0 as usize];
        let host = &self.hosts[route.host as usize];
        route
            .params
            .iter()
            .filter_map(|(n, name, pos)| {
                let st = host.state(*n)?;
                let kinds = ALL_KINDS
                    .iter()
                    .zip(st.kinds.iter())
                    .filter(|(_, c)| **c > 0)
                    .map(|(k, c)| (k.as_str().to_owned(), *c))
                    .collect();
                Some(ParamEvidence {
                    name: name.to_string(),
                    position: *pos,
                    rule: st.rule.describe(),
                    also: st.also.iter().map(|r| r.describe()).collect(),
                    samples: st.samples.iter().map(|s| s.to_string()).collect(),
                    kinds,
                    distinct: st.values.len() as u64,
                    distinct_saturated: st.saturated,
                    observations: u64::from(host.node(*n).hits),
                })
            })
            .collect()
    }

    /// Merges and splits since the last call, oldest first. Apply them in order.
    pub fn drain_changes(&mut self) -> Vec<RouteChange> {
        std::mem::take(&mut self.changes)
    }

    /// Counters and current sizes.
    pub fn stats(&self) -> TemplateStats {
        let mut s = self.stats.clone();
        s.hosts = self.hosts.len() as u64;
        s.nodes = self.hosts.iter().map(|h| h.live as u64).sum();
        s.routes = self.live_routes().count() as u64;
        s
    }

    // --- walking -----------------------------------------------------------------------------

    fn host_slot(&mut self, host: &str) -> usize {
        if let Some(&h) = self.host_index.get(host) {
            return h as usize;
        }
        let name = if self.hosts.len() >= self.cfg.max_hosts {
            self.stats.hosts_overflow += 1;
            if let Some(&h) = self.host_index.get("*") {
                return h as usize;
            }
            "*"
        } else {
            host
        };
        self.hosts.push(Host::new(name));
        let h = self.hosts.len() - 1;
        self.host_index.insert(name.into(), h as u32);
        h
    }

    fn lookup_in(&self, h: usize, path: &str) -> Option<RouteId> {
        let host = &self.hosts[h];
        let mut node = ROOT;
        for (i, seg) in segments(path).enumerate() {
            if i >= self.cfg.max_segments {
                return host.node(node).overflow_route;
            }
            if let Some(c) = host.find_literal(node, seg) {
                node = c;
                continue;
            }
            let n = host.node(node);
            let class = classify_segment(seg, &self.vocab, &self.cfg);
            let to_param = goes_to_param(class, seg, n.param.and_then(|p| host.state(p)))
                || n.literals.len() >= self.cfg.max_literal_children;
            match n.param {
                Some(p) if to_param => node = p,
                // Off the known tree: the node's catch-all route if a bound made one here.
                _ => return n.overflow_route,
            }
        }
        host.node(node).route
    }

    fn new_literal(&mut self, h: usize, parent: u32, seg: &str) -> Option<u32> {
        let host = &mut self.hosts[h];
        let mut node = Node::new(parent, seg.into(), None);
        node.hits = 1;
        node.born = host.node(parent).hits;
        let c = host.alloc(node, self.cfg.max_nodes_per_host, false)?;
        host.insert_literal(parent, c);
        Some(c)
    }

    fn new_param(&mut self, h: usize, parent: u32, rule: Rule, force: bool) -> Option<u32> {
        let host = &mut self.hosts[h];
        let st = ParamState::new(rule, &self.cfg, host.node(parent).hits);
        let node = Node::new(parent, "".into(), Some(Box::new(st)));
        let p = host.alloc(node, self.cfg.max_nodes_per_host, force)?;
        host.node_mut(parent).param = Some(p);
        match rule {
            Rule::Type(_) | Rule::Generated | Rule::Long => self.stats.params_typed += 1,
            Rule::Distinct(_) | Rule::Similar(_) | Rule::Names(_) => self.stats.params_learned += 1,
            Rule::Forced(_) => self.stats.params_forced += 1,
            Rule::Spec => self.stats.params_spec += 1,
            Rule::Restored => self.stats.params_restored += 1,
        }
        Some(p)
    }

    /// The route at `node` (its catch-all route when `overflow`), created if needed.
    fn route_at(&mut self, h: usize, node: u32, overflow: bool) -> RouteId {
        let n = self.hosts[h].node(node);
        let existing = if overflow { n.overflow_route } else { n.route };
        if let Some(r) = existing {
            return r;
        }
        let r = self.create_route(h, node, overflow);
        let n = self.hosts[h].node_mut(node);
        if overflow {
            n.overflow_route = Some(r);
        } else {
            n.route = Some(r);
        }
        r
    }

    fn create_route(&mut self, h: usize, node: u32, overflow: bool) -> RouteId {
        let (template, params) = render(&self.hosts[h], node, overflow);
        let id = RouteId(self.routes.len() as u32);
        self.routes.push(Route {
            host: h as u32,
            template: template.into(),
            params: params.into(),
            fate: Fate::Live,
        });
        self.stats.routes_created += 1;
        id
    }

    // --- learning ----------------------------------------------------------------------------

    /// The learning rule at one node; true when it merged names into a parameter.
    fn maybe_learn(&mut self, h: usize, n: u32) -> bool {
        let host = &self.hosts[h];
        let node = host.node(n);
        if let Some(p) = node.param {
            // A typed parameter never absorbs names (names with digits excepted: they are
            // names too); an absorbing one takes new names as they come, and the literals
            // beside it are left to the join check.
            let Some(st) = host.state(p) else {
                return false;
            };
            if st.absorbing {
                self.join_leftovers(h, p, false);
                return false;
            }
            if matches!(st.rule, Rule::Type(_) | Rule::Long) {
                return false;
            }
        }
        // Every literal that could join; only names (not nouns) count as evidence.
        let all: Vec<u32> = node
            .literals
            .iter()
            .copied()
            .filter(|&c| self.is_candidate(h, c))
            .collect();
        let names: Vec<u32> = all
            .iter()
            .copied()
            .filter(|&c| !matches!(self.class_of(h, c), Seg::Noun(_)))
            .collect();
        // Values of a `type:generated` parameter here (names with digits) are names too.
        let generated = node
            .param
            .and_then(|p| host.state(p))
            .filter(|s| s.rule == Rule::Generated)
            .map_or(0, |s| s.values.len());
        let min = self.cfg.min_distinct.min(self.cfg.min_distinct_similar);
        if names.is_empty() || names.len() + generated < min {
            return false;
        }
        // Recurring static siblings: hit far more often than the typical name.
        let mut hits: Vec<u32> = names.iter().map(|&c| host.node(c).hits).collect();
        hits.sort_unstable();
        let typical = u64::from(hits[hits.len() / 4]);
        let ratio = u64::from(self.cfg.static_hit_ratio);
        // Merged once the evidence is there: every name and noun that does not recur more
        // than the typical name (nouns are never evidence themselves).
        let usual: Vec<u32> = names
            .iter()
            .copied()
            .filter(|&c| {
                let x = host.node(c).hits;
                !(x >= self.cfg.static_min_hits && u64::from(x) >= ratio * typical)
            })
            .collect();
        let similar = self.cfg.min_distinct_similar;
        // Once the evidence is there, every usual name merges, not only the evidence.
        let (rule, group) = if usual.len() + generated >= self.cfg.min_distinct {
            (Rule::Distinct(self.cfg.min_distinct), usual)
        } else if n != ROOT && names.len() + generated >= similar {
            // Names sharing a continuation are values however often they are hit (a
            // popular owner), and so are nouns sharing it (a repository named `blog`).
            let keys: Vec<Vec<(u8, &str)>> =
                all.iter().map(|&c| self.continuation_keys(h, c)).collect();
            let mut counts: BTreeMap<(u8, &str), usize> = BTreeMap::new();
            for (c, ks) in all.iter().zip(&keys) {
                if names.contains(c) {
                    for k in ks {
                        *counts.entry(*k).or_default() += 1;
                    }
                }
            }
            let mut best: Option<((u8, &str), usize)> = None;
            for (k, count) in counts {
                if best.is_none_or(|(_, b)| count > b) {
                    best = Some((k, count));
                }
            }
            match best {
                Some((key, count)) if count >= similar => {
                    let group = all
                        .iter()
                        .zip(&keys)
                        .filter(|(c, ks)| ks.contains(&key) || usual.contains(c))
                        .map(|(&c, _)| c)
                        .collect();
                    (Rule::Similar(similar), group)
                }
                _ => {
                    let plain = names
                        .iter()
                        .filter(|&&c| {
                            matches!(self.class_of(h, c), Seg::Name(_)) && usual.contains(&c)
                        })
                        .count();
                    if plain + generated < similar {
                        return false;
                    }
                    (Rule::Names(similar), usual)
                }
            }
        } else {
            return false;
        };
        self.stats.merges += 1;
        self.merge_into_param(h, n, &group, rule);
        true
    }

    /// Every `join_every_hits` calls of a node whose parameter absorbs names, a join check
    /// ([`Self::join_leftovers`], [`Self::extract_recurring`]) is queued for after the walk.
    fn check_join(&mut self, h: usize, n: u32) {
        let host = &self.hosts[h];
        let node = host.node(n);
        let Some(p) = node.param else { return };
        let hits = node.hits;
        let Some(st) = host.state(p) else { return };
        if !st.absorbing || hits < st.join_at {
            return;
        }
        let every = self.cfg.join_every_hits;
        let st = self.hosts[h].state_mut(p).expect("param");
        st.join_at = hits.saturating_add(every);
        self.pending.push((Post::Join, p));
    }

    /// Leftover literals beside the absorbing parameter `p` join it when they share its
    /// continuation, or (`full`, at a join check) when they are names that do not recur.
    fn join_leftovers(&mut self, h: usize, p: u32, full: bool) {
        let host = &self.hosts[h];
        let Some(node) = host.nodes.get(p as usize).filter(|x| x.alive) else {
            return;
        };
        let Some(st) = node.param_state.as_deref().filter(|s| s.absorbing) else {
            return;
        };
        let parent = node.parent;
        let parent_hits = host.node(parent).hits;
        let rule = st.rule;
        // (No allocation unless something joins: this runs every `join_every_hits` calls.)
        let joins = |c: u32| {
            if !self.is_candidate(h, c) {
                return false;
            }
            let x = host.node(c);
            let usual = full && !self.recurring(x.hits, parent_hits.saturating_sub(x.born));
            usual || self.shares_continuation(h, c, p)
        };
        let lits = &host.node(parent).literals;
        if !lits.iter().any(|&c| joins(c)) {
            return;
        }
        let cands: Vec<u32> = lits.iter().copied().filter(|&c| joins(c)).collect();
        self.merge_into_param(h, parent, &cands, rule);
    }

    /// Whether `a` and `b` have a child, or a grandchild, of the same name (or both a
    /// parameter there). Allocation-free; scans at most 64 children per level.
    fn shares_continuation(&self, h: usize, a: u32, b: u32) -> bool {
        const SCAN: usize = 64;
        let host = &self.hosts[h];
        let kids = |n: u32| {
            let n = host.node(n);
            n.literals.iter().take(SCAN).copied().chain(n.param)
        };
        let same = |x: u32, y: u32| {
            let (x, y) = (host.node(x), host.node(y));
            x.is_param() == y.is_param() && (x.is_param() || x.label == y.label)
        };
        for ca in kids(a) {
            for cb in kids(b) {
                if same(ca, cb) {
                    return true;
                }
            }
        }
        for ca in kids(a) {
            for ga in kids(ca) {
                for cb in kids(b) {
                    if kids(cb).any(|gb| same(ga, gb)) {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// A literal hit `hits` times in the `age` calls its parent has seen since it appeared
    /// recurs unless it is old enough (`static_min_age`) and took less than
    /// 1/`static_rate_div` of them.
    fn recurring(&self, hits: u32, age: u32) -> bool {
        age < self.cfg.static_min_age
            || u64::from(hits) * u64::from(self.cfg.static_rate_div) > u64::from(age)
    }

    /// Plain-word (or noun) values of an absorbing parameter seen at least `static_min_hits`
    /// times, always as the last segment, where that was unlikely for a value of it (chance
    /// below `extract_chance_percent`), are static siblings that arrived after the parameter
    /// formed: each becomes a pinned literal again (`RouteChange::Extracted`). Where values
    /// have no continuation (`/files/{name}`) a popular value and a static cannot be told
    /// apart, and nothing is extracted.
    fn extract_recurring(&mut self, h: usize, p: u32) {
        let host = &self.hosts[h];
        let Some(node) = host.nodes.get(p as usize).filter(|x| x.alive) else {
            return;
        };
        let Some(st) = node.param_state.as_deref() else {
            return;
        };
        if st.spec_label.is_some() || !st.absorbing {
            return;
        }
        let parent = node.parent;
        // A value seen `k` times that never went further, where a share `q` of the other
        // observations ended here, had a chance of `q^k`; below `extract_chance_percent` it
        // is not one of them. (No allocation unless a value qualifies.)
        let (all_hits, all_ended) = (node.hits, node.ended);
        let limit = f64::from(self.cfg.extract_chance_percent) / 100.0;
        let recurs = |v: &ValueStat| {
            if v.word.is_none() || !v.leaf_only || v.hits < self.cfg.static_min_hits {
                return false;
            }
            let others = all_hits.saturating_sub(v.hits);
            if others < self.cfg.static_min_hits {
                return false;
            }
            let q = f64::from(all_ended.saturating_sub(v.hits)) / f64::from(others);
            q.min(1.0).powi(v.hits.min(1 << 20) as i32) < limit
        };
        if !st.values.iter().any(recurs) {
            return;
        }
        let found: Vec<(Box<str>, u32, u32)> = st
            .values
            .iter()
            .filter(|v| recurs(v))
            .filter_map(|v| Some((v.word.clone()?, v.hits, v.born)))
            .collect();
        for (text, hits, born) in found {
            if self.hosts[h].find_literal(parent, &text).is_some() {
                continue;
            }
            let mut lit = Node::new(parent, text.clone(), None);
            lit.hits = hits;
            lit.born = born;
            lit.pin = Pin::Split;
            let Some(l) = self.hosts[h].alloc(lit, usize::MAX, true) else {
                continue;
            };
            self.hosts[h].insert_literal(parent, l);
            let host = &mut self.hosts[h];
            let pn = host.node_mut(p);
            pn.hits = pn.hits.saturating_sub(hits);
            pn.ended = pn.ended.saturating_sub(hits);
            let route = pn.route;
            if let Some(st) = pn.param_state.as_deref_mut() {
                if let Ok(i) = st.find(fnv1a(text.as_bytes())) {
                    st.values.remove(i);
                }
                let k = &mut st.kinds[kind_index(classify(&text))];
                *k = k.saturating_sub(u64::from(hits));
            }
            self.stats.values_extracted += 1;
            if let Some(from) = route {
                let into = self.route_at(h, l, false);
                self.push_change(RouteChange::Extracted { from, into });
            }
        }
    }

    fn class_of(&self, h: usize, c: u32) -> Seg {
        classify_segment(&self.hosts[h].node(c).label, &self.vocab, &self.cfg)
    }

    /// A literal child that may join a parameter: a name or a noun, not pinned, not a
    /// collection (a literal whose own child is a typed or spec parameter).
    fn is_candidate(&self, h: usize, c: u32) -> bool {
        let host = &self.hosts[h];
        let node = host.node(c);
        if node.pin != Pin::None || node.is_param() {
            return false;
        }
        if !matches!(
            self.class_of(h, c),
            Seg::Word(_) | Seg::Name(_) | Seg::Noun(_)
        ) {
            return false;
        }
        !node.param.is_some_and(|p| {
            host.state(p).is_some_and(|s| {
                s.rule.typed() || s.rule == Rule::Restored || s.spec_label.is_some()
            })
        })
    }

    /// The names of a node's children and grandchildren (`{}` for a parameter), tagged
    /// with their depth: what "the same continuation" compares.
    fn continuation_keys(&self, h: usize, c: u32) -> Vec<(u8, &str)> {
        const SCAN: usize = 64;
        let host = &self.hosts[h];
        let mut keys: Vec<(u8, &str)> = Vec::new();
        let node = host.node(c);
        for k in node.literals.iter().take(SCAN).copied().chain(node.param) {
            let kn = host.node(k);
            keys.push((1, if kn.is_param() { "{}" } else { &kn.label }));
            for &g in kn.literals.iter().take(SCAN).chain(kn.param.iter()) {
                let gn = host.node(g);
                keys.push((2, if gn.is_param() { "{}" } else { &gn.label }));
            }
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// A node reached `max_literal_children`: merge everything but pinned literals and
    /// versions into its parameter, which then absorbs names.
    fn force_merge(&mut self, h: usize, n: u32) {
        let host = &self.hosts[h];
        let cands: Vec<u32> = host
            .node(n)
            .literals
            .iter()
            .copied()
            .filter(|&c| {
                let x = host.node(c);
                x.pin == Pin::None && !is_version(&x.label) && !x.label.is_empty()
            })
            .collect();
        let rule = Rule::Forced(self.cfg.max_literal_children);
        if cands.is_empty() {
            if let Some(p) = host.node(n).param {
                if let Some(st) = self.hosts[h].state_mut(p) {
                    st.add_rule(rule);
                    st.absorbing = true;
                }
            }
            return;
        }
        self.merge_into_param(h, n, &cands, rule);
        if let Some(p) = self.hosts[h].node(n).param {
            self.maybe_learn(h, p);
        }
        self.flush_retired();
    }

    /// Moves the literal children `cands` of `n` (and their subtrees) into `n`'s parameter,
    /// creating it with `rule` if needed, then learns in the merged subtree.
    fn merge_into_param(&mut self, h: usize, n: u32, cands: &[u32], rule: Rule) {
        let p = match self.hosts[h].node(n).param {
            Some(p) => {
                if let Some(st) = self.hosts[h].state_mut(p) {
                    st.add_rule(rule);
                    st.absorbing = true;
                }
                p
            }
            None => self
                .new_param(h, n, rule, true)
                .expect("forced allocation succeeds"),
        };
        for &c in cands {
            self.hosts[h].remove_literal(n, c);
            self.stats.literals_merged += 1;
            self.absorb(h, c, p);
        }
        // The new parameter has a route if any candidate had one (absorb made it); the
        // merged subtree may now hold many names at one place.
        // (Recursion depth is bounded by the tree depth, itself bounded by `max_segments`.)
        let below = self.hosts[h].subtree(p);
        for x in below {
            if self.hosts[h].nodes.get(x as usize).is_some_and(|n| n.alive) {
                self.maybe_learn(h, x);
            }
        }
    }

    /// Moves `src` (a detached node) into `dst`: hits, value statistics, routes and
    /// children; `src` is released.
    fn absorb(&mut self, h: usize, src: u32, dst: u32) {
        let cfg = &self.cfg;
        let host = &mut self.hosts[h];
        let s = std::mem::replace(host.node_mut(src), Node::new(NO_PARENT, "".into(), None));
        // Release `src` (its fields were taken).
        host.node_mut(src).alive = true;
        host.release(src);
        {
            let d = host.node_mut(dst);
            d.hits = d.hits.saturating_add(s.hits);
            d.ended = d.ended.saturating_add(s.ended);
        }
        if let Some(dst_state) = host.node_mut(dst).param_state.as_deref_mut() {
            match s.param_state.as_deref() {
                None => {
                    let class = classify_segment(&s.label, &self.vocab, cfg);
                    let (kind, _) = seg_kind(class, &s.label);
                    let v = NewValue {
                        raw: &s.label,
                        kind,
                        hits: s.hits,
                        born: s.born,
                        leaf_only: s.literals.is_empty() && s.param.is_none(),
                        word: matches!(class, Seg::Word(_) | Seg::Noun(_)),
                    };
                    record_value(dst_state, v, cfg, &mut self.stats);
                }
                Some(src_state) => merge_state(dst_state, src_state, cfg, &mut self.stats),
            }
        }
        for (from, overflow) in [(s.route, false), (s.overflow_route, true)] {
            if let Some(from) = from {
                let into = self.route_at(h, dst, overflow);
                self.retire(from, into);
            }
        }
        for c in s.literals {
            let label = self.hosts[h].node(c).label.clone();
            let absorbing_param = self.hosts[h]
                .node(dst)
                .param
                .filter(|&p| self.hosts[h].state(p).is_some_and(|s| s.absorbing));
            match self.hosts[h].find_literal(dst, &label) {
                Some(d) => self.absorb(h, c, d),
                // A name arriving beside a parameter that absorbs names goes into it, as it
                // would have if observed there.
                None if absorbing_param.is_some() && self.is_candidate(h, c) => {
                    self.stats.literals_merged += 1;
                    self.absorb(h, c, absorbing_param.unwrap_or_default());
                }
                None => {
                    self.hosts[h].insert_literal(dst, c);
                    self.rerender_subtree(h, c);
                }
            }
        }
        if let Some(ps) = s.param {
            match self.hosts[h].node(dst).param {
                Some(pd) => self.absorb(h, ps, pd),
                None => {
                    self.hosts[h].node_mut(dst).param = Some(ps);
                    self.hosts[h].node_mut(ps).parent = dst;
                    self.rerender_subtree(h, ps);
                }
            }
        }
    }

    /// Every route at or below `n` gets a new id with its new template.
    fn rerender_subtree(&mut self, h: usize, n: u32) {
        for x in self.hosts[h].subtree(n) {
            for overflow in [false, true] {
                let node = self.hosts[h].node(x);
                let old = if overflow {
                    node.overflow_route
                } else {
                    node.route
                };
                if let Some(old) = old {
                    let new = self.create_route(h, x, overflow);
                    let node = self.hosts[h].node_mut(x);
                    if overflow {
                        node.overflow_route = Some(new);
                    } else {
                        node.route = Some(new);
                    }
                    self.retire(old, new);
                }
            }
        }
    }

    fn retire(&mut self, from: RouteId, into: RouteId) {
        if from == into {
            return;
        }
        self.routes[from.0 as usize].fate = Fate::Merged(into);
        self.retired.push((from, into));
    }

    /// Turns the retirements of the last operation into `Merged` changes (chains resolved,
    /// routes born and retired within the operation left out).
    fn flush_retired(&mut self) {
        if self.retired.is_empty() {
            return;
        }
        let retired = std::mem::take(&mut self.retired);
        let mut groups: BTreeMap<RouteId, Vec<RouteId>> = BTreeMap::new();
        for (from, _) in &retired {
            // A route created and retired inside this operation was never handed out.
            if from.0 >= self.op_start {
                continue;
            }
            if let Some(live) = self.resolve(*from) {
                groups.entry(live).or_default().push(*from);
            }
        }
        for (into, mut from) in groups {
            from.sort_unstable();
            from.dedup();
            self.push_change(RouteChange::Merged { into, from });
        }
    }

    fn push_change(&mut self, c: RouteChange) {
        if self.changes.len() >= self.cfg.max_pending_changes {
            self.changes.remove(0);
            self.stats.changes_dropped += 1;
        }
        self.changes.push(c);
    }

    // --- split-back --------------------------------------------------------------------------

    fn try_split(&mut self, h: usize, p: u32) {
        let cfg = &self.cfg;
        let host = &self.hosts[h];
        let Some(node) = host.nodes.get(p as usize).filter(|n| n.alive) else {
            return;
        };
        let Some(st) = node.param_state.as_deref() else {
            return;
        };
        if !st.rule.learned()
            || st.spec_label.is_some()
            || st.also.iter().any(|r| !r.learned())
            || st.saturated
            || st.values.len() > cfg.split_max_values
            || st.samples.len() != st.values.len()
        {
            return;
        }
        let mut values: Vec<Box<str>> = Vec::new();
        for s in &st.samples {
            if matches!(
                classify_segment(s, &self.vocab, cfg),
                Seg::Ident(..) | Seg::Static
            ) {
                return;
            }
            let hash = fnv1a(s.as_bytes());
            match st.find(hash) {
                Ok(i) if st.values[i].hits >= cfg.split_min_value_hits => values.push(s.clone()),
                _ => return,
            }
        }
        values.sort();
        let parent = node.parent;
        let sub = host.subtree(p);
        if host.live + sub.len() * values.len() > cfg.max_nodes_per_host {
            return;
        }
        // Copy the parameter's subtree under one pinned literal per value.
        let mut copies: Vec<Vec<(u32, u32)>> = Vec::new();
        for v in &values {
            let hits = {
                let st = self.hosts[h].state(p).expect("param");
                let hash = fnv1a(v.as_bytes());
                st.find(hash).map(|i| st.values[i].hits).unwrap_or(0)
            };
            let lit = match self.hosts[h].find_literal(parent, v) {
                Some(l) => l,
                None => {
                    let mut node = Node::new(parent, v.clone(), None);
                    node.hits = hits;
                    let l = self.hosts[h]
                        .alloc(node, usize::MAX, true)
                        .expect("forced allocation");
                    self.hosts[h].insert_literal(parent, l);
                    l
                }
            };
            self.hosts[h].node_mut(lit).pin = Pin::Split;
            let mut map = vec![(p, lit)];
            self.copy_children(h, p, lit, &mut map);
            copies.push(map);
        }
        // Routes: every route under the parameter splits into its copies.
        for &x in &sub {
            for overflow in [false, true] {
                let node = self.hosts[h].node(x);
                let old = if overflow {
                    node.overflow_route
                } else {
                    node.route
                };
                let Some(old) = old else { continue };
                let mut into = Vec::new();
                for map in &copies {
                    if let Some(&(_, y)) = map.iter().find(|(a, _)| *a == x) {
                        into.push(self.route_at(h, y, overflow));
                    }
                }
                into.sort_unstable();
                self.routes[old.0 as usize].fate = Fate::Split;
                self.push_change(RouteChange::Split { from: old, into });
            }
        }
        for x in sub.into_iter().rev() {
            self.hosts[h].release(x);
        }
        self.hosts[h].node_mut(parent).param = None;
        self.stats.splits += 1;
    }

    /// Deep copy of the children of `from` under `to` (no routes; they are made after).
    fn copy_children(&mut self, h: usize, from: u32, to: u32, map: &mut Vec<(u32, u32)>) {
        let (lits, param) = {
            let n = self.hosts[h].node(from);
            (n.literals.clone(), n.param)
        };
        for c in lits {
            let src = self.hosts[h].node(c);
            let mut node = Node::new(to, src.label.clone(), src.param_state.clone());
            node.pin = src.pin;
            node.hits = src.hits;
            let y = self.hosts[h]
                .alloc(node, usize::MAX, true)
                .expect("forced allocation");
            self.hosts[h].insert_literal(to, y);
            map.push((c, y));
            self.copy_children(h, c, y, map);
        }
        if let Some(c) = param {
            let src = self.hosts[h].node(c);
            let mut node = Node::new(to, src.label.clone(), src.param_state.clone());
            node.hits = src.hits;
            let y = self.hosts[h]
                .alloc(node, usize::MAX, true)
                .expect("forced allocation");
            self.hosts[h].node_mut(to).param = Some(y);
            map.push((c, y));
            self.copy_children(h, c, y, map);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Whether a segment of class `class` that has no literal child of its own goes to the
/// node's parameter `st` (when there is one).
fn goes_to_param(class: Seg, seg: &str, st: Option<&ParamState>) -> bool {
    if matches!(class, Seg::Ident(..)) {
        return true;
    }
    let Some(st) = st else { return false };
    match class {
        Seg::Ident(..) => true,
        Seg::Name(_) | Seg::Word(_) => st.absorbing,
        // A route word only when it was merged in (a repository named `blog`, a forced merge).
        Seg::Static | Seg::Noun(_) => st.holds(seg),
    }
}

/// The segments of a path: query and fragment cut, leading `/` and trailing `/`s removed;
/// `/` has none.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    let p = path[..end].trim_end_matches('/');
    let p = p.strip_prefix('/').unwrap_or(p);
    (!p.is_empty()).then(|| p.split('/')).into_iter().flatten()
}

/// FNV-1a, 64 bits: deterministic across runs and processes.
fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in b {
        h ^= u64::from(c);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Percent-decodes `seg` into `buf` when it has escapes and fits; the raw text otherwise.
fn decoded<'a>(seg: &'a str, buf: &'a mut [u8; 256]) -> &'a str {
    if !seg.contains('%') || seg.len() > buf.len() {
        return seg;
    }
    let b = seg.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(x), Some(y)) = (hex(b[i + 1]), hex(b[i + 2])) {
                buf[n] = (x * 16 + y) as u8;
                n += 1;
                i += 3;
                continue;
            }
        }
        buf[n] = b[i];
        n += 1;
        i += 1;
    }
    std::str::from_utf8(&buf[..n]).unwrap_or(seg)
}

/// The value kind of a segment (for evidence), decoded.
fn seg_kind(class: Seg, seg: &str) -> (ValueKind, bool) {
    match class {
        Seg::Ident(k, _) | Seg::Word(k) | Seg::Name(k) | Seg::Noun(k) => (k, true),
        Seg::Static => {
            let mut buf = [0u8; 256];
            (classify(decoded(seg, &mut buf)), false)
        }
    }
}

fn classify_segment(seg: &str, vocab: &Vocab, cfg: &TemplateConfig) -> Seg {
    if seg.is_empty() {
        return Seg::Static;
    }
    if seg.len() > cfg.max_literal_bytes {
        return Seg::Ident(ValueKind::Text, Rule::Long);
    }
    if is_version(seg) || is_rpc_method(seg) {
        return Seg::Static;
    }
    match vocab.word(seg) {
        Some(WordKind::Strong) => return Seg::Static,
        Some(WordKind::Noun) => return Seg::Noun(ValueKind::Text),
        None if is_compound_route(seg) => return Seg::Noun(ValueKind::Text),
        None => {}
    }
    let mut buf = [0u8; 256];
    let text = decoded(seg, &mut buf);
    let kind = classify(text);
    if kind.is_identifier() {
        return Seg::Ident(kind, Rule::Type(kind));
    }
    if let Some((stem, ext)) = text.rsplit_once('.') {
        let k = classify(stem);
        if k.is_identifier()
            && (1..=5).contains(&ext.len())
            && ext.bytes().all(|c| c.is_ascii_alphanumeric())
        {
            return Seg::Ident(k, Rule::Type(k));
        }
    }
    if is_generated(text) {
        return Seg::Ident(kind, Rule::Generated);
    }
    if is_word(text) {
        Seg::Word(kind)
    } else {
        Seg::Name(kind)
    }
}

/// A compound route name led by a view or ordering word: `new-arrivals`, `top-rated`,
/// `best_sellers`, `most-popular`, `my-orders`, `on-sale`.
fn is_compound_route(seg: &str) -> bool {
    const LEADS: &[&str] = &[
        "all", "best", "by", "latest", "most", "my", "new", "on", "recent", "recently", "top",
    ];
    let Some((first, rest)) = seg.split_once(['-', '_']) else {
        return false;
    };
    !rest.is_empty() && is_word(seg) && LEADS.contains(&first)
}

/// `[a-z]+([-_][a-z]+)*`
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.split(['-', '_'])
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase()))
}

/// A name with digits that looks generated: three or more digits, or a separator (`-`,
/// `_`) followed by a digit (`red-shoe-42`, `item_9f2`, `INV-00042`).
fn is_generated(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    if digits >= 3 {
        return true;
    }
    b.windows(2)
        .any(|w| matches!(w[0], b'-' | b'_') && w[1].is_ascii_digit())
}

/// `v1`, `V2`, `v2beta`, `v1alpha1`, `v1.2`, and bare `1.0` / `2.1.3`.
fn is_version(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() >= 2 && b.len() <= 16 && matches!(b[0], b'v' | b'V') && b[1].is_ascii_digit() {
        return b[1..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_'));
    }
    let mut parts = 0;
    for p in s.split('.') {
        parts += 1;
        let max = if parts == 1 { 2 } else { 3 };
        if p.is_empty() || p.len() > max || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    (2..=3).contains(&parts)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum WordKind {
    /// Never a parameter.
    Strong,
    /// A resource noun: may join a parameter on shared continuation.
    Noun,
}

/// The route-word vocabulary, sorted for binary search.
#[derive(Debug)]
struct Vocab {
    words: Vec<(Box<str>, WordKind)>,
}

impl Vocab {
    fn new(extra: &[String]) -> Self {
        let mut words: Vec<(Box<str>, WordKind)> = STRONG_WORDS
            .iter()
            .map(|w| (Box::from(*w), WordKind::Strong))
            .chain(NOUN_WORDS.iter().map(|w| (Box::from(*w), WordKind::Noun)))
            .chain(
                extra
                    .iter()
                    .map(|w| (w.to_ascii_lowercase().into_boxed_str(), WordKind::Strong)),
            )
            .collect();
        // A word in both lists is strong (sorted by word, then Strong before Noun).
        words.sort();
        words.dedup_by(|a, b| a.0 == b.0);
        Vocab { words }
    }

    /// The kind of a route word: lower case or capitalised (`users`, `Users`), not
    /// `USERS` or `uSeRs` (those are names, as `LICENSE` or `README`).
    fn word(&self, seg: &str) -> Option<WordKind> {
        let b = seg.as_bytes();
        if b.len() > 32 || b.is_empty() || b[1..].iter().any(u8::is_ascii_uppercase) {
            return None;
        }
        self.words
            .binary_search_by(|(w, _)| {
                w.as_bytes()
                    .iter()
                    .copied()
                    .cmp(b.iter().map(u8::to_ascii_lowercase))
            })
            .ok()
            .map(|i| self.words[i].1)
    }
}

/// RPC-style method names: `getUser`, `listOrders` (a verb then camel case), `users.list`,
/// `chat.postMessage` (dotted words whose last part is a verb or a camel-case verb phrase).
fn is_rpc_method(s: &str) -> bool {
    fn verb_phrase(p: &str) -> bool {
        let lower = p.bytes().take_while(u8::is_ascii_lowercase).count();
        if lower == 0 || !p.bytes().all(|c| c.is_ascii_alphabetic()) {
            return false;
        }
        let verb = &p[..lower];
        RPC_VERBS.binary_search(&verb).is_ok()
    }
    if let Some((_, last)) = s.rsplit_once('.') {
        return s.as_bytes()[0].is_ascii_lowercase()
            && s.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphabetic()))
            && verb_phrase(last);
    }
    let lower = s.bytes().take_while(u8::is_ascii_lowercase).count();
    lower > 0 && lower < s.len() && s.as_bytes()[lower].is_ascii_uppercase() && verb_phrase(s)
}

/// A value to record on a parameter.
struct NewValue<'a> {
    raw: &'a str,
    kind: ValueKind,
    hits: u32,
    born: u32,
    leaf_only: bool,
    /// A plain word: its text is kept.
    word: bool,
}

/// Records `v`; answers the value's hits so far (0 when it is not tracked).
fn record_value(
    st: &mut ParamState,
    v: NewValue<'_>,
    cfg: &TemplateConfig,
    stats: &mut TemplateStats,
) -> u32 {
    let k = &mut st.kinds[kind_index(v.kind)];
    *k = k.saturating_add(u64::from(v.hits));
    let hash = fnv1a(v.raw.as_bytes());
    match st.find(hash) {
        Ok(i) => {
            let e = &mut st.values[i];
            e.hits = e.hits.saturating_add(v.hits);
            e.leaf_only &= v.leaf_only;
            e.hits
        }
        Err(i) => {
            if st.values.len() < cfg.max_tracked_values {
                let stat = ValueStat {
                    hash,
                    hits: v.hits,
                    born: v.born,
                    leaf_only: v.leaf_only,
                    word: v.word.then(|| v.raw.into()),
                };
                st.values.insert(i, stat);
                add_sample(st, v.raw, v.kind, cfg, stats);
                v.hits
            } else {
                if !st.saturated {
                    st.saturated = true;
                    stats.distinct_saturated += 1;
                }
                0
            }
        }
    }
}

fn add_sample(
    st: &mut ParamState,
    raw: &str,
    kind: ValueKind,
    cfg: &TemplateConfig,
    stats: &mut TemplateStats,
) {
    if st.samples.len() >= cfg.max_samples {
        if !st.samples_full {
            st.samples_full = true;
            stats.samples_full += 1;
        }
        return;
    }
    let sample: Box<str> = match kind {
        ValueKind::Email => "<email>".into(),
        ValueKind::Token => "<token>".into(),
        _ => raw.into(),
    };
    if !st.samples.contains(&sample) {
        st.samples.push(sample);
    }
}

fn merge_state(
    dst: &mut ParamState,
    src: &ParamState,
    cfg: &TemplateConfig,
    stats: &mut TemplateStats,
) {
    for (d, s) in dst.kinds.iter_mut().zip(src.kinds.iter()) {
        *d = d.saturating_add(*s);
    }
    for v in &src.values {
        match dst.find(v.hash) {
            Ok(i) => {
                let e = &mut dst.values[i];
                e.hits = e.hits.saturating_add(v.hits);
                e.born = e.born.min(v.born);
                e.leaf_only &= v.leaf_only;
            }
            Err(i) => {
                if dst.values.len() < cfg.max_tracked_values {
                    dst.values.insert(i, v.clone());
                } else if !dst.saturated {
                    dst.saturated = true;
                    stats.distinct_saturated += 1;
                }
            }
        }
    }
    dst.saturated |= src.saturated;
    for s in &src.samples {
        if dst.samples.len() >= cfg.max_samples {
            if !dst.samples_full {
                dst.samples_full = true;
                stats.samples_full += 1;
            }
            break;
        }
        if !dst.samples.contains(s) {
            dst.samples.push(s.clone());
        }
    }
    for r in std::iter::once(src.rule).chain(src.also.iter().copied()) {
        dst.add_rule(r);
    }
    if dst.spec_label.is_none() {
        dst.spec_label = src.spec_label.clone();
    }
    dst.absorbing |= src.absorbing;
}

/// The template of `node` and its parameters (node, name, segment index).
fn render(host: &Host, node: u32, overflow: bool) -> (String, Vec<(u32, Box<str>, usize)>) {
    let chain = host.chain(node);
    let param_positions: Vec<usize> = chain
        .iter()
        .enumerate()
        .filter(|(_, &n)| host.node(n).is_param())
        .map(|(i, _)| i)
        .collect();
    let mut used: Vec<String> = chain
        .iter()
        .filter_map(|&n| host.state(n)?.spec_label.as_deref())
        .map(spec_name)
        .collect();
    let last = param_positions.last().copied();
    // (text in the template, plain name) per parameter position
    let mut names: Vec<Option<(String, String)>> = vec![None; chain.len()];
    for &i in &param_positions {
        let st = host.state(chain[i]).expect("param node has state");
        if let Some(label) = &st.spec_label {
            names[i] = Some((label.to_string(), spec_name(label)));
            continue;
        }
        let base = if Some(i) == last {
            "id".to_owned()
        } else {
            let lit = chain[..i]
                .iter()
                .rev()
                .map(|&n| host.node(n))
                .find(|n| !n.is_param() && !n.label.is_empty() && !is_version(&n.label));
            format!(
                "{}_id",
                lit.map(|n| singular(&n.label))
                    .unwrap_or_else(|| "param".to_owned())
            )
        };
        let mut name = base.clone();
        let mut k = 2;
        while used.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        used.push(name.clone());
        names[i] = Some((format!("{{{name}}}"), name));
    }
    let mut out = String::new();
    let mut params = Vec::new();
    for (i, &n) in chain.iter().enumerate() {
        out.push('/');
        match &names[i] {
            Some((text, plain)) => {
                out.push_str(text);
                params.push((n, Box::from(plain.as_str()), i));
            }
            None => out.push_str(&host.node(n).label),
        }
    }
    if overflow {
        out.push_str("/{*rest}");
    }
    if out.is_empty() {
        out.push('/');
    }
    (out, params)
}

/// `{petId}.json` → `petId`
fn spec_name(label: &str) -> String {
    let s = label.split('{').nth(1).unwrap_or(label);
    s.split('}').next().unwrap_or(s).to_owned()
}

/// `users` → `user`, `categories` → `category`, `boxes` → `box`; lower-cased, reduced to
/// `[a-z0-9_]`.
fn singular(label: &str) -> String {
    let mut s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    let mut s = s.trim_matches('_').to_owned();
    if let Some(stem) = s.strip_suffix("ies") {
        if stem.len() >= 2 {
            s = format!("{stem}y");
        }
    } else if ["sses", "xes", "ches", "shes", "zes"]
        .iter()
        .any(|suf| s.ends_with(suf))
    {
        s.truncate(s.len() - 2);
    } else if s.ends_with('s') && !s.ends_with("ss") && !s.ends_with("us") && s.len() > 3 {
        s.pop();
    }
    if s.is_empty() || s.as_bytes()[0].is_ascii_digit() {
        "param".to_owned()
    } else {
        s
    }
}

/// Verbs that start RPC method names (sorted: binary search).
const RPC_VERBS: &[&str] = &[
    "accept",
    "ack",
    "add",
    "apply",
    "approve",
    "archive",
    "assign",
    "attach",
    "batch",
    "bulk",
    "calculate",
    "can",
    "cancel",
    "check",
    "close",
    "compute",
    "count",
    "create",
    "decline",
    "delete",
    "deregister",
    "describe",
    "detach",
    "disable",
    "do",
    "download",
    "edit",
    "enable",
    "execute",
    "export",
    "fetch",
    "find",
    "generate",
    "get",
    "has",
    "history",
    "import",
    "info",
    "invite",
    "is",
    "join",
    "kick",
    "leave",
    "list",
    "load",
    "lookup",
    "mark",
    "modify",
    "open",
    "patch",
    "post",
    "publish",
    "put",
    "query",
    "read",
    "refresh",
    "register",
    "reject",
    "remove",
    "rename",
    "replies",
    "reset",
    "resolve",
    "retrieve",
    "revoke",
    "run",
    "save",
    "search",
    "send",
    "set",
    "start",
    "stop",
    "submit",
    "subscribe",
    "sync",
    "test",
    "unarchive",
    "unassign",
    "unsubscribe",
    "update",
    "upload",
    "validate",
    "verify",
    "write",
];

/// Core route words: self references and the views and actions that sit beside
/// identifiers (`/users/me`, `/users/search`, `/products/featured`, `/orders/count`). They
/// never become parameters (unless a bound forces it). Sorted at construction.
const STRONG_WORDS: &[&str] = &[
    "2fa",
    "add",
    "aggregate",
    "all",
    "anonymous",
    "authenticate",
    "authorize",
    "autocomplete",
    "batch",
    "best",
    "bulk",
    "callback",
    "compare",
    "confirm",
    "count",
    "counts",
    "create",
    "current",
    "delete",
    "edit",
    "export",
    "featured",
    "filter",
    "filters",
    "find",
    "import",
    "latest",
    "list",
    "login",
    "logout",
    "lookup",
    "me",
    "mfa",
    "mine",
    "my",
    "nearby",
    "new",
    "newest",
    "oauth",
    "oauth2",
    "oldest",
    "otp",
    "overview",
    "own",
    "popular",
    "preview",
    "query",
    "random",
    "recent",
    "recommendations",
    "recommended",
    "refresh",
    "register",
    "related",
    "remove",
    "reset",
    "revoke",
    "search",
    "self",
    "signin",
    "signout",
    "signup",
    "similar",
    "sso",
    "statistics",
    "stats",
    "suggest",
    "suggestions",
    "summary",
    "sync",
    "today",
    "token",
    "top",
    "total",
    "totals",
    "trending",
    "typeahead",
    "upcoming",
    "update",
    "validate",
    "verify",
    "whoami",
];

/// Resource and route nouns (`users`, `settings`, `history`, `blog`): literal, and never
/// evidence for a parameter; one joins a parameter that formed from names only when it does
/// not recur (or shares the parameter's continuation: a repository named `blog`), and is
/// extracted again if it turns out to recur. Common personal, product or repository names
/// are deliberately absent. Sorted at construction.
const NOUN_WORDS: &[&str] = &[
    ".well-known",
    "about",
    "accept",
    "account",
    "accounts",
    "accounts-payable",
    "achievements",
    "ack",
    "acknowledge",
    "actions",
    "activate",
    "active",
    "activities",
    "activity",
    "add-ons",
    "addons",
    "address",
    "addresses",
    "admin",
    "advisories",
    "affiliates",
    "aggregations",
    "albums",
    "alerts",
    "analytics",
    "answers",
    "api",
    "api-keys",
    "api_keys",
    "apikeys",
    "apis",
    "applications",
    "apply",
    "appointments",
    "approve",
    "apps",
    "archive",
    "archived",
    "article",
    "articles",
    "artifacts",
    "artists",
    "assets",
    "assign",
    "attachment",
    "attachments",
    "attributes",
    "audiences",
    "audit",
    "audits",
    "auth",
    "authentication",
    "authors",
    "availability",
    "available",
    "avatar",
    "avatars",
    "backups",
    "badges",
    "balance",
    "balances",
    "banks",
    "batches",
    "bestsellers",
    "billing",
    "blobs",
    "block",
    "blog",
    "blogs",
    "booking",
    "bookings",
    "bookmarks",
    "books",
    "bots",
    "branch",
    "branches",
    "brands",
    "buckets",
    "budgets",
    "build",
    "builds",
    "cache",
    "calculate",
    "calendar",
    "calendars",
    "calls",
    "campaigns",
    "cancel",
    "capture",
    "card",
    "cards",
    "cart",
    "carts",
    "catalog",
    "catalogs",
    "categories",
    "category",
    "cdn",
    "certificates",
    "certs",
    "changelog",
    "changes",
    "channel",
    "channels",
    "chapters",
    "charge",
    "charges",
    "charts",
    "checkout",
    "checks",
    "cities",
    "claim",
    "claims",
    "classes",
    "clearance",
    "client",
    "clients",
    "clone",
    "close",
    "closed",
    "clusters",
    "collaborators",
    "collection",
    "collections",
    "commands",
    "comment",
    "comments",
    "commit",
    "commits",
    "completed",
    "compliance",
    "config",
    "configs",
    "configuration",
    "confirmation",
    "connections",
    "connectors",
    "consent",
    "consents",
    "console",
    "contact",
    "contacts",
    "content",
    "contents",
    "contributors",
    "controls",
    "conversation",
    "conversations",
    "convert",
    "cookies",
    "copy",
    "countries",
    "coupon",
    "coupons",
    "courses",
    "credentials",
    "currencies",
    "customer",
    "customers",
    "daily",
    "dashboard",
    "dashboards",
    "data",
    "deactivate",
    "deals",
    "decline",
    "defaults",
    "deleted",
    "deliveries",
    "delivery",
    "departments",
    "dependencies",
    "deploy",
    "deployment",
    "deployments",
    "deposit",
    "describe",
    "destinations",
    "detail",
    "details",
    "device",
    "devices",
    "diff",
    "directory",
    "disable",
    "discounts",
    "disputes",
    "distributions",
    "dns",
    "docs",
    "doctors",
    "document",
    "documentation",
    "documents",
    "domains",
    "download",
    "downloads",
    "draft",
    "drafts",
    "drivers",
    "edge",
    "editors",
    "emails",
    "emoji",
    "employees",
    "enable",
    "entries",
    "environments",
    "episodes",
    "escalate",
    "estimate",
    "estimates",
    "event",
    "events",
    "evidence",
    "exchange",
    "execute",
    "expenses",
    "experiments",
    "expired",
    "explain",
    "exports",
    "extensions",
    "facets",
    "failed",
    "faq",
    "favicon",
    "favorites",
    "favourites",
    "feature-flags",
    "features",
    "feed",
    "fields",
    "file",
    "files",
    "findings",
    "firewall",
    "first",
    "flags",
    "fleet",
    "folder",
    "folders",
    "follow",
    "followers",
    "following",
    "forecast",
    "forecasts",
    "forgot",
    "forks",
    "forms",
    "fraud",
    "friends",
    "fulfillment",
    "fulfillments",
    "games",
    "gdpr",
    "generate",
    "gifs",
    "gists",
    "glossary",
    "grades",
    "graphiql",
    "graphql",
    "group",
    "groups",
    "headlines",
    "health",
    "healthcheck",
    "healthz",
    "help",
    "history",
    "holds",
    "holidays",
    "home",
    "hooks",
    "hot",
    "hourly",
    "identities",
    "identity",
    "image",
    "images",
    "imports",
    "inactive",
    "inbox",
    "incidents",
    "index",
    "info",
    "installations",
    "instances",
    "integrations",
    "interactions",
    "internal",
    "introspect",
    "invalidate",
    "invalidations",
    "inventory",
    "invitations",
    "invite",
    "invoice",
    "invoices",
    "ip",
    "ips",
    "issue",
    "issues",
    "item",
    "items",
    "job",
    "jobs",
    "join",
    "jwks",
    "key",
    "keys",
    "kyc",
    "labels",
    "languages",
    "last",
    "leaderboard",
    "leaderboards",
    "leads",
    "leave",
    "ledger",
    "legal",
    "lessons",
    "levels",
    "libraries",
    "library",
    "licenses",
    "like",
    "likes",
    "limits",
    "links",
    "lists",
    "live",
    "livez",
    "loans",
    "locales",
    "location",
    "locations",
    "lock",
    "log",
    "logs",
    "manifest",
    "mappings",
    "maps",
    "marketplace",
    "markets",
    "matches",
    "media",
    "meetings",
    "members",
    "membership",
    "memberships",
    "mentions",
    "merchants",
    "merge",
    "message",
    "messages",
    "meta",
    "metadata",
    "metrics",
    "milestones",
    "modules",
    "monitors",
    "monthly",
    "move",
    "movies",
    "mute",
    "namespaces",
    "networks",
    "news",
    "next",
    "notes",
    "notification",
    "notifications",
    "oauth-apps",
    "objects",
    "offers",
    "offsets",
    "oidc",
    "onboarding",
    "online",
    "open",
    "openapi",
    "openid",
    "openid-configuration",
    "opportunities",
    "options",
    "order",
    "orders",
    "org",
    "organization",
    "organizations",
    "orgs",
    "origins",
    "outbox",
    "packages",
    "page",
    "pages",
    "partitions",
    "partners",
    "password",
    "passwords",
    "patients",
    "pause",
    "pay",
    "payment",
    "payments",
    "payouts",
    "payroll",
    "pending",
    "permissions",
    "phones",
    "photo",
    "photos",
    "ping",
    "pins",
    "pipeline",
    "pipelines",
    "places",
    "plan",
    "plans",
    "players",
    "playground",
    "playlists",
    "plugins",
    "points",
    "policies",
    "policy",
    "polls",
    "portfolio",
    "portfolios",
    "ports",
    "positions",
    "post",
    "posts",
    "preferences",
    "prescriptions",
    "presence",
    "prev",
    "previous",
    "price",
    "prices",
    "pricing",
    "privacy",
    "private",
    "product",
    "products",
    "profile",
    "profiles",
    "project",
    "projects",
    "promotions",
    "properties",
    "providers",
    "proxies",
    "public",
    "publish",
    "published",
    "publishers",
    "pull",
    "pulls",
    "purge",
    "push",
    "questions",
    "queue",
    "queues",
    "quotas",
    "quote",
    "quotes",
    "rate",
    "rates",
    "rating",
    "ratings",
    "reactions",
    "ready",
    "readyz",
    "receipt",
    "receipts",
    "records",
    "recover",
    "recovery",
    "redeem",
    "redirect",
    "referrals",
    "refs",
    "refund",
    "refunds",
    "regions",
    "registration",
    "reject",
    "relationships",
    "release",
    "releases",
    "render",
    "renditions",
    "reopen",
    "replies",
    "reply",
    "repo",
    "report",
    "reports",
    "repos",
    "repositories",
    "repository",
    "resend",
    "reservations",
    "resolve",
    "resource",
    "resources",
    "responses",
    "rest",
    "restore",
    "results",
    "resume",
    "retry",
    "returns",
    "review",
    "reviews",
    "rewards",
    "rides",
    "risk",
    "robots",
    "role",
    "roles",
    "rooms",
    "routes",
    "rpc",
    "rules",
    "run",
    "runs",
    "sale",
    "sales",
    "saml",
    "saved",
    "scans",
    "schedule",
    "schedules",
    "schema",
    "schemas",
    "scores",
    "search-results",
    "secrets",
    "sections",
    "security",
    "segments",
    "sent",
    "service",
    "services",
    "session",
    "sessions",
    "settings",
    "share",
    "shared",
    "shipment",
    "shipments",
    "shipping",
    "shops",
    "shows",
    "sitemap",
    "slash",
    "sms",
    "snapshots",
    "snippets",
    "social",
    "sources",
    "spam",
    "spans",
    "spec",
    "stages",
    "stargazers",
    "starred",
    "start",
    "static",
    "stations",
    "status",
    "statuses",
    "stickers",
    "stock",
    "stop",
    "stops",
    "stores",
    "stories",
    "stream",
    "streams",
    "strings",
    "students",
    "submissions",
    "submit",
    "subscribe",
    "subscription",
    "subscriptions",
    "suppliers",
    "support",
    "surveys",
    "swagger",
    "system",
    "tables",
    "tag",
    "tags",
    "task",
    "tasks",
    "teachers",
    "team",
    "teams",
    "template",
    "templates",
    "tenants",
    "terms",
    "terms-of-service",
    "thread",
    "threads",
    "thumbnail",
    "thumbnails",
    "tickers",
    "ticket",
    "tickets",
    "timeline",
    "timesheets",
    "toggles",
    "tokens",
    "tomorrow",
    "topics",
    "totp",
    "traces",
    "track",
    "tracking",
    "tracks",
    "trades",
    "transaction",
    "transactions",
    "transcode",
    "transfer",
    "transfers",
    "translations",
    "trash",
    "trees",
    "trigger",
    "trips",
    "typing",
    "unarchive",
    "unassign",
    "unblock",
    "unfollow",
    "unlike",
    "unlock",
    "unmute",
    "unpublish",
    "unread",
    "unsubscribe",
    "upload",
    "uploads",
    "uptime",
    "usage",
    "user",
    "users",
    "validation",
    "variables",
    "variants",
    "vehicles",
    "vendors",
    "verification",
    "verifications",
    "version",
    "versions",
    "video",
    "videos",
    "vod",
    "void",
    "volumes",
    "vote",
    "vulnerabilities",
    "wallet",
    "wallets",
    "warehouses",
    "watchlist",
    "watchlists",
    "weather",
    "webhook",
    "webhooks",
    "weekly",
    "well-known",
    "widgets",
    "wiki",
    "wishlist",
    "wishlists",
    "withdraw",
    "workflow",
    "workflows",
    "workspace",
    "workspaces",
    "yearly",
    "yesterday",
    "zones",
];

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "api.example.com";

    fn t() -> Templater {
        Templater::new(TemplateConfig::default())
    }

    fn obs(t: &mut Templater, path: &str) -> String {
        let id = t.observe(H, path);
        t.template(id).to_owned()
    }

    fn now(t: &Templater, path: &str) -> Option<String> {
        t.lookup(H, path).map(|id| t.template(id).to_owned())
    }

    impl Templater {
        /// Tree invariants: parent links, sorted literals, free list, routes of live nodes.
        fn check_invariants(&self) {
            for host in &self.hosts {
                let mut free = host.free.clone();
                free.sort_unstable();
                let before = free.len();
                free.dedup();
                assert_eq!(before, free.len(), "double free");
                let mut live = 0;
                for (i, n) in host.nodes.iter().enumerate() {
                    let i = i as u32;
                    if !n.alive {
                        assert!(free.binary_search(&i).is_ok(), "dead node {i} not free");
                        continue;
                    }
                    live += 1;
                    assert!(
                        free.binary_search(&i).is_err(),
                        "live node {i} in free list"
                    );
                    for w in n.literals.windows(2) {
                        assert!(host.node(w[0]).label < host.node(w[1]).label, "unsorted");
                    }
                    for &c in n.literals.iter().chain(n.param.iter()) {
                        let cn = host.node(c);
                        assert!(cn.alive, "child {c} of {i} dead");
                        assert_eq!(cn.parent, i, "parent link of {c}");
                    }
                    for &c in &n.literals {
                        assert!(!host.node(c).is_param(), "param {c} among literals of {i}");
                    }
                    if let Some(p) = n.param {
                        assert!(host.node(p).is_param(), "literal {p} as param of {i}");
                    }
                    for r in n.route.iter().chain(n.overflow_route.iter()) {
                        assert_eq!(self.routes[r.0 as usize].fate, Fate::Live, "route of {i}");
                    }
                }
                assert_eq!(live, host.live, "live count");
            }
        }
    }

    // --- segments and classification --------------------------------------------------------

    #[test]
    fn segments_ignore_query_trailing_slash_and_keep_empty_inner_segments() {
        let v: Vec<&str> = segments("/users/42/?x=1#f").collect();
        assert_eq!(v, ["users", "42"]);
        assert_eq!(segments("/").count(), 0);
        assert_eq!(segments("").count(), 0);
        assert_eq!(segments("//").count(), 0);
        let v: Vec<&str> = segments("/a//b").collect();
        assert_eq!(v, ["a", "", "b"]);
        let v: Vec<&str> = segments("no-slash/x").collect();
        assert_eq!(v, ["no-slash", "x"]);
    }

    #[test]
    fn versions_are_recognised() {
        for v in [
            "v1", "v2", "v10", "V3", "v2beta", "v1alpha1", "v1.2", "1.0", "2.1.3",
        ] {
            assert!(is_version(v), "{v}");
        }
        for v in [
            "v", "vx", "video", "1", "48.8566", "123.4", "1.2.3.4", "version",
        ] {
            assert!(!is_version(v), "{v}");
        }
    }

    #[test]
    fn segment_classes() {
        let t = t();
        let c = |s: &str| classify_segment(s, &t.vocab, &t.cfg);
        assert_eq!(c(""), Seg::Static);
        assert_eq!(c("me"), Seg::Static);
        assert_eq!(c("Search"), Seg::Static);
        assert_eq!(c("v2beta"), Seg::Static);
        assert_eq!(c("getUser"), Seg::Static);
        assert_eq!(c("users.list"), Seg::Static);
        assert_eq!(c("chat.postMessage"), Seg::Static);
        assert!(matches!(c("42"), Seg::Ident(ValueKind::Integer, _)));
        assert!(matches!(
            c("123e4567-e89b-12d3-a456-426614174000"),
            Seg::Ident(ValueKind::Uuid, _)
        ));
        assert!(matches!(
            c("alice%40example.com"),
            Seg::Ident(ValueKind::Email, _)
        ));
        assert!(matches!(c("42.json"), Seg::Ident(ValueKind::Integer, _)));
        assert!(matches!(c("order-2023-17"), Seg::Ident(_, Rule::Generated)));
        assert!(matches!(c("red-shoe-42"), Seg::Ident(_, Rule::Generated)));
        assert!(matches!(c("INV-00042"), Seg::Ident(_, Rule::Generated)));
        assert!(matches!(c("item_9f2"), Seg::Ident(_, Rule::Generated)));
        assert!(matches!(c(&"x".repeat(200)), Seg::Ident(_, Rule::Long)));
        assert!(matches!(c("torvalds"), Seg::Word(_)));
        assert!(matches!(c("red-shoe"), Seg::Word(_)));
        assert!(matches!(c("report.pdf"), Seg::Name(_)));
        assert!(matches!(c("Alice"), Seg::Name(_)));
        assert!(matches!(c("user1"), Seg::Name(_)));
        assert!(matches!(c("oauth2"), Seg::Static));
        assert!(matches!(c("s3"), Seg::Name(_)));
        assert!(matches!(c("john.smith"), Seg::Name(_)));
    }

    #[test]
    fn route_words_are_sorted_lookups_case_insensitive() {
        let t = Templater::new(TemplateConfig {
            static_words: vec!["Clearance-Bin".into()],
            ..TemplateConfig::default()
        });
        assert_eq!(t.vocab.word("ME"), None, "all capitals are a name");
        assert_eq!(t.vocab.word("Me"), Some(WordKind::Strong));
        assert_eq!(t.vocab.word("clearance-bin"), Some(WordKind::Strong));
        assert_eq!(t.vocab.word("blog"), Some(WordKind::Noun));
        assert_eq!(t.vocab.word("LICENSE"), None);
        assert_eq!(t.vocab.word("torvalds"), None);
        let mut sorted = RPC_VERBS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, RPC_VERBS, "RPC_VERBS must be sorted");
    }

    #[test]
    fn singular_names() {
        assert_eq!(singular("users"), "user");
        assert_eq!(singular("categories"), "category");
        assert_eq!(singular("boxes"), "box");
        assert_eq!(singular("status"), "status");
        assert_eq!(singular("address"), "address");
        assert_eq!(singular("api-keys"), "api_key");
        assert_eq!(singular("42"), "param");
    }

    // --- typed parameters -------------------------------------------------------------------

    #[test]
    fn typed_identifiers_become_parameters_at_once() {
        let mut t = t();
        assert_eq!(obs(&mut t, "/users/42"), "/users/{id}");
        assert_eq!(
            obs(&mut t, "/users/123e4567-e89b-12d3-a456-426614174000"),
            "/users/{id}"
        );
        assert_eq!(obs(&mut t, "/reports/2024-01-05"), "/reports/{id}");
        assert_eq!(
            obs(&mut t, "/objects/507f1f77bcf86cd799439011"),
            "/objects/{id}"
        );
        assert_eq!(
            obs(&mut t, "/blobs/d41d8cd98f00b204e9800998ecf8427e"),
            "/blobs/{id}"
        );
        assert_eq!(
            obs(&mut t, "/subscribers/alice@example.com"),
            "/subscribers/{id}"
        );
        assert_eq!(obs(&mut t, "/orders/order-2023-17"), "/orders/{id}");
    }

    #[test]
    fn several_parameters_are_named_after_the_literal_before_them() {
        let mut t = t();
        assert_eq!(
            obs(&mut t, "/users/42/orders/7"),
            "/users/{user_id}/orders/{id}"
        );
        assert_eq!(
            obs(&mut t, "/categories/3/items/9/variants/1"),
            "/categories/{category_id}/items/{item_id}/variants/{id}"
        );
        assert_eq!(obs(&mut t, "/users/42/orders"), "/users/{id}/orders");
        assert_eq!(obs(&mut t, "/v1/42/7"), "/v1/{param_id}/{id}");
        assert_eq!(obs(&mut t, "/x/1/2/3"), "/x/{x_id}/{x_id_2}/{id}");
    }

    #[test]
    fn version_segments_stay_literal() {
        let mut t = t();
        for v in [
            "v1", "v2", "v3", "v10", "v2beta", "v4", "v5", "v6", "v7", "v8", "v9",
        ] {
            assert_eq!(
                obs(&mut t, &format!("/{v}/users/1")),
                format!("/{v}/users/{{id}}")
            );
            assert_eq!(
                obs(&mut t, &format!("/api/{v}/things")),
                format!("/api/{v}/things")
            );
        }
    }

    // --- static siblings --------------------------------------------------------------------

    #[test]
    fn static_siblings_of_a_typed_parameter_stay_literal_and_win() {
        let mut t = t();
        for i in 0..50 {
            obs(&mut t, &format!("/users/{i}"));
        }
        for w in [
            "me",
            "search",
            "bulk-export",
            "zzz-unknown",
            "teapot",
            "x",
            "ab",
            "cd",
            "ef",
        ] {
            assert_eq!(obs(&mut t, &format!("/users/{w}")), format!("/users/{w}"));
        }
        assert_eq!(now(&t, "/users/me").unwrap(), "/users/me");
        assert_eq!(now(&t, "/users/99").unwrap(), "/users/{id}");
    }

    #[test]
    fn recurring_static_siblings_stay_literal_when_names_merge_beside_them() {
        let mut t = t();
        // `trendy` and `sparkly` are not route words: only their recurrence protects them.
        let names = [
            "red-shoe",
            "blue-hat",
            "green-scarf",
            "black-boot",
            "white-sock",
            "gold-ring",
            "silver-chain",
            "pink-bag",
            "grey-coat",
            "brown-belt",
        ];
        for (i, n) in names.iter().enumerate() {
            obs(&mut t, "/products/trendy");
            obs(&mut t, "/products/sparkly");
            obs(&mut t, "/products/me");
            obs(&mut t, &format!("/products/{n}"));
            if i % 3 == 0 {
                obs(&mut t, "/products/trendy");
            }
        }
        assert_eq!(now(&t, "/products/trendy").unwrap(), "/products/trendy");
        assert_eq!(now(&t, "/products/sparkly").unwrap(), "/products/sparkly");
        assert_eq!(now(&t, "/products/me").unwrap(), "/products/me");
        assert_eq!(now(&t, "/products/red-shoe").unwrap(), "/products/{id}");
        assert_eq!(obs(&mut t, "/products/purple-tie"), "/products/{id}");
    }

    #[test]
    fn a_route_word_arriving_after_a_learnt_parameter_stays_literal() {
        let mut t = t();
        for n in ["alice", "bob", "carol", "dave"] {
            obs(&mut t, &format!("/people/{n}/repos"));
        }
        assert_eq!(now(&t, "/people/erin/repos").unwrap(), "/people/{id}/repos");
        assert_eq!(obs(&mut t, "/people/search"), "/people/search");
        assert_eq!(obs(&mut t, "/people/me/repos"), "/people/me/repos");
    }

    #[test]
    fn collections_do_not_merge_even_when_many() {
        let mut t = t();
        let cols = [
            "widgets",
            "gadgets",
            "gizmos",
            "doohickeys",
            "thingamajigs",
            "whatsits",
            "sprockets",
            "cogs",
            "flanges",
            "grommets",
        ];
        for c in cols {
            obs(&mut t, &format!("/store/{c}/1"));
            obs(&mut t, &format!("/store/{c}/2"));
        }
        for c in cols {
            assert_eq!(
                now(&t, &format!("/store/{c}/3")).unwrap(),
                format!("/store/{c}/{{id}}")
            );
        }
    }

    // --- learning ---------------------------------------------------------------------------

    #[test]
    fn names_with_a_shared_continuation_merge_into_one_parameter() {
        let mut t = t();
        assert_eq!(obs(&mut t, "/people/alice/repos"), "/people/alice/repos");
        assert_eq!(obs(&mut t, "/people/bob/repos"), "/people/bob/repos");
        assert_eq!(obs(&mut t, "/people/carol/repos"), "/people/{id}/repos");
        assert_eq!(obs(&mut t, "/people/alice"), "/people/{id}");
        let changes = t.drain_changes();
        assert_eq!(changes.len(), 1, "{changes:?}");
        let RouteChange::Merged { into, from } = &changes[0] else {
            panic!("{changes:?}")
        };
        assert_eq!(t.template(*into), "/people/{id}/repos");
        assert_eq!(from.len(), 2);
        for f in from {
            assert!(t.template(*f).starts_with("/people/"));
            assert_eq!(t.resolve(*f), Some(*into));
        }
    }

    #[test]
    fn many_distinct_names_merge_on_count() {
        let mut t = t();
        let names = ["anna", "bert", "cleo", "dirk", "emma", "finn"];
        for n in &names[..5] {
            assert_eq!(obs(&mut t, &format!("/u/{n}")), format!("/u/{n}"));
        }
        assert_eq!(obs(&mut t, "/u/finn"), "/u/{id}");
        let ev = t.evidence(t.lookup(H, "/u/anna").unwrap());
        assert_eq!(ev[0].rule, "learned:distinct>=6");
        assert_eq!(ev[0].distinct, 6);
        assert_eq!(ev[0].samples.len(), 5);
    }

    #[test]
    fn file_names_merge_as_names() {
        let mut t = t();
        obs(&mut t, "/files/report.pdf");
        obs(&mut t, "/files/photo.png");
        assert_eq!(obs(&mut t, "/files/data.csv"), "/files/{id}");
        assert_eq!(obs(&mut t, "/files/notes.txt"), "/files/{id}");
    }

    #[test]
    fn owner_and_repo_names_cascade_into_two_parameters() {
        let mut t = t();
        let pairs = [
            ("torvalds", "linux"),
            ("rust-lang", "cargo"),
            ("golang", "tools"),
            ("nodejs", "node"),
            ("python", "cpython"),
            ("apple", "swift"),
            ("facebook", "react"),
            ("vuejs", "core"),
            ("django", "channels"),
        ];
        for (o, r) in pairs {
            obs(&mut t, &format!("/repos/{o}/{r}/issues/1"));
            obs(&mut t, &format!("/repos/{o}/{r}"));
        }
        assert_eq!(
            now(&t, "/repos/torvalds/linux/issues/5").unwrap(),
            "/repos/{repo_id}/{repo_id_2}/issues/{id}"
        );
        assert_eq!(
            now(&t, "/repos/nobody/nothing").unwrap(),
            "/repos/{repo_id}/{id}"
        );
    }

    #[test]
    fn few_plain_words_without_shared_continuation_stay_literal() {
        // Tiny traffic: two or three plain words are not evidence of a parameter.
        let mut t = t();
        for w in ["alpha", "beta", "gamma"] {
            assert_eq!(obs(&mut t, &format!("/things/{w}")), format!("/things/{w}"));
        }
    }

    #[test]
    fn root_level_needs_many_names() {
        let mut t = t();
        for n in ["alice", "bob", "carol"] {
            obs(&mut t, &format!("/{n}/repos"));
        }
        assert_eq!(now(&t, "/alice/repos").unwrap(), "/alice/repos");
    }

    #[test]
    fn popular_values_sharing_the_continuation_merge_too() {
        // `torvalds` is hit far more than the others, but like them it is followed by
        // repositories: a value, not a static sibling.
        let mut t = t();
        for i in 0..12 {
            obs(&mut t, &format!("/owners/torvalds/r{i}x/issues"));
        }
        for o in ["alice", "bob", "carol"] {
            obs(&mut t, &format!("/owners/{o}/rx/issues"));
        }
        assert_eq!(
            now(&t, "/owners/torvalds/r1x/issues").unwrap(),
            "/owners/{owner_id}/{id}/issues"
        );
    }

    #[test]
    fn a_resource_noun_used_as_a_name_joins_on_shared_continuation() {
        // A repository named `blog` (a route word) beside repositories with issues.
        let mut t = t();
        for r in ["linux", "cargo", "tokio"] {
            obs(&mut t, &format!("/r/{r}/issues"));
        }
        assert_eq!(
            obs(&mut t, "/r/blog"),
            "/r/blog",
            "alone, a noun is a route"
        );
        assert_eq!(obs(&mut t, "/r/blog/issues"), "/r/{id}/issues");
        assert_eq!(now(&t, "/r/blog/issues").unwrap(), "/r/{id}/issues");
        // A strong route word never does.
        assert_eq!(obs(&mut t, "/r/search/issues"), "/r/search/issues");
    }

    #[test]
    fn compound_route_names_led_by_a_view_word_stay_literal() {
        let t = t();
        let c = |s: &str| classify_segment(s, &t.vocab, &t.cfg);
        for w in [
            "new-arrivals",
            "top-rated",
            "best_sellers",
            "most-popular",
            "on-sale",
        ] {
            assert!(matches!(c(w), Seg::Noun(_)), "{w}");
        }
        for w in ["red-shoe", "newton", "topaz-ring", "alpha_wolf"] {
            assert!(matches!(c(w), Seg::Word(_)), "{w}");
        }
    }

    #[test]
    fn generated_names_count_as_evidence_for_plain_names_beside_them() {
        let mut t = t();
        assert_eq!(obs(&mut t, "/slugs/red-shoe-12"), "/slugs/{id}");
        assert_eq!(obs(&mut t, "/slugs/blue-hat-7"), "/slugs/{id}");
        assert_eq!(obs(&mut t, "/slugs/green-scarf"), "/slugs/green-scarf");
        // Two names with digits and one plain name are not evidence yet; a third is.
        assert_eq!(obs(&mut t, "/slugs/grey-coat-31"), "/slugs/{id}");
        assert_eq!(obs(&mut t, "/slugs/black-boot"), "/slugs/{id}");
        assert_eq!(now(&t, "/slugs/green-scarf").unwrap(), "/slugs/{id}");
        let ev = t.evidence(t.lookup(H, "/slugs/x-1").unwrap());
        assert_eq!(ev[0].rule, "type:generated");
        assert_eq!(ev[0].also, ["learned:names>=3"]);
    }

    #[test]
    fn a_static_sibling_absorbed_before_it_recurred_is_extracted() {
        let mut t = t();
        let mut n = 0;
        let mut next_name = || {
            n += 1;
            format!("item-{}x{}", (b'a' + (n % 26) as u8) as char, n / 26)
        };
        // A parameter of names forms first ...
        for _ in 0..10 {
            let v = next_name().replace(|c: char| c.is_ascii_digit(), "q");
            obs(&mut t, &format!("/goods/{v}/reviews"));
        }
        let p = now(&t, "/goods/anything/reviews");
        assert_eq!(p.as_deref(), Some("/goods/{id}/reviews"));
        // ... then `clearout` (not a route word) arrives, is absorbed, and recurs.
        let first = obs(&mut t, "/goods/clearout");
        assert_eq!(first, "/goods/{id}", "at first sight it is a value");
        for i in 0..200 {
            obs(&mut t, "/goods/clearout");
            let v = format!("zz{}", (b'a' + (i % 26) as u8) as char).repeat(1 + i / 26);
            obs(&mut t, &format!("/goods/{v}"));
        }
        assert_eq!(now(&t, "/goods/clearout").unwrap(), "/goods/clearout");
        assert_eq!(t.stats().values_extracted, 1);
        let changes = t.drain_changes();
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, RouteChange::Extracted { .. })),
            "{changes:?}"
        );
        // Pinned: it stays literal.
        assert_eq!(obs(&mut t, "/goods/clearout"), "/goods/clearout");
    }

    #[test]
    fn merged_route_words_are_still_found_by_lookup() {
        // Regression: a noun merged into a parameter must still match it.
        let mut t = t();
        for r in ["linux", "cargo", "tokio"] {
            obs(&mut t, &format!("/r/{r}/pulls"));
        }
        obs(&mut t, "/r/docs/pulls");
        assert_eq!(now(&t, "/r/docs/pulls").unwrap(), "/r/{id}/pulls");
    }

    // --- split-back -------------------------------------------------------------------------

    #[test]
    fn a_learnt_parameter_with_few_stable_values_splits_back() {
        let mut t = t();
        let mut seen = Vec::new();
        for i in 0..400 {
            let lang = ["en", "fr", "de"][i % 3];
            seen.push(t.observe(H, &format!("/site/{lang}/docs")));
        }
        assert_eq!(now(&t, "/site/en/docs").unwrap(), "/site/en/docs");
        assert_eq!(now(&t, "/site/fr/docs").unwrap(), "/site/fr/docs");
        assert_eq!(now(&t, "/site/es/docs"), None);
        let changes = t.drain_changes();
        let split = changes
            .iter()
            .find_map(|c| match c {
                RouteChange::Split { from, into } => Some((*from, into.clone())),
                _ => None,
            })
            .expect("a split");
        assert_eq!(t.template(split.0), "/site/{id}/docs");
        assert_eq!(split.1.len(), 3);
        assert_eq!(t.resolve(split.0), None);
        assert_eq!(t.stats().splits, 1);
        // Pinned: more traffic does not merge them again.
        for _ in 0..50 {
            for l in ["en", "fr", "de"] {
                obs(&mut t, &format!("/site/{l}/docs"));
            }
        }
        assert_eq!(now(&t, "/site/de/docs").unwrap(), "/site/de/docs");
    }

    #[test]
    fn typed_parameters_never_split_even_with_few_ids() {
        let mut t = t();
        for i in 0..600 {
            obs(&mut t, &format!("/users/{}", i % 2 + 1));
        }
        assert_eq!(now(&t, "/users/1").unwrap(), "/users/{id}");
        assert_eq!(t.stats().splits, 0);
    }

    // --- spec -------------------------------------------------------------------------------

    #[test]
    fn spec_templates_win_and_keep_their_names() {
        let mut t = t();
        obs(&mut t, "/pets/fluffy");
        let pet = t.add_spec_template(H, "/pets/{petId}");
        assert_eq!(t.template(pet), "/pets/{petId}");
        assert_eq!(t.lookup(H, "/pets/fluffy"), Some(pet));
        assert_eq!(t.observe(H, "/pets/rex"), pet);
        assert_eq!(t.observe(H, "/pets/42"), pet);
        let mine = t.add_spec_template(H, "/pets/mine");
        assert_eq!(t.observe(H, "/pets/mine"), mine);
        let photo = t.add_spec_template(H, "/pets/{petId}/photos/{photoId}");
        assert_eq!(t.template(photo), "/pets/{petId}/photos/{photoId}");
        assert_eq!(t.observe(H, "/pets/rex/photos/7"), photo);
        let ev = t.evidence(pet);
        assert_eq!(ev[0].rule, "spec");
        assert_eq!(ev[0].name, "petId");
        let json = t.add_spec_template(H, "/docs/{name}.json");
        assert_eq!(t.template(json), "/docs/{name}.json");
    }

    #[test]
    fn spec_adopting_a_typed_parameter_renames_its_routes() {
        let mut t = t();
        let old = t.observe(H, "/orders/5");
        assert_eq!(t.template(old), "/orders/{id}");
        let new = t.add_spec_template(H, "/orders/{orderId}");
        assert_eq!(t.template(new), "/orders/{orderId}");
        assert_eq!(t.resolve(old), Some(new));
        assert_eq!(
            t.template(old),
            "/orders/{id}",
            "old ids keep their template"
        );
        let ev = t.evidence(new);
        assert_eq!(ev[0].rule, "type:integer");
        assert_eq!(ev[0].also, ["spec"]);
    }

    #[test]
    fn restored_templates_come_back_without_pinning() {
        let mut t = t();
        let a = t.restore_template(H, "/users/{id}");
        let b = t.restore_template(H, "/users/{user_id}/orders/{id}");
        let c = t.restore_template(H, "/repos/{repo_id}/{id}/issues");
        let d = t.restore_template(H, "/a/b/{*rest}");
        assert_eq!(t.template(a), "/users/{id}");
        assert_eq!(t.template(b), "/users/{user_id}/orders/{id}");
        assert_eq!(t.template(d), "/a/b/{*rest}");
        assert_eq!(t.observe(H, "/users/42"), a);
        assert_eq!(t.observe(H, "/users/7/orders/1"), b);
        // Restored parameters wait for evidence before taking names ...
        assert_eq!(obs(&mut t, "/users/me"), "/users/me");
        assert_eq!(
            obs(&mut t, "/repos/alpha/beta/issues"),
            "/repos/alpha/beta/issues"
        );
        // ... and learning can still merge names into them.
        for (o, r) in [("gamma", "eps"), ("delta", "zeta")] {
            obs(&mut t, &format!("/repos/{o}/{r}/issues"));
        }
        assert_eq!(t.observe(H, "/repos/omega/theta/issues"), c);
        assert_eq!(t.evidence(a)[0].rule, "restored");
        assert_eq!(t.stats().params_restored, 4);
    }

    // --- evidence ---------------------------------------------------------------------------

    #[test]
    fn evidence_redacts_emails_and_tokens() {
        let mut t = t();
        let a = t.observe(H, "/subscribers/alice@example.com");
        t.observe(H, "/subscribers/bob%40example.org");
        t.observe(H, "/subscribers/eyJhbGciOiJIUzI1NiJ9xx12abc");
        t.observe(H, "/subscribers/42");
        let ev = t.evidence(a);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].samples, ["<email>", "<token>", "42"]);
        assert_eq!(ev[0].kinds["email"], 2);
        assert_eq!(ev[0].kinds["token"], 1);
        assert_eq!(ev[0].kinds["integer"], 1);
        assert_eq!(ev[0].distinct, 4);
        assert_eq!(ev[0].observations, 4);
        assert!(ev[0].rule.starts_with("type:email"));
        let json = serde_json::to_string(&ev).unwrap();
        assert!(!json.contains("alice"), "{json}");
    }

    #[test]
    fn distinct_values_are_bounded() {
        let mut t = Templater::new(TemplateConfig {
            max_tracked_values: 10,
            ..TemplateConfig::default()
        });
        let id = t.observe(H, "/n/0");
        for i in 1..100 {
            t.observe(H, &format!("/n/{i}"));
        }
        let ev = t.evidence(id);
        assert_eq!(ev[0].distinct, 10);
        assert!(ev[0].distinct_saturated);
        assert_eq!(t.stats().distinct_saturated, 1);
        assert_eq!(t.stats().samples_full, 1);
    }

    // --- lookup -----------------------------------------------------------------------------

    #[test]
    fn lookup_never_learns() {
        let mut t = t();
        obs(&mut t, "/users/1");
        let before = t.stats();
        for i in 0..1000 {
            assert_eq!(t.lookup(H, &format!("/admin{i}/x")), None);
            assert_eq!(t.lookup(H, &format!("/users/{i}/secret")), None);
        }
        assert!(t.lookup(H, "/users/77").is_some());
        assert_eq!(t.lookup("other.example.com", "/users/1"), None);
        assert_eq!(t.stats(), before);
    }

    #[test]
    fn trailing_slash_and_query_are_the_same_route() {
        let mut t = t();
        let a = t.observe(H, "/users");
        assert_eq!(t.observe(H, "/users/"), a);
        assert_eq!(t.observe(H, "/users?page=2"), a);
        assert_eq!(obs(&mut t, "/"), "/");
        assert_eq!(obs(&mut t, "/a//b"), "/a//b");
    }

    // --- bounds -----------------------------------------------------------------------------

    #[test]
    fn node_budget_maps_the_rest_to_a_catch_all() {
        let mut t = Templater::new(TemplateConfig {
            max_nodes_per_host: 16,
            ..TemplateConfig::default()
        });
        for i in 0..40 {
            t.observe(H, &format!("/a{i}x/b/c"));
        }
        assert!(t.stats().nodes <= 16 + 1);
        assert!(t.stats().node_limit > 0);
        let id = t.observe(H, "/zzz/yyy");
        assert!(t.template(id).ends_with("{*rest}"), "{}", t.template(id));
        assert_eq!(t.lookup(H, "/qqq"), t.lookup(H, "/rrr"));
    }

    #[test]
    fn literal_children_limit_forces_a_merge() {
        let mut t = Templater::new(TemplateConfig {
            max_literal_children: 10,
            ..TemplateConfig::default()
        });
        // Collections protect themselves from learning, not from the bound.
        for i in 0..30 {
            let w: String = (0..5)
                .map(|k| (b'a' + ((i * 7 + k * 3) % 26) as u8) as char)
                .collect();
            t.observe(H, &format!("/s/{w}x/1"));
        }
        assert!(t.stats().literal_children_limit >= 1);
        let id = t.observe(H, "/s/newthing/1");
        let ev = t.evidence(id);
        assert_eq!(ev[0].rule, "forced:children>=10");
        assert!(t.lookup(H, "/s/anything/1").is_some());
    }

    #[test]
    fn long_paths_are_cut_at_max_segments() {
        let mut t = Templater::new(TemplateConfig {
            max_segments: 4,
            ..TemplateConfig::default()
        });
        let id = t.observe(H, "/a/b/c/d/e/f/g");
        assert_eq!(t.template(id), "/a/b/c/d/{*rest}");
        assert_eq!(t.stats().paths_truncated, 1);
        assert_eq!(t.lookup(H, "/a/b/c/d/x/y"), Some(id));
    }

    #[test]
    fn long_segments_are_parameters() {
        let mut t = t();
        let long = "a".repeat(500);
        assert_eq!(obs(&mut t, &format!("/blob/{long}")), "/blob/{id}");
        assert_eq!(t.stats().long_segments, 1);
    }

    #[test]
    fn hosts_beyond_the_bound_share_one_tree() {
        let mut t = Templater::new(TemplateConfig {
            max_hosts: 2,
            ..TemplateConfig::default()
        });
        t.observe("a", "/x");
        t.observe("b", "/x");
        let c = t.observe("c", "/x");
        let d = t.observe("d", "/x");
        assert_eq!(c, d);
        assert_eq!(t.host_of(c), "*");
        assert_eq!(t.stats().hosts_overflow, 2);
        assert_eq!(t.lookup("e", "/x"), Some(c));
    }

    #[test]
    fn pending_changes_are_bounded() {
        let mut t = Templater::new(TemplateConfig {
            max_pending_changes: 2,
            ..TemplateConfig::default()
        });
        for p in ["a", "b", "c", "d"] {
            for n in ["alice", "bob", "carol"] {
                t.observe(H, &format!("/{p}/{n}/repos"));
            }
        }
        assert_eq!(t.drain_changes().len(), 2);
        assert_eq!(t.stats().changes_dropped, 2);
    }

    #[test]
    fn config_validation_reports_every_error() {
        let bad = TemplateConfig {
            max_hosts: 0,
            min_distinct: 1,
            split_max_values: 10,
            ..TemplateConfig::default()
        };
        assert_eq!(bad.validate().len(), 3, "{:?}", bad.validate());
        assert!(TemplateConfig::default().validate().is_empty());
        let c: TemplateConfig = serde_json::from_str(r#"{"min_distinct": 5}"#).unwrap();
        assert_eq!(c.min_distinct, 5);
        assert!(serde_json::from_str::<TemplateConfig>(r#"{"nope": 1}"#).is_err());
    }

    // --- determinism and robustness ---------------------------------------------------------

    /// A tiny deterministic generator (xorshift) for random-input tests.
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
    }

    fn garbage_path(r: &mut Rng) -> String {
        const ALPHABET: &[&str] = &[
            "/",
            "/",
            "/",
            "a",
            "Z",
            "0",
            "9",
            "%",
            "%2F",
            "%zz",
            "%e2%82%ac",
            "é",
            "日本",
            "?",
            "#",
            ".",
            "..",
            "-",
            "_",
            "{",
            "}",
            "*",
            "users",
            "me",
            "v1",
            "42",
            "@",
            "~",
            " ",
            "\u{0}",
            "\u{7f}",
            "%00",
        ];
        let n = r.below(40);
        (0..n)
            .map(|_| ALPHABET[r.below(ALPHABET.len() as u64) as usize])
            .collect()
    }

    #[test]
    fn garbage_paths_never_panic_and_lookup_agrees_with_observe() {
        let mut t = Templater::new(TemplateConfig {
            max_nodes_per_host: 500,
            max_literal_children: 20,
            max_segments: 12,
            ..TemplateConfig::default()
        });
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000 {
            let p = garbage_path(&mut r);
            let host = ["a", "b", "c"][i % 3];
            let id = t.observe(host, &p);
            assert!(!t.template(id).is_empty());
            let _ = t.evidence(id);
            let _ = t.lookup(host, &garbage_path(&mut r));
            // What observe just answered, lookup answers too (nothing learnt in between).
            let again = t.lookup(host, &p);
            assert!(again.is_some(), "{p:?} observed as {}", t.template(id));
            assert_eq!(t.resolve(id), again.and_then(|a| t.resolve(a)), "{p:?}");
            if i % 7 == 0 {
                t.add_spec_template(host, &p);
            }
            if i % 11 == 0 {
                t.restore_template(host, &garbage_path(&mut r));
            }
            if i % 1000 == 0 {
                t.check_invariants();
            }
        }
        t.check_invariants();
        let s = t.stats();
        assert!(s.nodes <= 3 * 500 + 3 * 64, "{s:?}");
        t.drain_changes();
    }

    #[test]
    fn the_same_observations_give_the_same_templates() {
        let run = || {
            let mut t = t();
            let mut r = Rng(7);
            let mut out = Vec::new();
            for _ in 0..3000 {
                let p = match r.below(6) {
                    0 => format!("/users/{}", r.below(1000)),
                    1 => format!("/people/n{}x/repos", r.below(50)),
                    2 => format!("/files/f{}.pdf", r.below(100)),
                    3 => "/users/me".to_owned(),
                    4 => format!(
                        "/tags/{}",
                        ["red", "green", "blue", "cyan"][r.below(4) as usize]
                    ),
                    _ => format!(
                        "/p/{}/q",
                        ["aa", "bb", "cc", "dd", "ee", "ff", "gg", "hh", "ii"][r.below(9) as usize]
                    ),
                };
                let id = t.observe(H, &p);
                out.push((p, t.template(id).to_owned()));
            }
            (out, t.drain_changes(), t.stats())
        };
        assert_eq!(run(), run());
    }
}
