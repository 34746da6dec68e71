#!/bin/sh
# The kernel-side cost of the control-channel programs (cgroup_skb ingress
# and egress on the cgroup v2 root), per packet, from the kernel's own
# per-program counters (kernel.bpf_stats_enabled: run_time_ns, run_cnt,
# read from the programs' fds in /proc/PID/fdinfo). As root:
#
#   cargo build --release -p ftptrace
#   sh ftptrace/benches/control_channel_kernel.sh [target/release/ftptrace]
#
# Two namespaces joined by a veth pair (192.0.2.1 server, 192.0.2.2 client,
# default offloads), then:
#   - throughput of a 2 GiB TCP bulk transfer on port 5001 (not FTP), five
#     runs each: without ftptrace, with it, without it again (statistics off);
#   - with statistics on, ftptrace's programs next to two empty cgroup_skb
#     programs (`return 1`, attached the same way): the empty ones' time per
#     run is what the statistics and the dispatch cost by themselves;
#     a) one bulk transfer: every packet ends at the port test;
#     b) one anonymous vsftpd session sending 20000 NOOPs: every packet passes
#        the port test, those with payload are copied to the ring buffer;
#     c) the bulk transfer again with port 5001 traced as a data port
#        (`--passive-ports 5001-5001`): every arriving packet's TTL is noted
#        per socket (the headers read, one LRU map lookup).
# Leaves nothing behind.
set -eu

BIN=${1:-target/release/ftptrace}
SRV=ftpt-bench-srv
CLI=ftpt-bench-cli
TMP=$(mktemp -d /tmp/ftptrace-bench.XXXXXX)
TRACER=
BASELINE=
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)

cleanup() {
    # `|| true` throughout: under `set -e` a failing kill would end the
    # clean-up half way.
    if [ -n "$TRACER" ]; then kill "$TRACER" 2>/dev/null || true; fi
    if [ -n "$BASELINE" ]; then kill "$BASELINE" 2>/dev/null || true; fi
    for ns in $SRV $CLI; do
        ip netns pids $ns 2>/dev/null | xargs -r kill -9 || true
        ip netns del $ns 2>/dev/null || true
    done
    sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS"
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

ip netns add $SRV
ip netns add $CLI
ip -n $SRV link add veth0 type veth peer name veth0 netns $CLI
ip -n $SRV addr add 192.0.2.1/24 dev veth0
ip -n $CLI addr add 192.0.2.2/24 dev veth0
for ns in $SRV $CLI; do
    ip -n $ns link set lo up
    ip -n $ns link set veth0 up
done
sleep 1

# The bulk sender and receiver: plain sockets, 1 MiB writes.
cat > "$TMP/bulk.py" <<'EOF'
import socket, sys, time
TOTAL = 2 << 30
if sys.argv[1] == "serve":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("192.0.2.1", 5001)); s.listen(8)
    buf = b"\0" * (1 << 20)
    while True:
        c, _ = s.accept(); sent = 0
        while sent < TOTAL:
            c.sendall(buf); sent += len(buf)
        c.close()
else:
    c = socket.create_connection(("192.0.2.1", 5001)); got = 0; t = time.monotonic()
    buf = bytearray(1 << 20)
    while True:
        n = c.recv_into(buf)
        if n == 0: break
        got += n
    print("%.0f" % (got / (time.monotonic() - t) / 1e6))
EOF
cat > "$TMP/noop.py" <<'EOF'
import ftplib
f = ftplib.FTP("192.0.2.1", timeout=10); f.login()
for _ in range(20000): f.voidcmd("NOOP")
f.quit()
EOF
cat > "$TMP/baseline.py" <<'EOF'
"""Loads two empty cgroup_skb programs (return 1) on a cgroup, ingress and
egress, and holds them until killed: the per-run cost of any program under
kernel.bpf_stats_enabled, to subtract from ftptrace's."""
import ctypes, os, signal, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_BPF, PROG_LOAD, LINK_CREATE, CGROUP_SKB = 321, 5, 28, 8

def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    fd = libc.syscall(SYS_BPF, cmd, buf, 128)
    if fd < 0:
        sys.exit("bpf(%d): %s" % (cmd, os.strerror(ctypes.get_errno())))
    return fd

insns = ctypes.create_string_buffer(struct.pack("<BBhiBBhi", 0xB7, 0, 0, 1, 0x95, 0, 0, 0))
license = ctypes.create_string_buffer(b"GPL")
cgroup = os.open(sys.argv[1], os.O_RDONLY)
for attach_type, name in ((0, b"base_ingress"), (1, b"base_egress")):
    attr = struct.pack("<IIQQIIQII16sII", CGROUP_SKB, 2, ctypes.addressof(insns),
                       ctypes.addressof(license), 0, 0, 0, 0, 0, name, 0, attach_type)
    prog = bpf(PROG_LOAD, attr)
    bpf(LINK_CREATE, struct.pack("<IIII", prog, cgroup, attach_type, 0))
print("attached", flush=True)
signal.pause()
EOF
mkdir -p "$TMP/root" /var/run/vsftpd/empty
cat > "$TMP/vsftpd.conf" <<EOF
listen=YES
listen_address=192.0.2.1
anon_root=$TMP/root
background=NO
anonymous_enable=YES
no_anon_password=YES
local_enable=NO
seccomp_sandbox=NO
xferlog_enable=NO
isolate=NO
isolate_network=NO
EOF
# Not on our stdout: a pipe reading it would wait for them to exit.
ip netns exec $SRV python3 "$TMP/bulk.py" serve > /dev/null 2>&1 &
ip netns exec $SRV vsftpd "$TMP/vsftpd.conf" > /dev/null 2>&1 &
sleep 1

bulk() { # RUNS: MB/s of each run, then the median
    runs=$(for _ in $(seq "$1"); do ip netns exec $CLI python3 "$TMP/bulk.py" fetch; done)
    echo "$(echo $runs) (median $(echo "$runs" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'))"
}

# "PROGRAM RUN_TIME_NS RUN_CNT" for the cgroup_skb programs held by PID,
# named PREFIX_ingress or PREFIX_egress after the link's attach type.
counters() { # PID PREFIX
    for f in /proc/$1/fdinfo/*; do
        awk '/^link_type:/ {l=$2} /^prog_type:/ {t=$2} /^prog_id:/ {p=$2}
             /^attach_type:/ {a=$2} /^run_time_ns:/ {r=$2} /^run_cnt:/ {c=$2}
             END { if (l == "cgroup") print "link", p, a;
                   else if (t == 8) print "prog", p, r, c }' "$f" 2>/dev/null
    done | awk -v prefix="$2" '$1 == "link" {dir[$2] = ($3 == 0 ? "ingress" : "egress")}
                $1 == "prog" {rt[$2] = $3; cnt[$2] = $4}
                END { for (p in dir) print prefix "_" dir[p], rt[p], cnt[p] }' | sort
}

phase() { # NAME COMMAND...: runs it, prints ns per run of each program
    name=$1; shift
    before=$(counters $TRACER ftptrace; counters $BASELINE empty)
    t0=$(date +%s.%N)
    out=$("$@")
    t1=$(date +%s.%N)
    after=$(counters $TRACER ftptrace; counters $BASELINE empty)
    printf '%s\n%s\n' "$before" "$after" | awk -v name="$name" -v out="$out" -v secs="$(echo "$t1 - $t0" | bc)" '
        { if ($1 in t0) { dt[$1] = $2 - t0[$1]; dc[$1] = $3 - c0[$1] } else { t0[$1] = $2; c0[$1] = $3; order[++n] = $1 } }
        END { printf "%s (%.2f s) %s\n", name, secs, out;
              for (i = 1; i <= n; i++) { d = order[i];
                  printf "  %-16s %9d runs %7.1f ns/run\n", d, dc[d], dc[d] ? dt[d] / dc[d] : 0 } }'
}

start_tracer() { # [ARGS...]: more tracer arguments
    "$BIN" trace --format json --ports 21 "$@" > "$TMP/trace.jsonl" 2> "$TMP/trace.err" &
    TRACER=$!
    for _ in $(seq 100); do
        grep -q '"type":"start"' "$TMP/trace.jsonl" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '"name":"control_channel","hook":"cgroup_skb"' "$TMP/trace.jsonl" || {
        echo "control_channel not attached:"; cat "$TMP/trace.jsonl" "$TMP/trace.err"; exit 1; }
}

stop_tracer() {
    kill "$TRACER"; wait "$TRACER" || true
    TRACER=
}

echo "bulk MB/s without ftptrace:   $(bulk 5)"
start_tracer
echo "bulk MB/s with ftptrace:      $(bulk 5)"
stop_tracer
echo "bulk MB/s without, again:     $(bulk 5)"

CGROUP=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
python3 "$TMP/baseline.py" "$CGROUP" > "$TMP/baseline.out" &
BASELINE=$!
for _ in $(seq 50); do grep -q attached "$TMP/baseline.out" && break; sleep 0.1; done
grep -q attached "$TMP/baseline.out" || { echo "empty programs not attached"; exit 1; }
sysctl -qw kernel.bpf_stats_enabled=1
start_tracer
phase "a) non-FTP bulk, MB/s" bulk 1
phase "b) FTP control, 20000 NOOPs" ip netns exec $CLI python3 "$TMP/noop.py"
stop_tracer
echo "ftptrace: $(grep -c '"kind":"ftp"' "$TMP/trace.jsonl") ftp lines; $(tail -1 "$TMP/trace.jsonl")"
start_tracer --passive-ports 5001-5001
phase "c) bulk on a traced data port, MB/s" bulk 1
stop_tracer
kill "$BASELINE"
BASELINE=
sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS"
echo "ftptrace (c): $(tail -1 "$TMP/trace.jsonl")"
