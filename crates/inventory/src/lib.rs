//! The API inventory: what endpoints exist, what they take and return, who calls them.
//!
//! The HTTP stage hands over calls; this crate turns them into a catalog of endpoints keyed by
//! host, method and *templated* path (`/users/{id}`). The parts:
//!
//! - [`inventory`]: the catalog itself: [`inventory::CallFacts`] extracted per call on the
//!   workers, [`inventory::Inventory`] counting them in request-time order into endpoints.
//! - [`principal`]: who made a call, as a keyed hash of the most specific identity its
//!   credentials carry (JWT subject, Basic user, token, API key, session).
//! - [`keyed`]: keyed hashes (SipHash under the state directory's secret) for values that
//!   must be remembered but never stored.
//! - [`stats`]: bounded, mergeable per-endpoint statistics (distinct counts, latency
//!   percentiles with `hdrhistogram`, sizes, bounded tallies).
//! - [`value`]: the type of a single string value (integer, UUID, email, date, ...), shared by
//!   path templating, query parameters and body schemas.
//! - [`auth`]: the credentials a request carries (Basic, Bearer/JWT, API keys in headers or
//!   the query, session cookies), by scheme and name, never the secret.
//! - [`sensitive`]: personal data and secrets in paths, queries, headers and bodies (emails,
//!   cards, SSNs, phones, IBANs, JWTs, cloud and SaaS keys, private keys, passwords), by kind
//!   and location, never the value.
//! - [`spec`]: OpenAPI 3.0/3.1 documents loaded from YAML or JSON, and a per-host matcher that
//!   finds the spec operation of an endpoint (or says the path has no such method).
//! - [`openapi`]: export of observed endpoints as an OpenAPI 3.1 document for one host.
//! - [`store`]: the persistent state in `--state DIR` (SQLite through `rusqlite`): the
//!   inventory as last flushed, its history (`as_of`, `first_seen_since`), records of other
//!   stages by namespace, and the secret key for hashes of remembered values.
//! - [`schema`]: JSON body schemas inferred from sampled bodies (truncated prefixes salvaged),
//!   merged across samples and workers, exported as JSON Schema 2020-12 for OpenAPI 3.1.
//! - [`params`]: query, form and multipart parameters (names, presence, value kinds, files),
//!   and `Content-Type` parsing.
//! - [`graphql`]: the GraphQL operations of a request (type, name, top-level fields), for
//!   JSON, batched, GET and `application/graphql` requests.
//! - [`template`]: path templating per host (`/users/42` → `/users/{id}`): typed segments,
//!   names learnt from traffic, static siblings kept literal, spec templates, evidence.
//!
//! Nothing here reads packets or HTTP bytes on its own: the caller passes paths, headers and
//! body prefixes.

pub mod auth;
pub mod graphql;
pub mod inventory;
pub mod keyed;
pub mod openapi;
pub mod params;
pub mod principal;
pub mod schema;
pub mod sensitive;
pub mod spec;
pub mod stats;
pub mod store;
pub mod template;
pub mod value;
