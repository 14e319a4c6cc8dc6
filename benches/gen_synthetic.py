#!/usr/bin/env python3
"""Synthetic captures for the memory bounds of the live sensor (benches/live_load.sh memory).

    benches/gen_synthetic.py syn-flood [--count 1000000] [--out bench-data/syn_flood.pcap]
    benches/gen_synthetic.py flows     [--count 1000000] [--out bench-data/flows_1m.pcap]
    benches/gen_synthetic.py ooo       [--count 200000]  [--out bench-data/ooo_flows.pcap]

- syn-flood: COUNT SYNs to 10.0.0.1:80 from COUNT distinct (spoofed) source address and port
  pairs; nothing answers. Each SYN opens a flow in the sensor's table.
- flows: COUNT connections to 10.0.0.1:80 (and :8080), each a three-way handshake, one small
  HTTP/1.1 request, its JSON response and the client's ACK, and never closed (no FIN, no
  RST): at the end of the file COUNT connections are open at once, each holding its HTTP
  parser state (one call each).
- ooo: COUNT connections, each a handshake and one 1,200-byte request segment sent 100 bytes
  ahead of the next expected sequence number (a hole that is never filled): every connection
  buffers out-of-order bytes, which exercises reassembly.memcap_bytes.

Frames are Ethernet/IPv4/TCP with correct IP and TCP checksums, one microsecond apart
(timestamps start at 2026-01-01), in a microsecond pcap. Every flow's client address and
port pair is distinct (clients in 10.128.0.0/9, 16 ports each). Python 3 standard library
only; about a minute per million flows. The files go to bench-data/ (gitignored).
"""

import argparse
import os
import struct
import sys

SERVER_IP = bytes([10, 0, 0, 1])
MAC_CLIENT = bytes([0x02, 0, 0, 0, 0, 0x02])
MAC_SERVER = bytes([0x02, 0, 0, 0, 0, 0x01])
T0 = 1767225600  # 2026-01-01T00:00:00Z

SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


def csum_fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def sum16(b):
    if len(b) & 1:
        b = b + b"\0"
    return sum(struct.unpack("!%dH" % (len(b) // 2), b))


class Writer:
    def __init__(self, path):
        self.f = open(path, "wb", buffering=1 << 22)
        # Microsecond pcap, Ethernet, snaplen 65535.
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.n = 0
        self.bytes = 0
        self.t_us = 0

    def frame(self, src, dst, sport, dport, seq, ack, flags, payload=b"", to_server=True):
        tcp_len = 20 + len(payload)
        total = 20 + tcp_len
        ip = bytearray(
            struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, self.n & 0xFFFF, 0x4000, 64, 6, 0, src, dst)
        )
        struct.pack_into("!H", ip, 10, csum_fold(sum16(bytes(ip))))
        tcp = bytearray(
            struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0)
        )
        pseudo = src + dst + struct.pack("!BBH", 0, 6, tcp_len)
        struct.pack_into("!H", tcp, 16, csum_fold(sum16(pseudo) + sum16(bytes(tcp)) + sum16(payload)))
        eth = (MAC_SERVER + MAC_CLIENT) if to_server else (MAC_CLIENT + MAC_SERVER)
        data = eth + b"\x08\x00" + bytes(ip) + bytes(tcp) + payload
        sec, us = divmod(self.t_us, 1_000_000)
        self.f.write(struct.pack("<IIII", T0 + sec, us, len(data), len(data)))
        self.f.write(data)
        self.t_us += 1
        self.n += 1
        self.bytes += len(data)

    def close(self):
        self.f.close()


def client(i):
    """The distinct client address and port of flow i."""
    a = 0x0A800000 + (i >> 4)
    return struct.pack("!I", a), 20000 + (i & 15) * 2017


def isn(i, salt):
    return (i * 2654435761 + salt * 40503) & 0xFFFFFFFF


def syn_flood(w, count):
    for i in range(count):
        ip, port = client(i)
        w.frame(ip, SERVER_IP, port, 80, isn(i, 1), 0, SYN)


def flows(w, count):
    for i in range(count):
        ip, port = client(i)
        sport = 80 if i % 4 else 8080
        c, s = isn(i, 1), isn(i, 2)
        req = (
            "GET /api/items/%d HTTP/1.1\r\nHost: shop.example\r\nAccept: application/json\r\n\r\n" % i
        ).encode()
        body = ('{"id":%d,"name":"item"}' % i).encode()
        resp = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(body)
        ).encode() + body
        w.frame(ip, SERVER_IP, port, sport, c, 0, SYN)
        w.frame(SERVER_IP, ip, sport, port, s, c + 1, SYN | ACK, to_server=False)
        w.frame(ip, SERVER_IP, port, sport, c + 1, s + 1, ACK)
        w.frame(ip, SERVER_IP, port, sport, c + 1, s + 1, ACK | PSH, req)
        w.frame(SERVER_IP, ip, sport, port, s + 1, c + 1 + len(req), ACK | PSH, resp, to_server=False)
        w.frame(ip, SERVER_IP, port, sport, c + 1 + len(req), s + 1 + len(resp), ACK)


def ooo(w, count):
    data = b"POST /api/upload HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 1000\r\n\r\n"
    data = data + b"x" * (1200 - len(data))
    for i in range(count):
        ip, port = client(i)
        c, s = isn(i, 1), isn(i, 2)
        w.frame(ip, SERVER_IP, port, 80, c, 0, SYN)
        w.frame(SERVER_IP, ip, 80, port, s, c + 1, SYN | ACK, to_server=False)
        w.frame(ip, SERVER_IP, port, 80, c + 1, s + 1, ACK)
        # 100 bytes missing before this segment: buffered out of order, never filled.
        w.frame(ip, SERVER_IP, port, 80, c + 1 + 100, s + 1, ACK | PSH, data)


KINDS = {
    "syn-flood": (syn_flood, 1_000_000, "syn_flood.pcap"),
    "flows": (flows, 1_000_000, "flows_1m.pcap"),
    "ooo": (ooo, 200_000, "ooo_flows.pcap"),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("--count", type=int)
    p.add_argument("--out")
    a = p.parse_args()
    gen, default_count, name = KINDS[a.kind]
    count = a.count if a.count is not None else default_count
    if count < 1 or count > (1 << 23) * 16:
        p.error("--count must be between 1 and %d" % ((1 << 23) * 16))
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = a.out or os.path.join(top, "bench-data", name)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".part"
    w = Writer(tmp)
    gen(w, count)
    w.close()
    os.replace(tmp, out)
    print("%s: %s, %d flows, %d packets, %d bytes of frames" % (out, a.kind, count, w.n, w.bytes), file=sys.stderr)


if __name__ == "__main__":
    main()
