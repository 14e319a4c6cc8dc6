//! The PROXY protocol header (HAProxy's; versions 1 and 2) that load balancers such as AWS
//! NLB, HAProxy and Envoy put in front of the first bytes a client sends, to pass on the
//! original addresses. It is recognised at the start of a connection, skipped and counted,
//! so the HTTP after it is parsed.

use crate::head::Scan;

/// Version 2's signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's longest line, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// Version 2's longest header we accept: its fixed part, addresses and TLVs.
const V2_MAX: usize = 16 + 4096;

/// The length of the PROXY header at the start of `input`.
pub(crate) fn header_len(input: &[u8]) -> Scan<usize> {
    if input.is_empty() {
        return Scan::NeedMore;
    }
    if input[0] == b'P' {
        return v1(input);
    }
    let n = input.len().min(V2_SIGNATURE.len());
    if input[..n] != V2_SIGNATURE[..n] {
        return Scan::No;
    }
    if input.len() < 16 {
        return Scan::NeedMore;
    }
    // Version 2 in the high nibble; the command (LOCAL or PROXY) in the low one.
    if input[12] >> 4 != 2 || input[12] & 0x0f > 1 {
        return Scan::No;
    }
    let len = 16 + usize::from(u16::from_be_bytes([input[14], input[15]]));
    if len > V2_MAX {
        Scan::No
    } else if input.len() < len {
        Scan::NeedMore
    } else {
        Scan::Yes(len)
    }
}

fn v1(input: &[u8]) -> Scan<usize> {
    const PREFIX: &[u8] = b"PROXY ";
    let n = input.len().min(PREFIX.len());
    if input[..n] != PREFIX[..n] {
        return Scan::No;
    }
    let window = &input[..input.len().min(V1_MAX)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => {
            let line = &window[PREFIX.len().min(i)..i];
            let family_ok = [&b"TCP4 "[..], b"TCP6 ", b"UNKNOWN"]
                .iter()
                .any(|f| line.starts_with(f));
            let printable = line.iter().all(|b| (0x20..0x7f).contains(b));
            if family_ok && printable {
                Scan::Yes(i + 2)
            } else {
                Scan::No
            }
        }
        None if input.len() < V1_MAX => Scan::NeedMore,
        None => Scan::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yes(s: Scan<usize>) -> Option<usize> {
        match s {
            Scan::Yes(n) => Some(n),
            _ => None,
        }
    }

    #[test]
    fn version_1_lines() {
        let l = b"PROXY TCP4 192.0.2.1 198.51.100.2 40000 80\r\nGET / HTTP/1.1\r\n";
        assert_eq!(yes(header_len(l)), Some(44));
        assert_eq!(yes(header_len(b"PROXY UNKNOWN\r\nGET")), Some(15));
        assert!(matches!(header_len(b"PROX"), Scan::NeedMore));
        assert!(matches!(
            header_len(b"PROXY TCP4 192.0.2.1"),
            Scan::NeedMore
        ));
        // Not a PROXY line: an HTTP method that starts with P, a bad family, no CRLF in 107.
        assert!(matches!(header_len(b"POST / HTTP/1.1\r\n"), Scan::No));
        assert!(matches!(header_len(b"PROXY / HTTP/1.1\r\n"), Scan::No));
        assert!(matches!(header_len(&[b'P'; 200]), Scan::No));
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend_from_slice(&[b'1'; 120]);
        assert!(matches!(header_len(&long), Scan::No));
    }

    #[test]
    fn version_2_headers() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12]); // PROXY, TCP over IPv4, 12 bytes
        h.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 2, 0x9c, 0x40, 0, 80]);
        assert_eq!(yes(header_len(&h)), Some(28));
        assert!(matches!(header_len(&h[..20]), Scan::NeedMore));
        assert!(matches!(header_len(&h[..5]), Scan::NeedMore));
        let mut bad = h.clone();
        bad[12] = 0x31; // version 3
        assert!(matches!(header_len(&bad), Scan::No));
        assert!(matches!(header_len(b"\r\nGET"), Scan::No));
        assert!(matches!(header_len(b"GET / HTTP/1.1\r\n"), Scan::No));
    }
}
