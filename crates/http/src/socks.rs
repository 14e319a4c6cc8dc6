//! SOCKS 4, 4a and 5 handshakes in front of HTTP (clients that use a SOCKS proxy). The
//! handshake is recognised at the start of a connection and skipped, message by message, so
//! the HTTP inside the tunnel is parsed; whatever follows it is then judged like the start
//! of a stream.

use crate::head::Scan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V4,
    V5,
}

/// The message a direction expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// v5: `05 NMETHODS METHODS...`
    ClientGreeting,
    /// v5: username/password sub-negotiation (`01 ULEN USER PLEN PASS`) or the request.
    ClientAuthOrRequest,
    /// v5: `05 CMD 00 ATYP ADDR PORT`
    ClientRequest,
    /// v4/4a: `04 CMD PORT IP USERID 00 [HOST 00]`
    Client4Request,
    /// v5: `05 METHOD`
    ServerChoice,
    /// v5: sub-negotiation status (`01 STATUS`) or the reply.
    ServerAuthOrReply,
    /// v5: `05 REP 00 ATYP ADDR PORT`
    ServerReply,
    /// v4: `00 CD PORT IP`
    Server4Reply,
}

impl Stage {
    pub(crate) fn client_first(v: Version) -> Stage {
        match v {
            Version::V4 => Stage::Client4Request,
            Version::V5 => Stage::ClientGreeting,
        }
    }

    pub(crate) fn server_first(v: Version) -> Stage {
        match v {
            Version::V4 => Stage::Server4Reply,
            Version::V5 => Stage::ServerChoice,
        }
    }
}

/// Whether a client stream starts with a SOCKS handshake.
pub(crate) fn client_start(buf: &[u8]) -> Scan<Version> {
    let (stage, v) = match buf.first() {
        None => return Scan::NeedMore,
        Some(5) => (Stage::ClientGreeting, Version::V5),
        Some(4) => (Stage::Client4Request, Version::V4),
        Some(_) => return Scan::No,
    };
    match message(stage, buf) {
        Scan::Yes(_) => Scan::Yes(v),
        Scan::No => Scan::No,
        Scan::NeedMore => Scan::NeedMore,
    }
}

/// The message expected at `stage` at the start of `buf`: its length and the next stage
/// (`None` once the handshake is over).
pub(crate) fn message(stage: Stage, buf: &[u8]) -> Scan<(usize, Option<Stage>)> {
    match stage {
        Stage::ClientGreeting => {
            let Some(&n) = buf.get(1) else {
                return prefix(buf, &[5]);
            };
            if buf[0] != 5 || n == 0 || n > 16 {
                return Scan::No;
            }
            let len = 2 + usize::from(n);
            let Some(methods) = buf.get(2..len) else {
                return if buf[2..].iter().all(|m| known_method(*m)) {
                    Scan::NeedMore
                } else {
                    Scan::No
                };
            };
            if methods.iter().all(|m| known_method(*m)) {
                Scan::Yes((len, Some(Stage::ClientAuthOrRequest)))
            } else {
                Scan::No
            }
        }
        Stage::ClientAuthOrRequest => match buf.first() {
            None => Scan::NeedMore,
            Some(1) => user_pass(buf).map_len(Some(Stage::ClientRequest)),
            Some(5) => request5(buf).map_len(None),
            Some(_) => Scan::No,
        },
        Stage::ClientRequest => request5(buf).map_len(None),
        Stage::Client4Request => request4(buf).map_len(None),
        Stage::ServerChoice => match buf {
            [] => Scan::NeedMore,
            [5] => Scan::NeedMore,
            [5, 0xff, ..] => Scan::Yes((2, None)),
            [5, m, ..] if known_method(*m) => Scan::Yes((2, Some(Stage::ServerAuthOrReply))),
            _ => Scan::No,
        },
        Stage::ServerAuthOrReply => match buf {
            [] => Scan::NeedMore,
            [1] => Scan::NeedMore,
            [1, _, ..] => Scan::Yes((2, Some(Stage::ServerReply))),
            [5, ..] => reply5(buf).map_len(None),
            _ => Scan::No,
        },
        Stage::ServerReply => reply5(buf).map_len(None),
        Stage::Server4Reply => match buf.get(..8) {
            Some([0, 0x5a..=0x5d, ..]) => Scan::Yes((8, None)),
            Some(_) => Scan::No,
            None => match buf {
                [] | [0] | [0, 0x5a..=0x5d, ..] => Scan::NeedMore,
                _ => Scan::No,
            },
        },
    }
}

impl Scan<usize> {
    fn map_len(self, next: Option<Stage>) -> Scan<(usize, Option<Stage>)> {
        match self {
            Scan::Yes(n) => Scan::Yes((n, next)),
            Scan::No => Scan::No,
            Scan::NeedMore => Scan::NeedMore,
        }
    }
}

fn prefix(buf: &[u8], lit: &[u8]) -> Scan<(usize, Option<Stage>)> {
    if lit.starts_with(buf) {
        Scan::NeedMore
    } else {
        Scan::No
    }
}

/// No auth, GSSAPI, username/password, the other IANA-assigned ones, private methods.
fn known_method(m: u8) -> bool {
    matches!(m, 0x00..=0x09 | 0x80..=0xfe)
}

/// `01 ULEN USER PLEN PASS` (RFC 1929).
fn user_pass(buf: &[u8]) -> Scan<usize> {
    let Some(&ulen) = buf.get(1) else {
        return Scan::NeedMore;
    };
    let p = 2 + usize::from(ulen);
    let Some(&plen) = buf.get(p) else {
        return Scan::NeedMore;
    };
    let len = p + 1 + usize::from(plen);
    if buf.len() < len {
        Scan::NeedMore
    } else {
        Scan::Yes(len)
    }
}

/// `05 X 00 ATYP ADDR PORT`: a v5 request (X = command) or reply (X = status).
fn addressed5(buf: &[u8], x_ok: impl Fn(u8) -> bool) -> Scan<usize> {
    for (i, want) in [Some(5u8), None, Some(0)].iter().enumerate() {
        match buf.get(i) {
            None => return Scan::NeedMore,
            Some(&b) => {
                let ok = match want {
                    Some(w) => b == *w,
                    None => x_ok(b),
                };
                if !ok {
                    return Scan::No;
                }
            }
        }
    }
    let addr = match buf.get(3) {
        None => return Scan::NeedMore,
        Some(1) => 4,
        Some(4) => 16,
        Some(3) => match buf.get(4) {
            None => return Scan::NeedMore,
            Some(0) => return Scan::No,
            Some(&n) => 1 + usize::from(n),
        },
        Some(_) => return Scan::No,
    };
    let len = 4 + addr + 2;
    if buf.len() < len {
        Scan::NeedMore
    } else {
        Scan::Yes(len)
    }
}

fn request5(buf: &[u8]) -> Scan<usize> {
    addressed5(buf, |cmd| matches!(cmd, 1..=3))
}

fn reply5(buf: &[u8]) -> Scan<usize> {
    addressed5(buf, |rep| rep <= 8)
}

/// `04 CMD PORT(2) IP(4) USERID 00`, and for 4a (IP 0.0.0.x, x != 0) `HOST 00` after it.
fn request4(buf: &[u8]) -> Scan<usize> {
    const MAX_FIELD: usize = 255;
    match buf {
        [] | [4] => return Scan::NeedMore,
        [4, 1 | 2, ..] => {}
        _ => return Scan::No,
    }
    let Some(ip) = buf.get(4..8) else {
        return Scan::NeedMore;
    };
    let socks4a = ip[..3] == [0, 0, 0] && ip[3] != 0;
    let field_end = |from: usize| -> Scan<usize> {
        let rest = buf.get(from..).unwrap_or_default();
        match rest.iter().take(MAX_FIELD + 1).position(|b| *b == 0) {
            Some(i) => Scan::Yes(from + i + 1),
            None if rest.len() > MAX_FIELD => Scan::No,
            None => Scan::NeedMore,
        }
    };
    match field_end(8) {
        Scan::Yes(end) if socks4a => field_end(end),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks5_client_and_server() {
        assert_eq!(client_start(b"\x05\x01\x00"), Scan::Yes(Version::V5));
        assert_eq!(client_start(b"\x05\x02\x00"), Scan::NeedMore);
        assert_eq!(client_start(b"GET"), Scan::No);
        assert_eq!(client_start(b"\x05\x01\x7f"), Scan::No);
        let req = b"\x05\x01\x00\x03\x0ewww.osnews.com\x00\x50GET";
        assert_eq!(
            message(Stage::ClientAuthOrRequest, req),
            Scan::Yes((21, None))
        );
        assert_eq!(
            message(Stage::ClientAuthOrRequest, b"\x01\x03bob\x02pw\x05"),
            Scan::Yes((8, Some(Stage::ClientRequest)))
        );
        assert_eq!(
            message(Stage::ServerChoice, b"\x05\x00"),
            Scan::Yes((2, Some(Stage::ServerAuthOrReply)))
        );
        assert_eq!(
            message(
                Stage::ServerAuthOrReply,
                b"\x05\x00\x00\x01\xc0\xa8\x00\x1f\x0a\x80HTTP"
            ),
            Scan::Yes((10, None))
        );
        assert_eq!(
            message(Stage::ServerAuthOrReply, b"\x05\x00\x00\x04"),
            Scan::NeedMore
        );
    }

    #[test]
    fn socks4_and_4a() {
        assert_eq!(
            client_start(b"\x04\x01\x00\x50\x0a\x00\x00\x01user\x00"),
            Scan::Yes(Version::V4)
        );
        let a = b"\x04\x01\x00\x50\x00\x00\x00\x01\x00example.com\x00GET";
        assert_eq!(
            message(Stage::Client4Request, a),
            Scan::Yes((a.len() - 3, None))
        );
        assert_eq!(
            message(
                Stage::Client4Request,
                b"\x04\x01\x00\x50\x00\x00\x00\x01\x00exa"
            ),
            Scan::NeedMore
        );
        assert_eq!(
            message(Stage::Server4Reply, b"\x00\x5a\x00\x50\x0a\x00\x00\x01"),
            Scan::Yes((8, None))
        );
        assert_eq!(message(Stage::Server4Reply, b"\x00\x5a"), Scan::NeedMore);
        assert_eq!(message(Stage::Server4Reply, b"HTTP/1.1"), Scan::No);
        let long = [&b"\x04\x01\x00\x50\x0a\x00\x00\x01"[..], &[b'u'; 300]].concat();
        assert_eq!(client_start(&long), Scan::No);
    }
}
