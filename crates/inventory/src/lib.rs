//! The API inventory: what endpoints exist, what they take and return, who calls them.
//!
//! The HTTP stage hands over calls; this crate turns them into a catalog of endpoints keyed by
//! host, method and *templated* path (`/users/{id}`). The parts:
//!
//! - [`value`]: the type of a single string value (integer, UUID, email, date, ...), shared by
//!   path templating, query parameters and body schemas.
//!
//! Nothing here reads packets or HTTP bytes on its own: the caller passes paths, headers and
//! body prefixes.

pub mod value;
