//! Who made a call, as far as its credentials tell: the *principal*, as a keyed hash.
//!
//! Detections need to tell principals apart (one user walking other users' objects, many
//! failed logins for one account) without keeping credentials. [`principal_of`] picks the
//! most specific identity a request carries — a JWT's `iss`+`sub`, else a Basic user name,
//! else the bearer token, API key or session cookie itself — and returns its kind and a
//! [`KeyedHasher`] hash. Nothing else of the credential survives.
//!
//! ```
//! use apiscope_inventory::keyed::KeyedHasher;
//! use apiscope_inventory::principal::{principal_of, PrincipalKind};
//! let h = KeyedHasher::new(&[3; 32]);
//! let headers = [("Host", &b"a"[..]), ("X-API-Key", &b"k-0123456789abcdef0123"[..])];
//! let p = principal_of(headers.iter().copied(), None, &h).unwrap();
//! assert_eq!(p.kind, PrincipalKind::ApiKey);
//! ```

use serde::Serialize;

use crate::auth::{self, b64_decode, split_jwt, AuthScheme, RequestAuth};
use crate::keyed::KeyedHasher;

/// What identified the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A JWT's issuer and subject (the same user across tokens).
    JwtSubject,
    /// An HTTP Basic user name.
    BasicUser,
    /// A bearer token without a subject (opaque, or a JWT without `sub`).
    Bearer,
    /// An API key, in a header or the query.
    ApiKey,
    /// A session cookie.
    Session,
}

impl PrincipalKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::JwtSubject => "jwt_subject",
            PrincipalKind::BasicUser => "basic_user",
            PrincipalKind::Bearer => "bearer",
            PrincipalKind::ApiKey => "api_key",
            PrincipalKind::Session => "session",
        }
    }
}

/// A principal: its kind and the keyed hash of its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub hash: u64,
}

/// Longest credential looked at.
const MAX_CREDENTIAL: usize = 8192;

/// The principal of a request with these headers and query string, or `None` when it carries
/// no credential (placeholders like `Bearer undefined` do not count).
pub fn principal_of<'a, I>(headers: I, query: Option<&str>, h: &KeyedHasher) -> Option<Principal>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
{
    let auth = auth::classify_request(headers.clone(), query);
    principal_with(&auth, headers, query, h)
}

/// [`principal_of`] for a request already classified by [`auth::classify_request`].
pub fn principal_with<'a, I>(
    auth: &RequestAuth,
    headers: I,
    query: Option<&str>,
    h: &KeyedHasher,
) -> Option<Principal>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
{
    let mut best: Option<Principal> = None;
    let mut offer = |p: Principal| {
        if best.is_none_or(|b| p.kind < b.kind) {
            best = Some(p);
        }
    };
    for scheme in auth.schemes() {
        if !scheme.carries_credential() {
            continue;
        }
        match scheme {
            AuthScheme::Bearer { .. } => {
                if let Some(v) = header(headers.clone(), "authorization") {
                    let token = v.trim_ascii().split(|c| *c == b' ').nth(1).unwrap_or(b"");
                    offer(bearer(token, h));
                }
            }
            AuthScheme::Basic { .. } => {
                if let Some(v) = header(headers.clone(), "authorization") {
                    let cred = v.trim_ascii().split(|c| *c == b' ').nth(1).unwrap_or(b"");
                    let mut buf = [0u8; 1024];
                    if let Some(n) = b64_decode(cred, &mut buf) {
                        let user = buf[..n].split(|c| *c == b':').next().unwrap_or(b"");
                        offer(Principal {
                            kind: PrincipalKind::BasicUser,
                            hash: keyed(h, b"basic:", user),
                        });
                    }
                }
            }
            AuthScheme::ApiKeyHeader { name, .. } => {
                if let Some(v) = header(headers.clone(), name.as_str()) {
                    let v = v.trim_ascii();
                    // A bare `Authorization: <jwt>` is a bearer token.
                    if name.as_str() == "authorization" && split_jwt(v).is_some() {
                        offer(bearer(v, h));
                    } else {
                        offer(Principal {
                            kind: PrincipalKind::ApiKey,
                            hash: keyed(h, b"key:", v),
                        });
                    }
                }
            }
            AuthScheme::ApiKeyQuery { name, .. } => {
                if let Some(v) = query.and_then(|q| query_value(q, name.as_str())) {
                    offer(Principal {
                        kind: PrincipalKind::ApiKey,
                        hash: keyed(h, b"key:", v.as_bytes()),
                    });
                }
            }
            AuthScheme::SessionCookie { name, .. } => {
                let cookies = headers
                    .clone()
                    .into_iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"));
                for (_, v) in cookies {
                    if let Some(val) = cookie_value(v, name.as_str()) {
                        offer(Principal {
                            kind: PrincipalKind::Session,
                            hash: keyed(h, b"session:", val),
                        });
                    }
                }
            }
            AuthScheme::Digest | AuthScheme::Other { .. } => {}
        }
    }
    best
}

fn keyed(h: &KeyedHasher, tag: &[u8], v: &[u8]) -> u64 {
    h.hash_parts(&[tag, &v[..v.len().min(MAX_CREDENTIAL)]])
}

/// A bearer token's principal: its JWT issuer and subject when it has them, else the token.
fn bearer(token: &[u8], h: &KeyedHasher) -> Principal {
    if let Some(([_, payload, _], false)) = split_jwt(token) {
        if payload.len() <= MAX_CREDENTIAL {
            let mut buf = vec![0u8; payload.len() / 4 * 3 + 3];
            if let Some(n) = b64_decode(payload, &mut buf) {
                if let Ok(serde_json::Value::Object(c)) =
                    serde_json::from_slice::<serde_json::Value>(&buf[..n])
                {
                    let text = |k: &str| match c.get(k) {
                        Some(serde_json::Value::String(s)) => Some(s.clone()),
                        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                        _ => None,
                    };
                    if let Some(sub) = text("sub") {
                        let id = format!("{}\u{0}{sub}", text("iss").unwrap_or_default());
                        return Principal {
                            kind: PrincipalKind::JwtSubject,
                            hash: keyed(h, b"sub:", id.as_bytes()),
                        };
                    }
                }
            }
        }
    }
    Principal {
        kind: PrincipalKind::Bearer,
        hash: keyed(h, b"bearer:", token),
    }
}

fn header<'a, I>(headers: I, name: &str) -> Option<&'a [u8]>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    headers
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn query_value<'q>(q: &'q str, name: &str) -> Option<&'q str> {
    q.split(['&', ';']).find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

fn cookie_value<'v>(header: &'v [u8], name: &str) -> Option<&'v [u8]> {
    header.split(|c| *c == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|c| *c == b'=')?;
        pair[..eq]
            .trim_ascii()
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| pair[eq + 1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64url(s: &str) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, c| n << 8 | u32::from(*c)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJlMDEyMzQ1Njc4OQ",
            b64url(r#"{"alg":"HS256","typ":"JWT"}"#),
            b64url(claims)
        )
    }

    fn p(headers: &[(&str, &str)], query: Option<&str>) -> Option<Principal> {
        let h = KeyedHasher::new(&[5; 32]);
        let hs: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        principal_of(hs.iter().copied(), query, &h)
    }

    #[test]
    fn a_jwt_subject_is_the_same_principal_across_tokens() {
        let a = p(
            &[(
                "Authorization",
                &format!("Bearer {}", jwt(r#"{"sub":"u1","iss":"idp","iat":1}"#)),
            )],
            None,
        )
        .unwrap();
        let b = p(
            &[(
                "Authorization",
                &format!("Bearer {}", jwt(r#"{"sub":"u1","iss":"idp","iat":2}"#)),
            )],
            None,
        )
        .unwrap();
        let c = p(
            &[(
                "Authorization",
                &format!("Bearer {}", jwt(r#"{"sub":"u2","iss":"idp"}"#)),
            )],
            None,
        )
        .unwrap();
        assert_eq!(a.kind, PrincipalKind::JwtSubject);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn each_credential_kind_gives_a_principal_and_placeholders_none() {
        assert_eq!(
            p(&[("Authorization", "Basic YWxpY2U6czNjcmV0")], None)
                .unwrap()
                .kind,
            PrincipalKind::BasicUser
        );
        assert_eq!(
            p(
                &[("Authorization", "Bearer abcdefghijklmnopqrstuvwxyz012345")],
                None
            )
            .unwrap()
            .kind,
            PrincipalKind::Bearer
        );
        assert_eq!(
            p(&[], Some("api_key=AbCdEf0123456789XyZw")).unwrap().kind,
            PrincipalKind::ApiKey
        );
        assert_eq!(
            p(
                &[(
                    "Cookie",
                    "theme=dark; sessionid=8f14e45fceea167a5a36dedd4bea2543"
                )],
                None
            )
            .unwrap()
            .kind,
            PrincipalKind::Session
        );
        assert_eq!(p(&[("Authorization", "Bearer undefined")], None), None);
        assert_eq!(p(&[("Accept", "*/*")], None), None);
        // The most specific identity wins.
        let both = p(
            &[
                ("Authorization", "Basic YWxpY2U6czNjcmV0"),
                ("Cookie", "sessionid=8f14e45fceea167a5a36dedd4bea2543"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(both.kind, PrincipalKind::BasicUser);
    }

    #[test]
    fn the_same_user_with_another_password_is_the_same_principal() {
        // alice:s3cret and alice:other
        let a = p(&[("Authorization", "Basic YWxpY2U6czNjcmV0")], None).unwrap();
        let b = p(&[("Authorization", "Basic YWxpY2U6b3RoZXI=")], None).unwrap();
        assert_eq!(a, b);
    }
}
