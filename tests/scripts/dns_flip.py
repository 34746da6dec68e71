#!/usr/bin/env python3
"""A DNS server for one name whose A answers take turns among addresses: a
round robin with a dead member. Answers UDP queries on 127.0.0.1:53 in the
network namespace it runs in; AAAA queries get an empty answer, other
names NXDOMAIN. Prints `ready` once bound, then one line per A answer
(`A <name> <address>`), flushed, so the test reads what it answered. Stops
after --seconds (a bound, whatever happens).

usage: dns_flip.py NAME ADDRESS [ADDRESS...] [--seconds N]
"""

import argparse
import socket
import struct
import sys
import time

TYPE_A = 1
TYPE_AAAA = 28


def question(message):
    """(name, qtype, end of the question) of a query, or None."""
    at = 12
    labels = []
    while at < len(message):
        length = message[at]
        if length == 0:
            at += 1
            break
        if length > 63:
            return None
        labels.append(message[at + 1 : at + 1 + length].decode("ascii", "replace"))
        at += 1 + length
    if at + 4 > len(message):
        return None
    qtype = struct.unpack("!H", message[at : at + 2])[0]
    return ".".join(labels).lower(), qtype, at + 4


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("addresses", nargs="+")
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    print("ready", flush=True)
    turn = 0
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            message, peer = sock.recvfrom(512)
        except socket.timeout:
            break
        asked = question(message)
        if len(message) < 12 or asked is None:
            continue
        name, qtype, end = asked
        flags = 0x8180  # a response, recursion desired and available
        answers = b""
        count = 0
        if name != args.name.lower():
            flags |= 3  # NXDOMAIN
        elif qtype == TYPE_A:
            address = args.addresses[turn % len(args.addresses)]
            turn += 1
            answers = struct.pack("!HHHIH", 0xC00C, TYPE_A, 1, 0, 4) + socket.inet_aton(address)
            count = 1
            print(f"A {name} {address}", flush=True)
        header = message[:2] + struct.pack("!HHHHH", flags, 1, count, 0, 0)
        sock.sendto(header + message[12:end] + answers, peer)


if __name__ == "__main__":
    sys.exit(main())
