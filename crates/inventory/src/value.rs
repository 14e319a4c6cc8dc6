//! The type of one string value, as seen in a path segment, a query parameter or a JSON string.
//!
//! [`classify`] looks at the text only (no context) and answers the most specific
//! [`ValueKind`]. It never allocates. Path templating, query-parameter typing and body schemas
//! all use it, so `/users/42`, `?id=42` and `{"id": "42"}` agree on what 42 is.

use std::fmt;

/// What a string value looks like, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueKind {
    /// Empty string.
    Empty,
    /// `true` / `false` (ASCII case-insensitive).
    Boolean,
    /// Optional `-`, then 1 to 19 ASCII digits.
    Integer,
    /// A decimal number with a fraction or exponent (`3.14`, `-1e5`).
    Number,
    /// RFC 4122 UUID, 8-4-4-4-12 hex digits, any case.
    Uuid,
    /// A MongoDB ObjectId: exactly 24 hex digits.
    ObjectId,
    /// A hash or hex identifier: 16 or more hex digits with at least one digit and one letter
    /// among them, or exactly 32/40/64/128 hex digits (md5, sha1, sha256, sha512).
    Hex,
    /// `YYYY-MM-DD` with a valid month and day.
    Date,
    /// RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS` with optional fraction and zone).
    DateTime,
    /// `local@domain.tld`, with a plausible local part and a dotted domain.
    Email,
    /// Dotted-quad IPv4 address.
    Ipv4,
    /// A long opaque token: 20+ characters of `[A-Za-z0-9_-]` (base64url-like, may end with
    /// `=` padding), mixing letters and digits, no dictionary-like structure.
    Token,
    /// Lower-case words joined by `-` or `_` that contain at least one digit (`order-2023-17`,
    /// `item_9f2`): often a generated name.
    SlugWithDigits,
    /// Anything else.
    Text,
}

impl ValueKind {
    /// The name used in outputs and evidence (`integer`, `uuid`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            ValueKind::Empty => "empty",
            ValueKind::Boolean => "boolean",
            ValueKind::Integer => "integer",
            ValueKind::Number => "number",
            ValueKind::Uuid => "uuid",
            ValueKind::ObjectId => "objectid",
            ValueKind::Hex => "hex",
            ValueKind::Date => "date",
            ValueKind::DateTime => "date-time",
            ValueKind::Email => "email",
            ValueKind::Ipv4 => "ipv4",
            ValueKind::Token => "token",
            ValueKind::SlugWithDigits => "slug",
            ValueKind::Text => "string",
        }
    }

    /// True for kinds that identify an object rather than name a route: a path segment of
    /// this kind is a parameter without needing to be learnt.
    pub const fn is_identifier(self) -> bool {
        matches!(
            self,
            ValueKind::Integer
                | ValueKind::Number
                | ValueKind::Uuid
                | ValueKind::ObjectId
                | ValueKind::Hex
                | ValueKind::Date
                | ValueKind::DateTime
                | ValueKind::Email
                | ValueKind::Ipv4
                | ValueKind::Token
        )
    }

    /// The OpenAPI `(type, format)` for a string of this kind.
    pub const fn openapi(self) -> (&'static str, Option<&'static str>) {
        match self {
            ValueKind::Boolean => ("boolean", None),
            ValueKind::Integer => ("integer", None),
            ValueKind::Number => ("number", None),
            ValueKind::Uuid => ("string", Some("uuid")),
            ValueKind::Date => ("string", Some("date")),
            ValueKind::DateTime => ("string", Some("date-time")),
            ValueKind::Email => ("string", Some("email")),
            ValueKind::Ipv4 => ("string", Some("ipv4")),
            _ => ("string", None),
        }
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of `s`. Pure, allocation-free, linear in `s`.
pub fn classify(s: &str) -> ValueKind {
    let b = s.as_bytes();
    if b.is_empty() {
        return ValueKind::Empty;
    }
    if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
        return ValueKind::Boolean;
    }
    if is_integer(b) {
        return ValueKind::Integer;
    }
    if is_number(b) {
        return ValueKind::Number;
    }
    if is_uuid(b) {
        return ValueKind::Uuid;
    }
    if b.iter().all(u8::is_ascii_hexdigit) {
        let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
        let letters = b.len() - digits;
        if b.len() == 24 {
            return ValueKind::ObjectId;
        }
        if matches!(b.len(), 32 | 40 | 64 | 128) || (b.len() >= 16 && digits > 0 && letters > 0) {
            return ValueKind::Hex;
        }
    }
    if b.len() >= 10 && is_date(&b[..10]) {
        if b.len() == 10 {
            return ValueKind::Date;
        }
        if is_datetime_rest(&b[10..]) {
            return ValueKind::DateTime;
        }
    }
    if is_email(b) {
        return ValueKind::Email;
    }
    if is_ipv4(b) {
        return ValueKind::Ipv4;
    }
    if is_token(b) {
        return ValueKind::Token;
    }
    if is_slug_with_digits(b) {
        return ValueKind::SlugWithDigits;
    }
    ValueKind::Text
}

fn is_integer(b: &[u8]) -> bool {
    let d = b.strip_prefix(b"-").unwrap_or(b);
    !d.is_empty() && d.len() <= 19 && d.iter().all(u8::is_ascii_digit)
}

fn is_number(b: &[u8]) -> bool {
    let d = b.strip_prefix(b"-").unwrap_or(b);
    let (mut int, mut frac, mut exp) = (0, 0, false);
    let mut i = 0;
    while i < d.len() && d[i].is_ascii_digit() {
        int += 1;
        i += 1;
    }
    if i < d.len() && d[i] == b'.' {
        i += 1;
        while i < d.len() && d[i].is_ascii_digit() {
            frac += 1;
            i += 1;
        }
        if frac == 0 {
            return false;
        }
    }
    if i < d.len() && (d[i] == b'e' || d[i] == b'E') && int + frac > 0 {
        i += 1;
        if i < d.len() && (d[i] == b'+' || d[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < d.len() && d[i].is_ascii_digit() {
            i += 1;
        }
        exp = i > start;
        if !exp {
            return false;
        }
    }
    i == d.len() && int > 0 && (frac > 0 || exp)
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0')))
}

/// `YYYY-MM-DD`, exactly ten bytes.
fn is_date(b: &[u8]) -> bool {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&b[..4]), digits(&b[5..7]), digits(&b[8..10])) else {
        return false;
    };
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// `THH:MM:SS[.frac][Z|±HH:MM]` after a date.
fn is_datetime_rest(b: &[u8]) -> bool {
    if b.len() < 9 || !matches!(b[0], b'T' | b't' | b' ') || b[3] != b':' || b[6] != b':' {
        return false;
    }
    let (Some(h), Some(mi), Some(s)) = (digits(&b[1..3]), digits(&b[4..6]), digits(&b[7..9]))
    else {
        return false;
    };
    if h > 23 || mi > 59 || s > 60 {
        return false;
    }
    let mut rest = &b[9..];
    if let Some(r) = rest.strip_prefix(b".") {
        let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &r[n..];
    }
    match rest {
        [] | [b'Z' | b'z'] => true,
        [b'+' | b'-', zone @ ..] => {
            zone.len() == 5
                && zone[2] == b':'
                && digits(&zone[..2]).is_some_and(|h| h <= 23)
                && digits(&zone[3..]).is_some_and(|m| m <= 59)
        }
        _ => false,
    }
}

fn is_email(b: &[u8]) -> bool {
    let Some(at) = b.iter().position(|&c| c == b'@') else {
        return false;
    };
    let (local, domain) = (&b[..at], &b[at + 1..]);
    if local.is_empty() || local.len() > 64 || domain.len() < 4 || domain.len() > 253 {
        return false;
    }
    let local_ok = local
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || b"._%+-'".contains(c))
        && local[0] != b'.'
        && local[local.len() - 1] != b'.';
    if !local_ok {
        return false;
    }
    let labels_ok = domain.split(|&c| c == b'.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && l[0] != b'-'
            && l[l.len() - 1] != b'-'
    });
    let tld = domain.rsplit(|&c| c == b'.').next().unwrap_or_default();
    labels_ok && domain.contains(&b'.') && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)
}

fn is_ipv4(b: &[u8]) -> bool {
    let mut parts = 0;
    for p in b.split(|&c| c == b'.') {
        parts += 1;
        if p.is_empty() || p.len() > 3 || (p.len() > 1 && p[0] == b'0') {
            return false;
        }
        if digits(p).is_none_or(|n| n > 255) {
            return false;
        }
    }
    parts == 4
}

fn is_token(b: &[u8]) -> bool {
    let body = {
        let mut end = b.len();
        while end > 0 && b[end - 1] == b'=' && b.len() - end < 2 {
            end -= 1;
        }
        &b[..end]
    };
    if body.len() < 20
        || !body
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
    {
        return false;
    }
    let digits = body.iter().filter(|c| c.is_ascii_digit()).count();
    let upper = body.iter().filter(|c| c.is_ascii_uppercase()).count();
    let lower = body.iter().filter(|c| c.is_ascii_lowercase()).count();
    // Words joined by separators (`a-very-long-article-title-2024`) are slugs, not tokens:
    // a token has long runs without separators and mixes character classes.
    let longest_run = body
        .split(|c| *c == b'-' || *c == b'_')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    let classes = usize::from(digits > 0) + usize::from(upper > 0) + usize::from(lower > 0);
    longest_run >= 16 && classes >= 2 && digits > 0
}

fn is_slug_with_digits(b: &[u8]) -> bool {
    b.iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().any(u8::is_ascii_lowercase)
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_common_values() {
        let cases = [
            ("", ValueKind::Empty),
            ("TRUE", ValueKind::Boolean),
            ("42", ValueKind::Integer),
            ("-7", ValueKind::Integer),
            ("3.25", ValueKind::Number),
            ("1e5", ValueKind::Number),
            ("1.", ValueKind::Text),
            ("123e4567-e89b-12d3-a456-426614174000", ValueKind::Uuid),
            ("507f1f77bcf86cd799439011", ValueKind::ObjectId),
            ("d41d8cd98f00b204e9800998ecf8427e", ValueKind::Hex),
            ("deadbeefcafe1234", ValueKind::Hex),
            ("2024-02-29", ValueKind::Date),
            ("2023-02-29", ValueKind::Text),
            ("2024-01-05T10:20:30Z", ValueKind::DateTime),
            ("2024-01-05T10:20:30.123+02:00", ValueKind::DateTime),
            ("alice@example.com", ValueKind::Email),
            ("alice@localhost", ValueKind::Text),
            ("10.0.0.1", ValueKind::Ipv4),
            ("10.0.0.256", ValueKind::Text),
            ("eyJhbGciOiJIUzI1NiJ9xx12", ValueKind::Token),
            ("order-2023-17", ValueKind::SlugWithDigits),
            ("users", ValueKind::Text),
            ("me", ValueKind::Text),
            ("v1", ValueKind::SlugWithDigits),
            (
                "a-very-long-article-title-about-2024",
                ValueKind::SlugWithDigits,
            ),
            ("featured", ValueKind::Text),
        ];
        for (s, want) in cases {
            assert_eq!(classify(s), want, "{s:?}");
        }
    }

    #[test]
    fn identifiers_and_names_are_told_apart() {
        assert!(ValueKind::Uuid.is_identifier());
        assert!(ValueKind::Integer.is_identifier());
        assert!(!ValueKind::Text.is_identifier());
        assert!(!ValueKind::SlugWithDigits.is_identifier());
    }
}
