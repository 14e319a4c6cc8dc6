//! Which credentials a request carries: the schemes and the names they travel under, never the
//! secrets themselves.
//!
//! [`classify_request`] reads a request's headers and query string once and answers a
//! [`RequestAuth`]: the [`AuthScheme`]s seen, in order (a request may carry several: a session
//! cookie and an API key header, say), and a [`JwtInfo`] for the JSON Web Token among them
//! (the one in `Authorization` first). Everything here is `Copy`, allocation-free apart from
//! decoding a JWT payload, and holds no secret:
//!
//! - a header, query parameter or cookie *name* is kept (bounded, printable ASCII); a value
//!   never is;
//! - of HTTP Basic, only whether the credentials had the `user:pass` shape and whether the user
//!   looked like an email address;
//! - of a JWT, its `alg` (and whether it is `none`), its `iss`uer (bounded), its `exp`.
//!
//! [`is_authenticated`] tells whether a set of schemes counts as carrying credentials (empty
//! `Bearer` tokens and placeholders such as `undefined` do not), [`AuthKinds`] accumulates the
//! kinds an endpoint has seen, and [`session_cookie_set`] reads a response's `Set-Cookie`
//! headers to spot logins (a session cookie set) and logouts (one cleared).
//!
//! ```
//! use apiscope_inventory::auth::{classify_request, AuthKind, AuthScheme, TokenKind};
//!
//! let headers: [(&str, &[u8]); 2] = [
//!     // alice@example.com:s3cr3t
//!     ("Authorization", b"Basic YWxpY2VAZXhhbXBsZS5jb206czNjcjN0"),
//!     ("Cookie", b"theme=dark; PHPSESSID=q4e9d6bfk3m1c2a8n0s7u5h2j1"),
//! ];
//! let auth = classify_request(headers, Some("page=2&api_key=Zk3q9V1xW7pL0sT2mN8b"));
//! assert!(auth.is_authenticated());
//! assert_eq!(
//!     auth.schemes()[0],
//!     AuthScheme::Basic { well_formed: true, user_is_email: true }
//! );
//! assert!(auth.kinds().contains(AuthKind::SessionCookie));
//! match auth.schemes()[2] {
//!     AuthScheme::ApiKeyQuery { name, token } => {
//!         assert_eq!(name.as_str(), "api_key");
//!         assert_eq!(token, TokenKind::Opaque);
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! // Nothing secret survives in the output.
//! let json = serde_json::to_string(&auth).unwrap();
//! assert!(!json.contains("s3cr3t") && !json.contains("Zk3q9V1x") && !json.contains("q4e9d6"));
//! ```

use std::borrow::Cow;
use std::fmt;

use serde::de::IgnoredAny;
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::value::{classify, ValueKind};

/// At most this many schemes are kept per request; more set [`RequestAuth::overflowed`].
pub const MAX_SCHEMES: usize = 4;

/// Basic credentials longer than this (decoded) are reported as not well formed.
const MAX_BASIC_DECODED: usize = 512;
/// A JWT header longer than this (base64url) is not decoded.
const MAX_JWT_HEADER_B64: usize = 1024;
/// A JWT payload longer than this (base64url) is not decoded: the token still counts as a JWT,
/// without issuer or expiry.
const MAX_JWT_PAYLOAD_B64: usize = 8192;
/// Longest value [`looks_like_token`] accepts.
const MAX_TOKEN_BYTES: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Small inline strings.

/// A short printable-ASCII string kept inline (so the types holding it stay `Copy`).
///
/// Built from arbitrary bytes: anything outside printable ASCII becomes `?`, and the text is cut
/// at `N` bytes (at most 255). Serialises as a plain string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

/// A header, query parameter, cookie or scheme name (at most 32 bytes).
pub type Name = ShortStr<32>;
/// A JWT issuer (at most 64 bytes).
pub type Issuer = ShortStr<64>;
/// A JWT algorithm name (at most 16 bytes).
pub type Alg = ShortStr<16>;

impl<const N: usize> ShortStr<N> {
    const CAP: usize = if N < 255 { N } else { 255 };

    /// `s` cut to `N` bytes, non-printable bytes replaced by `?`.
    pub fn new(s: &[u8]) -> Self {
        Self::build(s, false)
    }

    /// Like [`ShortStr::new`], ASCII-lowercased (for case-insensitive names such as headers).
    pub fn lowercase(s: &[u8]) -> Self {
        Self::build(s, true)
    }

    fn build(s: &[u8], lower: bool) -> Self {
        let mut bytes = [0u8; N];
        let n = s.len().min(Self::CAP);
        for (d, &c) in bytes.iter_mut().zip(&s[..n]) {
            *d = match c {
                b' '..=b'~' if lower => c.to_ascii_lowercase(),
                b' '..=b'~' => c,
                _ => b'?',
            };
        }
        ShortStr {
            len: u8::try_from(n).unwrap_or(u8::MAX),
            bytes,
        }
    }

    /// The text (always valid: only printable ASCII is stored).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> fmt::Debug for ShortStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for ShortStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> Serialize for ShortStr<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Output types.

/// What a credential value looked like (the value itself is never kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// An opaque token or key.
    Opaque,
    /// A JSON Web Token (its details are in [`RequestAuth::jwt`]).
    Jwt,
    /// An empty slot or a placeholder (`null`, `undefined`, `{{token}}`, fewer than 4 bytes):
    /// a client that meant to send a credential and did not.
    Placeholder,
}

/// One way a request carried (or tried to carry) credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum AuthScheme {
    /// `Authorization: Basic`. `well_formed`: the credentials decoded to `user:pass` with a
    /// non-empty user; `user_is_email`: that user looked like an email address.
    Basic {
        well_formed: bool,
        user_is_email: bool,
    },
    /// `Authorization: Bearer <token>`.
    Bearer { token: TokenKind },
    /// `Authorization: Digest`.
    Digest,
    /// Another `Authorization` scheme (`Negotiate`, `AWS4-HMAC-SHA256`, `token`, ...), by name.
    Other { name: Name },
    /// An API key or token in a header (lowercased name: `x-api-key`). A bare
    /// `Authorization: <token>` without a scheme lands here with the name `authorization`.
    ApiKeyHeader { name: Name, token: TokenKind },
    /// An API key or token in the query string, by parameter name (`api_key`).
    ApiKeyQuery { name: Name, token: TokenKind },
    /// A session cookie, by cookie name (`JSESSIONID`).
    SessionCookie { name: Name, token: TokenKind },
}

impl AuthScheme {
    /// The kind, for counting.
    pub const fn kind(&self) -> AuthKind {
        match self {
            AuthScheme::Basic { .. } => AuthKind::Basic,
            AuthScheme::Bearer {
                token: TokenKind::Jwt,
            } => AuthKind::BearerJwt,
            AuthScheme::Bearer { .. } => AuthKind::BearerOpaque,
            AuthScheme::Digest => AuthKind::Digest,
            AuthScheme::Other { .. } => AuthKind::Other,
            AuthScheme::ApiKeyHeader { .. } => AuthKind::ApiKeyHeader,
            AuthScheme::ApiKeyQuery { .. } => AuthKind::ApiKeyQuery,
            AuthScheme::SessionCookie { .. } => AuthKind::SessionCookie,
        }
    }

    /// The header, parameter, cookie or scheme name, when the scheme has one.
    pub const fn name(&self) -> Option<&Name> {
        match self {
            AuthScheme::Other { name }
            | AuthScheme::ApiKeyHeader { name, .. }
            | AuthScheme::ApiKeyQuery { name, .. }
            | AuthScheme::SessionCookie { name, .. } => Some(name),
            _ => None,
        }
    }

    /// True when this carries an actual credential: not a placeholder token, not Basic
    /// credentials that failed to decode.
    pub const fn carries_credential(&self) -> bool {
        match self {
            AuthScheme::Basic { well_formed, .. } => *well_formed,
            AuthScheme::Bearer { token }
            | AuthScheme::ApiKeyHeader { token, .. }
            | AuthScheme::ApiKeyQuery { token, .. }
            | AuthScheme::SessionCookie { token, .. } => !matches!(token, TokenKind::Placeholder),
            AuthScheme::Digest | AuthScheme::Other { .. } => true,
        }
    }
}

/// The kind of an [`AuthScheme`], without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuthKind {
    Basic,
    BearerJwt,
    BearerOpaque,
    Digest,
    Other,
    ApiKeyHeader,
    ApiKeyQuery,
    SessionCookie,
}

impl AuthKind {
    /// Every kind, in [`AuthKinds`] bit order.
    pub const ALL: [AuthKind; 8] = [
        AuthKind::Basic,
        AuthKind::BearerJwt,
        AuthKind::BearerOpaque,
        AuthKind::Digest,
        AuthKind::Other,
        AuthKind::ApiKeyHeader,
        AuthKind::ApiKeyQuery,
        AuthKind::SessionCookie,
    ];

    /// The name used in outputs (`basic`, `bearer_jwt`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthKind::Basic => "basic",
            AuthKind::BearerJwt => "bearer_jwt",
            AuthKind::BearerOpaque => "bearer_opaque",
            AuthKind::Digest => "digest",
            AuthKind::Other => "other",
            AuthKind::ApiKeyHeader => "api_key_header",
            AuthKind::ApiKeyQuery => "api_key_query",
            AuthKind::SessionCookie => "session_cookie",
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for AuthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AuthKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A set of [`AuthKind`]s (for example every kind an endpoint has seen). Serialises as a list
/// of names; an empty set means no credentials were seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AuthKinds(u16);

impl AuthKinds {
    pub const fn empty() -> Self {
        AuthKinds(0)
    }

    pub fn insert(&mut self, k: AuthKind) {
        self.0 |= k.bit();
    }

    pub const fn contains(self, k: AuthKind) -> bool {
        self.0 & k.bit() != 0
    }

    pub const fn union(self, other: AuthKinds) -> AuthKinds {
        AuthKinds(self.0 | other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = AuthKind> {
        AuthKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

impl Serialize for AuthKinds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for k in self.iter() {
            seq.serialize_element(k.as_str())?;
        }
        seq.end()
    }
}

/// What a JSON Web Token said about itself. Nothing here is secret: the signature, subject and
/// other claims are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct JwtInfo {
    /// The header's `alg` (cut to 16 bytes).
    pub alg: Alg,
    /// `alg` is `none` in any case: an unsigned token.
    pub alg_none: bool,
    /// Five parts and an `enc` header: an encrypted token (JWE), whose claims are unreadable.
    pub encrypted: bool,
    /// The `iss` claim when it is a string (cut to 64 bytes).
    pub iss: Option<Issuer>,
    /// The `exp` claim, in seconds since the epoch, when present and numeric.
    pub exp: Option<i64>,
    /// Where the token travelled.
    pub carrier: AuthKind,
}

impl JwtInfo {
    /// Whether the token carries an expiry.
    pub const fn has_exp(&self) -> bool {
        self.exp.is_some()
    }
}

/// The credentials of one request: see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestAuth {
    schemes: [AuthScheme; MAX_SCHEMES],
    len: u8,
    overflowed: bool,
    jwt: Option<JwtInfo>,
}

impl Default for RequestAuth {
    fn default() -> Self {
        RequestAuth {
            schemes: [AuthScheme::Digest; MAX_SCHEMES],
            len: 0,
            overflowed: false,
            jwt: None,
        }
    }
}

impl RequestAuth {
    /// The schemes seen, in header order then the query string; an empty slice means none.
    pub fn schemes(&self) -> &[AuthScheme] {
        &self.schemes[..usize::from(self.len)]
    }

    /// The JWT carried, if any: the one in `Authorization` when there is one, else the first.
    pub const fn jwt(&self) -> Option<&JwtInfo> {
        self.jwt.as_ref()
    }

    /// More than [`MAX_SCHEMES`] distinct schemes were seen; the extra ones were dropped.
    pub const fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kinds of the schemes seen.
    pub fn kinds(&self) -> AuthKinds {
        let mut k = AuthKinds::empty();
        for s in self.schemes() {
            k.insert(s.kind());
        }
        k
    }

    /// See [`is_authenticated`].
    pub fn is_authenticated(&self) -> bool {
        is_authenticated(self.schemes())
    }

    fn push(&mut self, s: AuthScheme) {
        if self.schemes().contains(&s) {
            return;
        }
        match self.schemes.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = s;
                self.len += 1;
            }
            None => self.overflowed = true,
        }
    }

    fn offer_jwt(&mut self, info: JwtInfo) {
        let from_authorization = matches!(info.carrier, AuthKind::BearerJwt);
        match self.jwt {
            None => self.jwt = Some(info),
            Some(old) if from_authorization && old.carrier != AuthKind::BearerJwt => {
                self.jwt = Some(info);
            }
            Some(_) => {}
        }
    }
}

impl Serialize for RequestAuth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("RequestAuth", 3)?;
        st.serialize_field("schemes", self.schemes())?;
        st.serialize_field("jwt", &self.jwt)?;
        st.serialize_field("overflowed", &self.overflowed)?;
        st.end()
    }
}

/// Whether a request with these schemes counts as authenticated: at least one of them
/// [carries a credential](AuthScheme::carries_credential). A `Bearer undefined` alone does not.
pub fn is_authenticated(schemes: &[AuthScheme]) -> bool {
    schemes.iter().any(AuthScheme::carries_credential)
}

// ---------------------------------------------------------------------------------------------
// Request side.

/// Classify the credentials of one request.
///
/// `headers` are `(name, value)` pairs, names in any case; `query` is the raw (percent-encoded)
/// query string without the `?`. Looks at `Authorization`, `Cookie`, API-key-like headers and
/// query parameters; `Proxy-Authorization` (credentials for a proxy, not the API) is ignored.
/// Never fails and never panics: what cannot be understood is left out or reported as
/// [`TokenKind::Placeholder`] / `well_formed: false`.
pub fn classify_request<'a, I>(headers: I, query: Option<&str>) -> RequestAuth
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut out = RequestAuth::default();
    for (name, value) in headers {
        let mut buf = [0u8; 64];
        let Some(lname) = lower_into(name.as_bytes(), &mut buf) else {
            continue;
        };
        match lname {
            b"authorization" => authorization(value, &mut out),
            b"cookie" => cookies(value, &mut out),
            b"proxy-authorization" => {}
            _ => api_key_header(lname, value, &mut out),
        }
    }
    if let Some(q) = query {
        query_keys(q.as_bytes(), &mut out);
    }
    out
}

fn authorization(value: &[u8], out: &mut RequestAuth) {
    let v = value.trim_ascii();
    if v.is_empty() {
        return;
    }
    let (scheme, rest) = match v.iter().position(|c| *c == b' ' || *c == b'\t') {
        Some(i) => (&v[..i], v[i..].trim_ascii()),
        None => (v, &v[v.len()..]),
    };
    let credential = &rest[..rest
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(rest.len())];
    if scheme.eq_ignore_ascii_case(b"bearer") {
        let token = if is_placeholder(rest) {
            TokenKind::Placeholder // `Bearer [object Object]`
        } else {
            token_kind(credential, AuthKind::BearerJwt, out)
        };
        out.push(AuthScheme::Bearer { token });
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        out.push(basic(credential));
    } else if scheme.eq_ignore_ascii_case(b"digest") {
        out.push(AuthScheme::Digest);
    } else if !rest.is_empty() && is_scheme_name(scheme) {
        out.push(AuthScheme::Other {
            name: Name::new(scheme),
        });
    } else if let Some(info) = parse_jwt(scheme, AuthKind::BearerJwt) {
        // A bare JWT without a scheme (`Authorization: eyJ…`).
        out.offer_jwt(info);
        out.push(AuthScheme::Bearer {
            token: TokenKind::Jwt,
        });
    } else {
        // A bare credential (`Authorization: <key>`), or a first word that could be one: never
        // kept as a scheme name.
        let token = if is_placeholder(v) {
            TokenKind::Placeholder
        } else {
            TokenKind::Opaque
        };
        out.push(AuthScheme::ApiKeyHeader {
            name: Name::new(b"authorization"),
            token,
        });
    }
}

/// Whether the first word of an `Authorization` value can be kept as a scheme name: at most
/// 32 bytes of `[A-Za-z0-9._-]` that do not look like a token themselves (`Negotiate`,
/// `AWS4-HMAC-SHA256`, `SSWS`, `token`; not `sk_live_4eC39HqLy…`).
fn is_scheme_name(s: &[u8]) -> bool {
    s.len() <= 32
        && s.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && !looks_like_token(s, 8)
}

fn basic(cred: &[u8]) -> AuthScheme {
    let bad = AuthScheme::Basic {
        well_formed: false,
        user_is_email: false,
    };
    let mut buf = [0u8; MAX_BASIC_DECODED];
    let Some(n) = b64_decode(cred, &mut buf) else {
        return bad;
    };
    let d = &buf[..n];
    let Some(colon) = d.iter().position(|&c| c == b':') else {
        return bad;
    };
    let user = &d[..colon];
    let well_formed =
        !user.is_empty() && !d.iter().any(u8::is_ascii_control) && std::str::from_utf8(d).is_ok();
    let user_is_email =
        well_formed && std::str::from_utf8(user).is_ok_and(|u| classify(u) == ValueKind::Email);
    AuthScheme::Basic {
        well_formed,
        user_is_email,
    }
}

/// Header names that carry an API key or token whatever the value looks like (lowercase).
const API_KEY_HEADERS: &[&[u8]] = &[
    b"x-api-key",
    b"api-key",
    b"apikey",
    b"x-apikey",
    b"x-api-token",
    b"api-token",
    b"x-auth-token",
    b"x-access-token",
    b"x-token",
    b"x-auth-key",
    b"x-authorization",
    b"x-session-token",
    b"x-user-token",
    b"x-app-key",
    b"x-app-token",
    b"x-client-secret",
    b"x-functions-key",
    b"ocp-apim-subscription-key",
    b"x-goog-api-key",
    b"x-amz-security-token",
    b"x-rapidapi-key",
    b"private-token",
    b"x-gitlab-token",
    b"x-jwt",
];

/// Query parameter names that carry an API key or token (lowercase).
const API_KEY_PARAMS: &[&[u8]] = &[
    b"api_key",
    b"apikey",
    b"api-key",
    b"key",
    b"access_token",
    b"accesstoken",
    b"token",
    b"auth_token",
    b"authtoken",
    b"auth",
    b"api_token",
    b"apitoken",
    b"client_secret",
    b"secret",
    b"access_key",
    b"accesskey",
    b"private_token",
    b"subscription-key",
    b"x-api-key",
    b"jwt",
    b"id_token",
    b"session_token",
];

/// Fragments of names that are *not* credentials even though they say token or key.
const NOT_CREDENTIAL_NAMES: &[&[u8]] = &[
    b"csrf",
    b"xsrf",
    b"idempotency",
    b"sec-websocket",
    b"request",
    b"trace",
    b"correlation",
    b"continuation",
    b"page",
    b"cursor",
    b"next",
    b"nonce",
    b"cache",
    b"captcha",
    b"sync",
    b"public",
    b"sort",
    b"partition",
    b"keyword",
];

/// Whether a lowercased header or parameter name suggests a key or token.
fn name_suggests_credential(lname: &[u8]) -> bool {
    if NOT_CREDENTIAL_NAMES.iter().any(|n| contains(lname, n)) {
        return false;
    }
    if [&b"token"[..], b"secret", b"apikey", b"api-key", b"api_key"]
        .iter()
        .any(|n| contains(lname, n))
    {
        return true;
    }
    lname
        .split(|c| *c == b'-' || *c == b'_' || *c == b'.')
        .any(|seg| {
            seg == b"key"
                || [
                    &b"appkey"[..],
                    b"authkey",
                    b"accesskey",
                    b"secretkey",
                    b"clientkey",
                ]
                .iter()
                .any(|k| seg.ends_with(k))
        })
}

/// A cheap first test, true for every curated name and every name
/// [`name_suggests_credential`] can accept: most headers (`accept`, `user-agent`, ...) stop
/// here, which matters since this runs on every header of every request.
fn may_name_credential(lname: &[u8]) -> bool {
    [&b"key"[..], b"token", b"secret", b"auth", b"jwt"]
        .iter()
        .any(|n| contains(lname, n))
}

fn api_key_header(lname: &[u8], value: &[u8], out: &mut RequestAuth) {
    if !may_name_credential(lname) {
        return;
    }
    let curated = API_KEY_HEADERS.contains(&lname);
    if !curated && !name_suggests_credential(lname) {
        return;
    }
    let v = value.trim_ascii();
    let token = if curated {
        token_kind(v, AuthKind::ApiKeyHeader, out)
    } else if let Some(info) = parse_jwt(v, AuthKind::ApiKeyHeader) {
        out.offer_jwt(info);
        TokenKind::Jwt
    } else if looks_like_token(v, 16) {
        TokenKind::Opaque
    } else {
        return;
    };
    out.push(AuthScheme::ApiKeyHeader {
        name: Name::new(lname),
        token,
    });
}

fn query_keys(q: &[u8], out: &mut RequestAuth) {
    for pair in q.split(|c| *c == b'&' || *c == b';') {
        let Some(eq) = pair.iter().position(|c| *c == b'=') else {
            continue;
        };
        let (raw_name, raw_value) = (&pair[..eq], &pair[eq + 1..]);
        let mut nb = [0u8; 64];
        let Some(name) = percent_decode_into(raw_name, true, &mut nb) else {
            continue;
        };
        let mut lb = [0u8; 64];
        let Some(lname) = lower_into(name, &mut lb) else {
            continue;
        };
        let curated = API_KEY_PARAMS.contains(&lname);
        if !curated && !name_suggests_credential(lname) {
            continue;
        }
        let token = if let Some(info) = parse_jwt(raw_value, AuthKind::ApiKeyQuery) {
            out.offer_jwt(info);
            TokenKind::Jwt
        } else if looks_like_token(raw_value, if curated { 10 } else { 16 }) {
            TokenKind::Opaque
        } else {
            continue;
        };
        out.push(AuthScheme::ApiKeyQuery {
            name: Name::new(name),
            token,
        });
    }
}

fn cookies(value: &[u8], out: &mut RequestAuth) {
    for pair in value.split(|c| *c == b';') {
        let Some((name, val)) = cookie_pair(pair) else {
            continue;
        };
        if is_session_cookie_name(name) && nontrivial_cookie(val) {
            let token = token_kind(val, AuthKind::SessionCookie, out);
            out.push(AuthScheme::SessionCookie {
                name: Name::new(name),
                token,
            });
        }
    }
}

/// `name=value` with spaces and value quotes trimmed.
fn cookie_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let pair = pair.trim_ascii();
    let eq = pair.iter().position(|c| *c == b'=')?;
    let name = pair[..eq].trim_ascii();
    let mut val = pair[eq + 1..].trim_ascii();
    if val.len() >= 2 && val[0] == b'"' && val[val.len() - 1] == b'"' {
        val = &val[1..val.len() - 1];
    }
    (!name.is_empty()).then_some((name, val))
}

/// Whether a cookie name looks like a session or authentication cookie.
pub fn is_session_cookie_name(name: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    let Some(mut n) = lower_into(name, &mut buf) else {
        return false;
    };
    for prefix in [&b"__host-"[..], b"__secure-"] {
        if let Some(rest) = n.strip_prefix(prefix) {
            n = rest;
        }
    }
    if contains(n, b"csrf") || contains(n, b"xsrf") {
        return false;
    }
    const EXACT: &[&[u8]] = &[
        b"sid",
        b"sess",
        b"connect.sid",
        b"asp.net_sessionid",
        b".aspnetcore.session",
        b".aspxauth",
        b".aspnetcore.cookies",
        b"access_token",
        b"auth_token",
        b"authtoken",
        b"id_token",
        b"jwt",
        b"token",
        b"auth",
    ];
    const SUFFIX: &[&[u8]] = &[
        b"session",
        b"sessionid",
        b"session_id",
        b"session-id",
        b"sessid",
        b"_sess",
        b"_sid",
        b".sid",
        b"-sid",
        b"session_token",
        b"sessiontoken",
        b"auth_token",
        b"access_token",
    ];
    EXACT.contains(&n)
        || n.starts_with(b"session")
        || n.starts_with(b"aspsessionid")
        || SUFFIX.iter().any(|s| n.ends_with(s))
}

/// A cookie value that can hold a session: at least 8 bytes, not a placeholder or `deleted`.
fn nontrivial_cookie(v: &[u8]) -> bool {
    v.len() >= 8 && !is_placeholder(v) && !v.eq_ignore_ascii_case(b"deleted")
}

fn token_kind(v: &[u8], carrier: AuthKind, out: &mut RequestAuth) -> TokenKind {
    if is_placeholder(v) {
        TokenKind::Placeholder
    } else if let Some(info) = parse_jwt(v, carrier) {
        out.offer_jwt(info);
        TokenKind::Jwt
    } else {
        TokenKind::Opaque
    }
}

/// Empty, shorter than 4 bytes, one repeated byte, a well-known non-value (`null`,
/// `undefined`, `[object Object]`, ...) or a template left unfilled (`{{token}}`, `<token>`,
/// `${TOKEN}`).
fn is_placeholder(v: &[u8]) -> bool {
    const WORDS: &[&[u8]] = &[
        b"null",
        b"undefined",
        b"none",
        b"nil",
        b"false",
        b"true",
        b"bearer",
        b"token",
        b"[object object]",
        b"your_api_key",
        b"your-api-key",
        b"changeme",
    ];
    if v.len() < 4 || v.iter().all(|c| *c == v[0]) {
        return true;
    }
    if WORDS.iter().any(|w| v.eq_ignore_ascii_case(w)) {
        return true;
    }
    let (first, last) = (v[0], v[v.len() - 1]);
    matches!(first, b'{' | b'<' | b'$' | b'[' | b'%') && matches!(last, b'}' | b'>' | b']' | b'%')
}

/// Whether `v` (raw, possibly percent-encoded) looks like a generated token: `min_len` to 4096
/// characters of `[A-Za-z0-9-._~+/=:]` (a `%XX` escape counts as one character and must decode
/// to one of those), with a digit, a letter and a run of at least 8 alphanumerics, and not a
/// date, time, number, IP address or email.
pub(crate) fn looks_like_token(v: &[u8], min_len: usize) -> bool {
    if v.len() < min_len || v.len() > MAX_TOKEN_BYTES * 3 {
        return false;
    }
    let (mut len, mut digits, mut letters, mut run, mut longest) = (0usize, 0usize, 0usize, 0, 0);
    let mut i = 0;
    while i < v.len() {
        let mut c = v[i];
        i += 1;
        if c == b'%' {
            match (
                v.get(i).and_then(|h| hex_val(*h)),
                v.get(i + 1).and_then(|h| hex_val(*h)),
            ) {
                (Some(h), Some(l)) => {
                    c = h << 4 | l;
                    i += 2;
                    if c.is_ascii_alphanumeric() {
                        return false; // nobody escapes letters in a token
                    }
                }
                _ => return false,
            }
        }
        len += 1;
        if c.is_ascii_digit() {
            digits += 1;
            run += 1;
        } else if c.is_ascii_alphabetic() {
            letters += 1;
            run += 1;
        } else if b"-._~+/=:".contains(&c) {
            run = 0;
        } else {
            return false;
        }
        longest = longest.max(run);
    }
    if len < min_len || len > MAX_TOKEN_BYTES || digits == 0 || letters == 0 || longest < 8 {
        return false;
    }
    let Ok(s) = std::str::from_utf8(v) else {
        return false;
    };
    !matches!(
        classify(s),
        ValueKind::Date
            | ValueKind::DateTime
            | ValueKind::Number
            | ValueKind::Integer
            | ValueKind::Ipv4
            | ValueKind::Email
    )
}

// ---------------------------------------------------------------------------------------------
// Response side.

/// A session cookie set (or cleared) by a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SessionCookieSet {
    /// The cookie name.
    pub name: Name,
    /// The cookie was cleared (empty or `deleted` value, `Max-Age` of zero or less, or an
    /// `Expires` in 1970): a logout rather than a login.
    pub cleared: bool,
}

/// The session cookie a response sets, from its `Set-Cookie` headers (names in any case).
///
/// A response that sets a session cookie is typically a login endpoint; one that clears it, a
/// logout. When both happen, the one set wins; `None` when no session-like cookie is touched.
pub fn session_cookie_set<'a, I>(headers: I) -> Option<SessionCookieSet>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut cleared = None;
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("set-cookie") {
            continue;
        }
        let mut parts = value.split(|c| *c == b';');
        let Some((cname, cval)) = parts.next().and_then(cookie_pair) else {
            continue;
        };
        if !is_session_cookie_name(cname) {
            continue;
        }
        let expired = parts.any(|attr| {
            let attr = attr.trim_ascii();
            match attr.iter().position(|c| *c == b'=') {
                Some(eq) if attr[..eq].trim_ascii().eq_ignore_ascii_case(b"max-age") => {
                    let v = attr[eq + 1..].trim_ascii();
                    v.starts_with(b"-") || (!v.is_empty() && v.iter().all(|c| *c == b'0'))
                }
                Some(eq) if attr[..eq].trim_ascii().eq_ignore_ascii_case(b"expires") => {
                    contains(&attr[eq + 1..], b"1970")
                }
                _ => false,
            }
        });
        let name = Name::new(cname);
        if !expired && nontrivial_cookie(cval) {
            return Some(SessionCookieSet {
                name,
                cleared: false,
            });
        }
        if cleared.is_none()
            && (expired
                || cval.is_empty()
                || is_placeholder(cval)
                || cval.eq_ignore_ascii_case(b"deleted"))
        {
            cleared = Some(SessionCookieSet {
                name,
                cleared: true,
            });
        }
    }
    cleared
}

// ---------------------------------------------------------------------------------------------
// JWT, base64 and percent decoding (shared with `sensitive`).

#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default)]
    enc: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    iss: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
}

/// The parts of a compact JWS (3 parts) or JWE (5 parts): every part base64url, the first two
/// non-empty.
pub(crate) fn split_jwt(t: &[u8]) -> Option<([&[u8]; 3], bool)> {
    if t.len() > MAX_TOKEN_BYTES * 4 {
        return None;
    }
    let mut parts = [&t[..0]; 5];
    let mut n = 0;
    for p in t.split(|c| *c == b'.') {
        *parts.get_mut(n)? = p;
        n += 1;
    }
    let b64url = |p: &[u8]| {
        p.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
    };
    if !(n == 3 || n == 5)
        || parts[0].is_empty()
        || parts[1].is_empty()
        || !parts[..n].iter().all(|p| b64url(p))
    {
        return None;
    }
    Some(([parts[0], parts[1], parts[2]], n == 5))
}

/// The `alg` of a JWT header (base64url) and whether it has `enc`, or `None` when it does not
/// decode to a JSON object with a string `alg`.
pub(crate) fn jwt_header(header_b64: &[u8]) -> Option<(Alg, bool)> {
    if header_b64.len() > MAX_JWT_HEADER_B64 {
        return None;
    }
    let mut buf = [0u8; MAX_JWT_HEADER_B64];
    let n = b64_decode(header_b64, &mut buf)?;
    let json = buf[..n].trim_ascii_start();
    if json.first() != Some(&b'{') {
        return None;
    }
    let h: RawHeader<'_> = serde_json::from_slice(json).ok()?;
    Some((Alg::new(h.alg.as_bytes()), h.enc.is_some()))
}

/// A JWT's self-description, or `None` when `token` is not a JWT.
fn parse_jwt(token: &[u8], carrier: AuthKind) -> Option<JwtInfo> {
    let ([header, payload, _sig], five) = split_jwt(token)?;
    let (alg, enc) = jwt_header(header)?;
    let encrypted = five && enc;
    if five && !enc {
        return None;
    }
    let mut info = JwtInfo {
        alg,
        alg_none: alg.as_str().eq_ignore_ascii_case("none"),
        encrypted,
        iss: None,
        exp: None,
        carrier,
    };
    if !encrypted && payload.len() <= MAX_JWT_PAYLOAD_B64 {
        let mut buf = vec![0u8; payload.len() / 4 * 3 + 3];
        if let Some(n) = b64_decode(payload, &mut buf) {
            if let Ok(c) = serde_json::from_slice::<RawClaims>(&buf[..n]) {
                info.iss = match c.iss {
                    Some(Value::String(s)) => Some(Issuer::new(s.as_bytes())),
                    _ => None,
                };
                info.exp = match c.exp {
                    Some(Value::Number(n)) => n.as_i64().or_else(|| {
                        n.as_f64()
                            .filter(|f| f.is_finite())
                            // Saturating float-to-int conversion: fractional expiries happen.
                            .map(|f| f as i64)
                    }),
                    _ => None,
                };
            }
        }
    }
    Some(info)
}

const B64_INVALID: u8 = 0xff;

/// Both base64 alphabets at once: `+`/`-` are 62, `/`/`_` are 63.
const B64: [u8; 256] = {
    let mut t = [B64_INVALID; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'-' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'_' as usize] = 63;
    t
};

/// Decode base64 (standard or URL-safe alphabet, `=` padding optional) into `out`; `None` on
/// an invalid character or length, or when `out` is too small.
pub(crate) fn b64_decode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut data = input;
    while let [rest @ .., b'='] = data {
        data = rest;
    }
    if input.len() - data.len() > 2 || data.len() % 4 == 1 {
        return None;
    }
    let (mut acc, mut bits, mut n) = (0u32, 0u32, 0usize);
    for &c in data {
        let v = B64[usize::from(c)];
        if v == B64_INVALID {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    Some(n)
}

pub(crate) const fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode `raw` (and `+` as space when `plus_is_space`, as forms do) into `buf`;
/// `None` when it does not fit. A `%` not followed by two hex digits is kept as is.
pub(crate) fn percent_decode_into<'b>(
    raw: &[u8],
    plus_is_space: bool,
    buf: &'b mut [u8],
) -> Option<&'b [u8]> {
    let (mut i, mut n) = (0, 0);
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
        *buf.get_mut(n)? = c;
        n += 1;
    }
    Some(&buf[..n])
}

/// ASCII-lowercase `s` into `buf`; `None` when it is longer than the buffer.
fn lower_into<'b, const N: usize>(s: &[u8], buf: &'b mut [u8; N]) -> Option<&'b [u8]> {
    let dst = buf.get_mut(..s.len())?;
    for (d, c) in dst.iter_mut().zip(s) {
        *d = c.to_ascii_lowercase();
    }
    Some(dst)
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_prefilter_lets_every_credential_name_through() {
        for n in API_KEY_HEADERS {
            assert!(may_name_credential(n), "{}", String::from_utf8_lossy(n));
        }
        for n in [
            &b"x-my-service-key"[..],
            b"x-secret-thing",
            b"apikey2",
            b"x-client-accesskey",
        ] {
            assert!(!name_suggests_credential(n) || may_name_credential(n));
        }
        assert!(!may_name_credential(b"user-agent"));
        assert!(!may_name_credential(b"accept-encoding"));
    }

    fn req(headers: &[(&str, &str)], query: Option<&str>) -> RequestAuth {
        classify_request(headers.iter().map(|(n, v)| (*n, v.as_bytes())), query)
    }

    fn b64(s: &str) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |a, c| a << 8 | u32::from(*c)) << (8 * (3 - chunk.len()));
            for k in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            }
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
        out
    }

    fn b64url(s: &str) -> String {
        b64(s)
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    }

    fn jwt(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJlLWJ5dGVz",
            b64url(header),
            b64url(payload)
        )
    }

    #[test]
    fn base64_round_trips_both_alphabets() {
        let mut buf = [0u8; 64];
        for s in [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "\u{ff}\u{fe}?>",
            "hello world!",
        ] {
            let n = b64_decode(b64(s).as_bytes(), &mut buf).unwrap();
            assert_eq!(&buf[..n], s.as_bytes(), "{s:?}");
            let n = b64_decode(b64url(s).as_bytes(), &mut buf).unwrap();
            assert_eq!(&buf[..n], s.as_bytes(), "{s:?}");
        }
        assert_eq!(b64_decode(b"abcde", &mut buf), None);
        assert_eq!(b64_decode(b"ab*d", &mut buf), None);
        assert_eq!(b64_decode(b"ab===", &mut buf), None);
        assert_eq!(b64_decode(b"aGVsbG8gd29ybGQ=", &mut [0u8; 4]), None);
    }

    #[test]
    fn basic_keeps_shape_not_credentials() {
        let a = req(
            &[("authorization", &format!("Basic {}", b64("bob:hunter2")))],
            None,
        );
        assert_eq!(
            a.schemes(),
            [AuthScheme::Basic {
                well_formed: true,
                user_is_email: false
            }]
        );
        assert!(a.is_authenticated());
        let a = req(
            &[(
                "AUTHORIZATION",
                &format!("basic {}", b64("bob@corp.example.com:x")),
            )],
            None,
        );
        assert_eq!(
            a.schemes(),
            [AuthScheme::Basic {
                well_formed: true,
                user_is_email: true
            }]
        );
        let json = serde_json::to_string(&a).unwrap();
        assert!(!json.contains("bob"), "{json}");
    }

    #[test]
    fn basic_that_does_not_decode_to_user_pass_is_not_well_formed() {
        for cred in [
            b64("no-colon-here"),
            b64(":emptyuser"),
            "!!!notbase64".into(),
            String::new(),
        ] {
            let a = req(&[("Authorization", &format!("Basic {cred}"))], None);
            assert!(
                matches!(
                    a.schemes(),
                    [AuthScheme::Basic {
                        well_formed: false,
                        ..
                    }]
                ),
                "{cred:?}: {a:?}"
            );
            assert!(!a.is_authenticated());
        }
        let long = "a".repeat(2000);
        let a = req(
            &[(
                "Authorization",
                &format!("Basic {}", b64(&format!("u:{long}"))),
            )],
            None,
        );
        assert!(!a.is_authenticated());
    }

    #[test]
    fn bearer_jwt_keeps_alg_issuer_and_expiry() {
        let t = jwt(
            r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#,
            r#"{"iss":"https://login.example.com/","sub":"user-42","exp":1900000000}"#,
        );
        let a = req(&[("Authorization", &format!("Bearer {t}"))], None);
        assert_eq!(
            a.schemes(),
            [AuthScheme::Bearer {
                token: TokenKind::Jwt
            }]
        );
        assert_eq!(a.kinds().iter().collect::<Vec<_>>(), [AuthKind::BearerJwt]);
        let j = a.jwt().unwrap();
        assert_eq!(j.alg.as_str(), "RS256");
        assert!(!j.alg_none && !j.encrypted && j.has_exp());
        assert_eq!(j.exp, Some(1_900_000_000));
        assert_eq!(j.iss.unwrap().as_str(), "https://login.example.com/");
        assert_eq!(j.carrier, AuthKind::BearerJwt);
        let json = serde_json::to_string(&a).unwrap();
        assert!(!json.contains("user-42"), "{json}");
    }

    #[test]
    fn jwt_alg_none_is_flagged_in_any_case() {
        for alg in ["none", "None", "NONE"] {
            let t = format!(
                "{}.{}.",
                b64url(&format!(r#"{{"alg":"{alg}"}}"#)),
                b64url(r#"{"sub":"x"}"#)
            );
            let a = req(&[("Authorization", &format!("Bearer {t}"))], None);
            let j = a.jwt().unwrap();
            assert!(j.alg_none, "{alg}");
            assert!(!j.has_exp());
        }
    }

    #[test]
    fn jwt_issuer_is_bounded_and_odd_claims_do_not_break_it() {
        let long_iss = format!("https://{}.example.com/", "x".repeat(300));
        let t = jwt(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"iss":"{long_iss}","exp":"soon"}}"#),
        );
        let a = req(&[("authorization", &format!("Bearer {t}"))], None);
        let j = a.jwt().unwrap();
        assert_eq!(j.iss.unwrap().as_str().len(), 64);
        assert_eq!(j.exp, None);
        let t = jwt(r#"{"alg":"HS256"}"#, r#"{"iss":7,"exp":1.9e9}"#);
        let j = *req(&[("authorization", &format!("Bearer {t}"))], None)
            .jwt()
            .unwrap();
        assert_eq!((j.iss, j.exp), (None, Some(1_900_000_000)));
        // A payload that is not JSON: still a JWT, nothing more known.
        let t = format!(
            "{}.{}.sig",
            b64url(r#"{"alg":"HS256"}"#),
            b64url("not json")
        );
        let a = req(&[("authorization", &format!("Bearer {t}"))], None);
        assert_eq!(
            a.schemes(),
            [AuthScheme::Bearer {
                token: TokenKind::Jwt
            }]
        );
    }

    #[test]
    fn encrypted_jwt_is_recognised_without_claims() {
        let t = format!(
            "{}.ZW5jcnlwdGVka2V5.aXY.Y2lwaGVydGV4dA.dGFn",
            b64url(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)
        );
        let a = req(&[("authorization", &format!("Bearer {t}"))], None);
        let j = a.jwt().unwrap();
        assert!(j.encrypted);
        assert_eq!(j.alg.as_str(), "RSA-OAEP");
    }

    #[test]
    fn bearer_lookalikes_are_opaque_not_jwt() {
        let not_jwts = [
            "abc.def.ghi".to_owned(),
            format!("{}.{}.sig", b64url(r#"{"typ":"JWT"}"#), b64url("{}")), // no alg
            format!("{}.{}.sig", b64url(r#"["HS256"]"#), b64url("{}")),     // not an object
            format!("{}.{}", b64url(r#"{"alg":"HS256"}"#), b64url("{}")),   // two parts
            "dGhpcyBpcyBqdXN0IHJhbmRvbSBiYXNlNjQgdGV4dA==".to_owned(),
        ];
        for t in not_jwts {
            let a = req(&[("Authorization", &format!("Bearer {t}"))], None);
            assert_eq!(
                a.schemes(),
                [AuthScheme::Bearer {
                    token: TokenKind::Opaque
                }],
                "{t}"
            );
            assert!(a.jwt().is_none());
            assert!(a.is_authenticated());
        }
    }

    #[test]
    fn bearer_placeholders_do_not_count_as_authenticated() {
        for t in [
            "",
            "undefined",
            "null",
            "[object Object]",
            "{{token}}",
            "${TOKEN}",
            "<token>",
            "abc",
        ] {
            let a = req(&[("Authorization", &format!("Bearer {t}"))], None);
            assert_eq!(
                a.schemes(),
                [AuthScheme::Bearer {
                    token: TokenKind::Placeholder
                }],
                "{t:?}"
            );
            assert!(!a.is_authenticated(), "{t:?}");
        }
    }

    #[test]
    fn digest_and_other_schemes_by_name() {
        let a = req(
            &[(
                "Authorization",
                r#"Digest username="u", realm="r", nonce="n""#,
            )],
            None,
        );
        assert_eq!(a.schemes(), [AuthScheme::Digest]);
        let a = req(
            &[(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1",
            )],
            None,
        );
        assert_eq!(a.schemes()[0].name().unwrap().as_str(), "AWS4-HMAC-SHA256");
        assert_eq!(a.schemes()[0].kind(), AuthKind::Other);
        let a = req(
            &[("Authorization", &format!("Negotiate {}", "Y".repeat(100)))],
            None,
        );
        assert_eq!(a.schemes()[0].name().unwrap().as_str(), "Negotiate");
        let a = req(
            &[(
                "Authorization",
                "token ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            )],
            None,
        );
        assert_eq!(a.schemes()[0].name().unwrap().as_str(), "token");
    }

    #[test]
    fn a_secret_in_the_scheme_position_is_never_kept_as_a_name() {
        let long = format!("{} x", "S".repeat(100));
        for v in [
            "hunter2",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc extra",
            "9f8e7d6c5b4a3928 1706f5e4d3c2b1a0",
            long.as_str(),
            "pa$$word more",
        ] {
            let a = req(&[("Authorization", v)], None);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(a.schemes().len(), 1, "{v}");
            assert_eq!(a.schemes()[0].kind(), AuthKind::ApiKeyHeader, "{v}");
            let secret = v.split(' ').next().unwrap();
            assert!(!json.contains(secret), "{v}: {json}");
        }
        let a = req(&[("Authorization", "undefined")], None);
        assert!(!a.is_authenticated());
    }

    #[test]
    fn bare_authorization_token_without_scheme() {
        let a = req(
            &[("Authorization", "sk_live_4eC39HqLyjWDarjtT1zdp7dc")],
            None,
        );
        assert_eq!(
            a.schemes(),
            [AuthScheme::ApiKeyHeader {
                name: Name::new(b"authorization"),
                token: TokenKind::Opaque
            }]
        );
        let t = jwt(r#"{"alg":"HS256"}"#, r#"{"exp":1}"#);
        let a = req(&[("Authorization", &t)], None);
        assert_eq!(
            a.schemes(),
            [AuthScheme::Bearer {
                token: TokenKind::Jwt
            }]
        );
    }

    #[test]
    fn api_key_headers_curated_and_heuristic() {
        let key = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
        for h in [
            "X-API-Key",
            "Api-Key",
            "x-auth-token",
            "apikey",
            "X-Access-Token",
            "X-Goog-Api-Key",
        ] {
            let a = req(&[(h, key)], None);
            assert_eq!(
                a.schemes(),
                [AuthScheme::ApiKeyHeader {
                    name: Name::lowercase(h.as_bytes()),
                    token: TokenKind::Opaque
                }],
                "{h}"
            );
        }
        for h in [
            "X-Partner-Token",
            "X-Client-Secret-Value",
            "X-Vendor-ApiKey",
            "X-Org-Key",
        ] {
            let a = req(&[(h, key)], None);
            assert_eq!(a.schemes().len(), 1, "{h}");
            assert_eq!(a.schemes()[0].kind(), AuthKind::ApiKeyHeader);
        }
        // Curated names count even with a short key; an empty one is a placeholder.
        let a = req(&[("X-API-Key", "demo1234")], None);
        assert!(a.is_authenticated());
        let a = req(&[("X-API-Key", "")], None);
        assert!(!a.is_authenticated());
        assert_eq!(a.schemes().len(), 1);
    }

    #[test]
    fn header_lookalikes_are_not_api_keys() {
        let uuid = "123e4567-e89b-12d3-a456-426614174000";
        let cases = [
            ("X-CSRF-Token", uuid),
            ("X-XSRF-TOKEN", uuid),
            ("Idempotency-Key", uuid),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("X-Request-Id", uuid),
            ("X-Next-Page-Token", "CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA0"),
            ("X-Partner-Token", "yes"),
            ("X-Partner-Token", "2024-01-05T10:20:30Z"),
            ("X-Monkey", uuid),
            ("Content-Type", "application/json"),
            ("Keep-Alive", "timeout=5"),
        ];
        for (h, v) in cases {
            let a = req(&[(h, v)], None);
            assert!(a.is_empty(), "{h}: {v}: {a:?}");
        }
    }

    #[test]
    fn api_keys_in_the_query() {
        let a = req(&[], Some("q=shoes&api_key=Zk3q9V1xW7pL0sT2mN8b&page=2"));
        assert_eq!(
            a.schemes(),
            [AuthScheme::ApiKeyQuery {
                name: Name::new(b"api_key"),
                token: TokenKind::Opaque
            }]
        );
        let a = req(&[], Some("key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"));
        assert_eq!(a.schemes()[0].name().unwrap().as_str(), "key");
        // Percent-encoded name and value.
        let a = req(
            &[],
            Some("access%5Ftoken=abcd1234%2Befgh5678%2Fijkl9012%3D"),
        );
        assert_eq!(a.schemes()[0].name().unwrap().as_str(), "access_token");
        // A JWT in the query.
        let t = jwt(r#"{"alg":"HS512"}"#, r#"{"iss":"me"}"#);
        let a = req(&[], Some(&format!("access_token={t}")));
        assert_eq!(
            a.schemes(),
            [AuthScheme::ApiKeyQuery {
                name: Name::new(b"access_token"),
                token: TokenKind::Jwt
            }]
        );
        assert_eq!(a.jwt().unwrap().carrier, AuthKind::ApiKeyQuery);
    }

    #[test]
    fn query_lookalikes_are_not_api_keys() {
        for q in [
            "key=value",
            "key=shoes",
            "token=",
            "sort_key=created_at",
            "keyword=r2d2c3po1234567890",
            "pageToken=CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA0",
            "id=123e4567-e89b-12d3-a456-426614174000",
            "token=12345678901234",
            "key=2024-01-05",
            "api_key",
            "&&==&",
        ] {
            let a = req(&[], Some(q));
            assert!(a.is_empty(), "{q}: {a:?}");
        }
    }

    #[test]
    fn session_cookies_by_name() {
        for (cookie, name) in [
            ("JSESSIONID=0A1B2C3D4E5F60718293A4B5C6D7E8F9", "JSESSIONID"),
            ("PHPSESSID=q4e9d6bfk3m1c2a8n0s7u5h2j1", "PHPSESSID"),
            ("connect.sid=s%3AaBcDeFgHiJkLmNoP.qRsTuVwXyZ", "connect.sid"),
            (
                "ASP.NET_SessionId=abcdefghijklmnopqrstuvwx",
                "ASP.NET_SessionId",
            ),
            ("_myapp_session=Zm9vYmFyYmF6cXV4", "_myapp_session"),
            ("__Host-session=abcdef0123456789", "__Host-session"),
            ("sid=8c1f2e3d4a5b6c7d", "sid"),
        ] {
            let a = req(
                &[("Cookie", &format!("lang=en; {cookie}; theme=dark"))],
                None,
            );
            assert_eq!(a.schemes().len(), 1, "{cookie}");
            assert_eq!(a.schemes()[0].kind(), AuthKind::SessionCookie);
            assert_eq!(a.schemes()[0].name().unwrap().as_str(), name);
            assert!(a.is_authenticated());
        }
    }

    #[test]
    fn cookie_lookalikes_are_not_sessions() {
        for cookie in [
            "theme=dark",
            "session=",
            "session=deleted",
            "sessionid=1",
            "sid=null",
            "csrf_session_token=abcdef0123456789",
            "_ga=GA1.2.1234567890.1700000000",
            "session",
            ";;;=;",
        ] {
            let a = req(&[("Cookie", cookie)], None);
            assert!(a.is_empty(), "{cookie}: {a:?}");
        }
    }

    #[test]
    fn several_schemes_in_one_request_are_all_kept_and_bounded() {
        let t = jwt(r#"{"alg":"ES256"}"#, r#"{"iss":"a"}"#);
        let cookie = format!("sessionid=abcdef0123456789; jwt={t}");
        let a = req(
            &[
                ("Cookie", cookie.as_str()),
                ("Authorization", &format!("Bearer {t}")),
                ("X-API-Key", "k-0123456789abcdef"),
                ("Cookie", "PHPSESSID=q4e9d6bfk3m1c2a8n0s7u5h2j1"),
            ],
            Some("api_key=Zk3q9V1xW7pL0sT2mN8b"),
        );
        assert_eq!(a.schemes().len(), MAX_SCHEMES);
        assert!(a.overflowed());
        // The Authorization JWT wins over the cookie one.
        assert_eq!(a.jwt().unwrap().carrier, AuthKind::BearerJwt);
        let kinds = a.kinds();
        assert!(kinds.contains(AuthKind::SessionCookie) && kinds.contains(AuthKind::BearerJwt));
        assert_eq!(
            serde_json::to_value(kinds).unwrap(),
            serde_json::json!(["bearer_jwt", "api_key_header", "session_cookie"])
        );
    }

    #[test]
    fn no_credentials_is_empty_and_not_authenticated() {
        let a = req(
            &[("Accept", "*/*"), ("User-Agent", "curl/8.0")],
            Some("q=1"),
        );
        assert!(a.is_empty() && !a.is_authenticated() && a.kinds().is_empty());
        assert!(!is_authenticated(&[]));
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            serde_json::json!({"schemes": [], "jwt": null, "overflowed": false})
        );
    }

    #[test]
    fn serialized_schemes_are_tagged() {
        let s = AuthScheme::ApiKeyHeader {
            name: Name::new(b"x-api-key"),
            token: TokenKind::Opaque,
        };
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::json!({"scheme": "api_key_header", "name": "x-api-key", "token": "opaque"})
        );
        assert_eq!(
            serde_json::to_value(AuthScheme::Digest).unwrap(),
            serde_json::json!({"scheme": "digest"})
        );
    }

    #[test]
    fn response_session_cookie_set_and_cleared() {
        let set = |v: &str| session_cookie_set([("Set-Cookie", v.as_bytes())]);
        assert_eq!(
            set("JSESSIONID=0A1B2C3D4E5F6071; Path=/; HttpOnly; Secure"),
            Some(SessionCookieSet {
                name: Name::new(b"JSESSIONID"),
                cleared: false
            })
        );
        for v in [
            "session=; Path=/; Max-Age=0",
            "session=deleted; expires=Thu, 01 Jan 1970 00:00:00 GMT",
            "sessionid=abcdef0123456789; Max-Age=-1",
        ] {
            assert_eq!(set(v).map(|s| s.cleared), Some(true), "{v}");
        }
        assert_eq!(set("theme=dark; Path=/"), None);
        assert_eq!(set("garbage"), None);
        // Set wins over cleared.
        let h: [(&str, &[u8]); 3] = [
            ("set-cookie", b"sid=; Max-Age=0"),
            ("Content-Type", b"text/html"),
            ("SET-COOKIE", b"sid=4f3e2d1c0b0a09080706"),
        ];
        assert_eq!(session_cookie_set(h).map(|s| s.cleared), Some(false));
    }

    #[test]
    fn token_heuristic() {
        for t in [
            "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
            "123e4567-e89b-12d3-a456-426614174000",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "abcd1234%2Befgh5678%2Fijkl9012%3D",
        ] {
            assert!(looks_like_token(t.as_bytes(), 16), "{t}");
        }
        for t in [
            "hello world this is prose",
            "2024-01-05T10:20:30.123Z",
            "12345678901234567890",
            "abcdefghijklmnopqrstuvwxyz",
            "a1-b2-c3-d4-e5-f6-g7-h8",
            "abc%41def1234567890",
            "alice.smith1@example.com",
        ] {
            assert!(!looks_like_token(t.as_bytes(), 16), "{t}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"aZ09+/=-_.:;, %\"{}[]eyJBasicBearer\x00\xff\t";
        for _ in 0..3000 {
            let len = (rnd() % 120) as usize;
            let v: Vec<u8> = (0..len)
                .map(|_| alphabet[(rnd() % alphabet.len() as u64) as usize])
                .collect();
            let s = String::from_utf8_lossy(&v).into_owned();
            let headers: [(&str, &[u8]); 5] = [
                ("Authorization", &v),
                ("Cookie", &v),
                ("X-Api-Key", &v),
                ("X-Weird-Token", &v),
                ("Set-Cookie", &v),
            ];
            let a = classify_request(headers, Some(&s));
            let _ = serde_json::to_string(&a).unwrap();
            let _ = session_cookie_set(headers);
            let mut prefixed = b"Bearer eyJ".to_vec();
            prefixed.extend_from_slice(&v);
            let _ = classify_request([("authorization", &prefixed[..])], None);
            let mut basic = b"Basic ".to_vec();
            basic.extend_from_slice(&v);
            let _ = classify_request([("authorization", &basic[..])], None);
        }
    }
}
