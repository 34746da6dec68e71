//! The plaintext of an FTPS control channel, where it exists: at the TLS
//! library's read and write calls in the FTP process (OpenSSL's `SSL_read`,
//! `SSL_write` and their `_ex` forms, GnuTLS's `gnutls_record_recv` and
//! `gnutls_record_send`), through uprobes on the library's file.
//!
//! A TLS object (an `SSL *`, a `gnutls_session_t`) does not say which
//! socket it speaks through. The kernel does: while a thread is inside one
//! of those calls or a handshake, the TCP socket it reads from passes
//! `tcp_rcv_space_adjust` (every `recvmsg` that copies bytes). If that
//! socket is an FTP control connection, the object is tied to it, by
//! process (`TLS_SOCKETS`). Only then are a call's bytes copied, so a data
//! connection's plaintext (file contents) never leaves its process. A TLS
//! handshake always reads the peer's first flight, so every control
//! channel's object is tied before its first `SSL_write`.
//!
//! The copy is the control channel's record, redacted in the same way
//! (`mask_secrets`), and marks the data port a decrypted `227`/`229` or
//! `PORT`/`EPRT` announces, as the clear channel's program does.
//!
//! Every function these programs run keeps its own stack under 64 bytes,
//! hence the many small subprograms and the records written field by field
//! into their ring buffer slots: a kernel may preempt a uprobe program, and
//! one that gives a function of 64 bytes or more a per-CPU private stack
//! (Debian's 7.2 does) lets another task's run of it overwrite that stack.
//! A pointer read back as 0 oopsed 7.2. `kernel::stack_budget` in user
//! space counts the stacks in the built object; the root tests read the
//! kernel's JIT (`tests/src/jit.rs`).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_probe_read_user},
    macros::{raw_tracepoint, uprobe, uretprobe},
    programs::{ProbeContext, RawTracePointContext, RetProbeContext},
};
use ftptrace_common::{
    CONTROL_CAPTURE_BYTES, CONTROL_HEAD_BYTES, CONTROL_TAIL_BYTES, ControlRecord, ControlSegment,
    ProbeId, direction, port_role, segment_flags,
};

use crate::{
    EVENTS, OFFSETS, TLS_CALLS, TLS_SOCKETS,
    control_channel::{clear_packet_fields, head_len, mark, redact, tail_len, within_budget},
    kernel_read::{net_inum, port_roles},
    record::{
        count_lost, count_throttled, emit_sock_in_place, sock_common, submit_record, write_header,
        write_socket_ends,
    },
};

/// What a thread is doing inside the TLS library.
pub mod call_kind {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const HANDSHAKE: u8 = 3;
    /// `SSL_get_verify_result`: the return value is the `X509_V_*` code.
    pub const VERIFY_RESULT: u8 = 4;
    /// `gnutls_certificate_verify_peers2/3`: 0 returned, the status bits
    /// are at `count_at`.
    pub const VERIFY_STATUS_AT: u8 = 5;
    /// `gnutls_session_get_verify_cert_status`: the return value is the
    /// status bits.
    pub const VERIFY_STATUS: u8 = 6;
}

/// Which library a verification result is of, a [`ProbeId::TlsVerify`]
/// record's `arg2`.
pub mod verifier {
    pub const OPENSSL: i64 = 0;
    pub const GNUTLS: i64 = 1;
}

/// A TLS call in progress, by thread (`TLS_CALLS`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsCall {
    /// The `SSL *` or `gnutls_session_t`.
    object: u64,
    /// The caller's buffer.
    buf: u64,
    /// The `_ex` forms' `size_t *` that receives the count; 0 when the
    /// return value is the count.
    count_at: u64,
    kind: u8,
    /// The return value is a C `int` (OpenSSL), not a `ssize_t` (GnuTLS).
    int_return: u8,
    _pad: [u8; 6],
    /// A handshake's FTP socket (control or data), once the call read it.
    sk: u64,
}

/// A TLS object of one process, the key of `TLS_SOCKETS`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsObject {
    tgid: u64,
    object: u64,
}

/// The control connection's socket an object speaks through, and the
/// plaintext bytes each way so far (the records' `seq`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsSocket {
    sk: u64,
    /// Bytes the process read (index 0) and wrote (1).
    bytes: [u32; 2],
}

/// Notes the call for its return; a write to a tied object is sent now,
/// before its ciphertext leaves: a `227`/`229` must mark its port (and
/// reach user space) before the client can connect to it.
#[inline(always)]
fn enter(object: u64, buf: u64, count_at: u64, kind: u8, int_return: u8, len: u64) -> u32 {
    note_call(
        object,
        buf,
        count_at,
        u16::from(kind) | u16::from(int_return) << 8,
    );
    if kind == call_kind::WRITE && len > 0 && len <= u64::from(u32::MAX) {
        write_entered(object, buf, len as u32, bpf_get_current_pid_tgid() >> 32);
    }
    0
}

/// Notes the thread's call in `TLS_CALLS`: the one function here with a
/// [`TlsCall`] on its stack, and nothing else (`kind` and `int_return` in
/// one argument: a fifth would be spilled to the stack across the helper
/// call).
#[inline(never)]
fn note_call(object: u64, buf: u64, count_at: u64, kind_and_int_return: u16) {
    let thread = bpf_get_current_pid_tgid();
    let call = TlsCall {
        object,
        buf,
        count_at,
        kind: kind_and_int_return as u8,
        int_return: (kind_and_int_return >> 8) as u8,
        _pad: [0; 6],
        sk: 0,
    };
    let _ = TLS_CALLS.insert(&thread, &call, 0);
}

/// A write on `object` of process `tgid` began: sends its bytes if the
/// object is tied. A subprogram to keep each function's stack small (see
/// the module's note).
#[inline(never)]
fn write_entered(object: u64, buf: u64, len: u32, tgid: u64) {
    let key = TlsObject { tgid, object };
    // SAFETY: a map value read once.
    if let Some(tied) = unsafe { TLS_SOCKETS.get(&key) } {
        // Not counted yet: the return counts what was written, so a
        // retried write repeats these bytes at the same place, and
        // user space feeds them once.
        send(buf, len, tied.bytes[1], true, tied.sk);
    }
}

/// `SSL_read(ssl, buf, num)`
#[uprobe]
pub fn openssl_read(ctx: ProbeContext) -> u32 {
    let (Some(ssl), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    enter(ssl, buf, 0, call_kind::READ, 1, 0)
}

/// `SSL_read_ex(ssl, buf, num, size_t *readbytes)`
#[uprobe]
pub fn openssl_read_ex(ctx: ProbeContext) -> u32 {
    let (Some(ssl), Some(buf), Some(count_at)) =
        (ctx.arg::<u64>(0), ctx.arg::<u64>(1), ctx.arg::<u64>(3))
    else {
        return 0;
    };
    enter(ssl, buf, count_at, call_kind::READ, 1, 0)
}

/// `SSL_write(ssl, buf, num)`
#[uprobe]
pub fn openssl_write(ctx: ProbeContext) -> u32 {
    let (Some(ssl), Some(buf), Some(num)) =
        (ctx.arg::<u64>(0), ctx.arg::<u64>(1), ctx.arg::<i32>(2))
    else {
        return 0;
    };
    enter(ssl, buf, 0, call_kind::WRITE, 1, num.max(0) as u64)
}

/// `SSL_write_ex(ssl, buf, num, size_t *written)`
#[uprobe]
pub fn openssl_write_ex(ctx: ProbeContext) -> u32 {
    let (Some(ssl), Some(buf), Some(num), Some(count_at)) = (
        ctx.arg::<u64>(0),
        ctx.arg::<u64>(1),
        ctx.arg::<u64>(2),
        ctx.arg::<u64>(3),
    ) else {
        return 0;
    };
    enter(ssl, buf, count_at, call_kind::WRITE, 1, num)
}

/// `SSL_do_handshake(ssl)`, which `SSL_accept` and `SSL_connect` call.
#[uprobe]
pub fn openssl_handshake(ctx: ProbeContext) -> u32 {
    let Some(ssl) = ctx.arg::<u64>(0) else {
        return 0;
    };
    enter(ssl, 0, 0, call_kind::HANDSHAKE, 1, 0)
}

/// `SSL_get_verify_result(ssl)`: what the certificate check said, which
/// clients ask when a handshake fails (and curl when it succeeds).
#[uprobe]
pub fn openssl_verify_result(ctx: ProbeContext) -> u32 {
    let Some(ssl) = ctx.arg::<u64>(0) else {
        return 0;
    };
    enter(ssl, 0, 0, call_kind::VERIFY_RESULT, 0, 0)
}

/// OpenSSL's `ERR_LIB_SSL`: an error libssl recorded.
const ERR_LIB_SSL: i32 = 20;

/// `ERR_vset_error(lib, reason, fmt, args)` in libcrypto: OpenSSL records
/// why a TLS call failed, a received alert among the reasons
/// (`SSL_AD_REASON_OFFSET` + its description). Sent only from inside a TLS
/// call on an FTP connection: the socket its handshake read, or its tied
/// control connection.
#[uprobe]
pub fn openssl_error(ctx: ProbeContext) -> u32 {
    let (Some(lib), Some(reason)) = (ctx.arg::<i32>(0), ctx.arg::<i32>(1)) else {
        return 0;
    };
    if lib != ERR_LIB_SSL {
        return 0;
    }
    ssl_error(i64::from(reason));
    0
}

/// An `ERR_LIB_SSL` error with `reason` inside the thread's TLS call, sent
/// on the socket its handshake read or its object's control connection.
#[inline(never)]
fn ssl_error(reason: i64) {
    let thread = bpf_get_current_pid_tgid();
    let Some(call) = TLS_CALLS.get_ptr(&thread) else {
        return;
    };
    // SAFETY: a map value, read field by field.
    let (sk, object) = unsafe { ((*call).sk, (*call).object) };
    let sk = if sk != 0 {
        sk
    } else {
        tied_socket(object, thread >> 32)
    };
    emit_sock_in_place(ProbeId::TlsError, sk, reason, verifier::OPENSSL);
}

/// `gnutls_alert_send(session, level, desc)`: an alert this end sends. A
/// GnuTLS handshake that refuses its peer sends one itself, `gnutls_bye`
/// sends close_notify. Sent on the socket the thread's handshake read, or
/// on the session's tied control connection (a data connection's closing
/// alert, outside a handshake, is not sent: nothing ties its session).
/// `arg1` is the level (1 warning, 2 fatal) << 8 | the description.
#[uprobe]
pub fn gnutls_alert_sent(ctx: ProbeContext) -> u32 {
    let (Some(session), Some(level), Some(description)) =
        (ctx.arg::<u64>(0), ctx.arg::<u32>(1), ctx.arg::<u32>(2))
    else {
        return 0;
    };
    let alert = (i64::from(level & 0xff) << 8) | i64::from(description & 0xff);
    alert_sent(session, alert);
    0
}

/// The alert `alert` that `session` sends, on its call's or tied socket.
#[inline(never)]
fn alert_sent(session: u64, alert: i64) {
    let thread = bpf_get_current_pid_tgid();
    let in_call = match TLS_CALLS.get_ptr(&thread) {
        // SAFETY: a map value, read field by field.
        Some(call) if unsafe { (*call).object } == session => unsafe { (*call).sk },
        _ => 0,
    };
    let sk = if in_call != 0 {
        in_call
    } else {
        tied_socket(session, thread >> 32)
    };
    emit_sock_in_place(ProbeId::TlsAlertSent, sk, alert, verifier::GNUTLS);
}

/// The control connection's socket `object` of process `tgid` is tied to,
/// 0 if none.
#[inline(never)]
fn tied_socket(object: u64, tgid: u64) -> u64 {
    let key = TlsObject { tgid, object };
    // SAFETY: a map value read once.
    match unsafe { TLS_SOCKETS.get(&key) } {
        Some(tied) => tied.sk,
        None => 0,
    }
}

/// `gnutls_certificate_verify_peers2(session, unsigned *status)`
#[uprobe]
pub fn gnutls_verify_peers2(ctx: ProbeContext) -> u32 {
    let (Some(session), Some(status)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    enter(session, 0, status, call_kind::VERIFY_STATUS_AT, 1, 0)
}

/// `gnutls_certificate_verify_peers3(session, hostname, unsigned *status)`
#[uprobe]
pub fn gnutls_verify_peers3(ctx: ProbeContext) -> u32 {
    let (Some(session), Some(status)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(2)) else {
        return 0;
    };
    enter(session, 0, status, call_kind::VERIFY_STATUS_AT, 1, 0)
}

/// `gnutls_session_get_verify_cert_status(session)`: the status of the
/// check a handshake made itself (`gnutls_session_set_verify_cert`).
#[uprobe]
pub fn gnutls_verify_status(ctx: ProbeContext) -> u32 {
    let Some(session) = ctx.arg::<u64>(0) else {
        return 0;
    };
    enter(session, 0, 0, call_kind::VERIFY_STATUS, 1, 0)
}

/// `gnutls_record_recv(session, data, size)`
#[uprobe]
pub fn gnutls_recv(ctx: ProbeContext) -> u32 {
    let (Some(session), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    enter(session, buf, 0, call_kind::READ, 0, 0)
}

/// `gnutls_record_send(session, data, size)`
#[uprobe]
pub fn gnutls_send(ctx: ProbeContext) -> u32 {
    let (Some(session), Some(buf), Some(size)) =
        (ctx.arg::<u64>(0), ctx.arg::<u64>(1), ctx.arg::<u64>(2))
    else {
        return 0;
    };
    enter(session, buf, 0, call_kind::WRITE, 0, size)
}

/// `gnutls_handshake(session)`
#[uprobe]
pub fn gnutls_handshake(ctx: ProbeContext) -> u32 {
    let Some(session) = ctx.arg::<u64>(0) else {
        return 0;
    };
    enter(session, 0, 0, call_kind::HANDSHAKE, 0, 0)
}

/// `tcp_rcv_space_adjust(sk)`: a `recvmsg` on `sk` copied bytes. If the
/// thread is inside a TLS call and `sk` is a control connection, the call's
/// object speaks through it; a handshake on any FTP connection notes the
/// socket for its end (a data connection's object is never tied: its
/// plaintext is a file's). Every TCP read on the host passes here: the port
/// test comes first.
#[raw_tracepoint(tracepoint = "tcp_rcv_space_adjust")]
pub fn tls_socket_read(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let _ = tie(sk);
    0
}

#[inline(always)]
fn tie(sk: u64) -> Result<(), i64> {
    let o = OFFSETS.get(0).ok_or(0)?;
    let common = sock_common(sk, o)?;
    let local_port = u16::from_ne_bytes([common[2], common[3]]);
    let remote_port = u16::from_be_bytes([common[0], common[1]]);
    let roles = port_roles(local_port) | port_roles(remote_port);
    if roles & port_role::TRACED == 0 {
        return Ok(());
    }
    let thread = bpf_get_current_pid_tgid();
    let Some(call) = TLS_CALLS.get_ptr_mut(&thread) else {
        return Ok(());
    };
    // SAFETY: a map value, read and written in place by this thread only.
    let (kind, object) = unsafe { ((*call).kind, (*call).object) };
    if kind == call_kind::HANDSHAKE {
        // SAFETY: as above.
        unsafe { (*call).sk = sk };
    }
    if roles & port_role::CONTROL == 0 {
        return Ok(());
    }
    let key = TlsObject {
        tgid: thread >> 32,
        object,
    };
    // SAFETY: a map value read once.
    if let Some(known) = unsafe { TLS_SOCKETS.get(&key) }
        && known.sk == sk
    {
        return Ok(());
    }
    let fresh = TlsSocket { sk, bytes: [0; 2] };
    let _ = TLS_SOCKETS.insert(&key, &fresh, 0);
    Ok(())
}

/// The return of every call above: a read or write on a tied object sends
/// its bytes as a [`ProbeId::TlsPlaintext`] record.
#[uretprobe]
pub fn tls_return(ctx: RetProbeContext) -> u32 {
    let thread = bpf_get_current_pid_tgid();
    let Some(call) = TLS_CALLS.get_ptr(&thread) else {
        return 0;
    };
    // SAFETY: a map value, read field by field (not copied onto the
    // stack) before it is removed.
    let (object, buf, count_at, kind, int_return, sk) = unsafe {
        (
            (*call).object,
            (*call).buf,
            (*call).count_at,
            (*call).kind,
            (*call).int_return,
            (*call).sk,
        )
    };
    let _ = TLS_CALLS.remove(&thread);
    let ret: i64 = ctx.ret();
    let ret = if int_return != 0 {
        i64::from(ret as i32)
    } else {
        ret
    };
    if kind == call_kind::HANDSHAKE {
        handshake_ended(sk, ret, int_return != 0);
    } else if kind >= call_kind::VERIFY_RESULT {
        verified(kind, object, count_at, ret);
    } else if ret > 0 {
        transferred(object, buf, count_at, kind == call_kind::WRITE, ret);
    }
    0
}

/// A read or write on `object` returned `ret` (> 0): counts its bytes on
/// the tied object and sends a read's (a write was sent as it began).
#[inline(never)]
fn transferred(object: u64, buf: u64, count_at: u64, writing: bool, ret: i64) {
    let count = if count_at != 0 {
        let mut count = 0u64;
        // SAFETY: reads 8 bytes of the caller's memory into a local.
        let read = unsafe {
            bpf_probe_read_user(
                (&raw mut count).cast(),
                8,
                count_at as *const core::ffi::c_void,
            )
        };
        if read != 0 {
            return;
        }
        count
    } else {
        ret as u64
    };
    if count == 0 || count > u64::from(u32::MAX) {
        return;
    }
    let key = TlsObject {
        tgid: bpf_get_current_pid_tgid() >> 32,
        object,
    };
    let Some(tied) = TLS_SOCKETS.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: a map value, written in place.
    let (sk, seq) = unsafe {
        let at = &mut (*tied).bytes[usize::from(writing)];
        let seq = *at;
        *at = seq.wrapping_add(count as u32);
        ((*tied).sk, seq)
    };
    if !writing {
        send(buf, count as u32, seq, false, sk);
    }
}

/// GnuTLS's returns that do not end a handshake: call again
/// (`GNUTLS_E_AGAIN`, `GNUTLS_E_INTERRUPTED`), or a warning the caller may
/// pass over (`GNUTLS_E_WARNING_ALERT_RECEIVED`, `GNUTLS_E_REHANDSHAKE`,
/// `GNUTLS_E_GOT_APPLICATION_DATA`).
const GNUTLS_NOT_OVER: [i64; 5] = [-28, -52, -16, -37, -38];

/// A handshake call that read FTP socket `sk` returned: sent unless the
/// return only asks to call again (OpenSSL's negative return may also be a
/// failure; only `SSL_get_error` could tell, which a probe cannot call).
#[inline(never)]
fn handshake_ended(sk: u64, ret: i64, openssl: bool) {
    if sk == 0 {
        return;
    }
    let library = if openssl {
        if ret < 0 {
            return;
        }
        verifier::OPENSSL
    } else {
        if GNUTLS_NOT_OVER.contains(&ret) {
            return;
        }
        verifier::GNUTLS
    };
    emit_sock_in_place(ProbeId::TlsHandshake, sk, ret, library);
}

/// A certificate check's result on a tied object, as a socket record of
/// its control connection: `arg1` the library's code (OpenSSL's `X509_V_*`,
/// GnuTLS's status bits, 0 for a certificate that passed), `arg2` which
/// library ([`verifier`]).
#[inline(never)]
fn verified(kind: u8, object: u64, status_at: u64, ret: i64) {
    let (code, library) = match kind {
        call_kind::VERIFY_RESULT => (ret, verifier::OPENSSL),
        call_kind::VERIFY_STATUS => (ret & 0xffff_ffff, verifier::GNUTLS),
        _ => {
            // The call failed: no status was written.
            if ret != 0 {
                return;
            }
            let mut status = 0u32;
            // SAFETY: reads 4 bytes of the caller's memory into a local.
            let read = unsafe {
                bpf_probe_read_user(
                    (&raw mut status).cast(),
                    4,
                    status_at as *const core::ffi::c_void,
                )
            };
            if read != 0 {
                return;
            }
            (i64::from(status), verifier::GNUTLS)
        }
    };
    let key = TlsObject {
        tgid: bpf_get_current_pid_tgid() >> 32,
        object,
    };
    // SAFETY: a map value read once.
    let Some(tied) = (unsafe { TLS_SOCKETS.get(&key) }) else {
        return;
    };
    emit_sock_in_place(ProbeId::TlsVerify, tied.sk, code, library);
}

/// Sends `len` bytes a thread read from or wrote to a tied object, within
/// the connection's budget, if its socket is still an FTP control socket:
/// the record built in its ring buffer slot, not on the stack (see
/// `record::write_socket_ends`).
#[inline(never)]
fn send(buf: u64, len: u32, seq: u32, writing: bool, sk: u64) {
    if !budget_allows(sk) {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<ControlRecord>(0) else {
        count_lost();
        return;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is the reserved, exclusively owned ring buffer slot;
    // every field is written here or by `capture` before it is submitted.
    // What a call below needs again is read back from the slot, not kept
    // in a register the call would spill to the stack.
    let captured = unsafe {
        let segment = &raw mut (*record).segment;
        (*segment).sk = sk;
        (*segment).cookie = 0;
        (*segment).seq = seq;
        (*segment).payload_len = len;
        (*segment).direction = if writing {
            direction::EGRESS
        } else {
            direction::INGRESS
        };
        clear_packet_fields(segment);
        if write_socket_ends(&raw mut (*segment).ends, sk) < 0 {
            entry.discard(0);
            return;
        }
        let netns = match OFFSETS.get(0) {
            Some(o) => net_inum(sk, o.sock_net, o),
            None => 0,
        };
        // The calling thread: the plaintext is copied in its own call.
        write_header(&raw mut (*record).header, ProbeId::TlsPlaintext, netns);
        // The server's words: what a server end writes, or a client end
        // reads.
        let local_is_server = port_roles((*segment).ends.local_port) & port_role::CONTROL != 0;
        let writing = (*segment).direction == direction::EGRESS;
        let from_server = u32::from(local_is_server == writing);
        capture(segment, buf, (*segment).payload_len, from_server)
    };
    if captured {
        submit_record(entry);
    } else {
        entry.discard(0);
    }
}

/// [`within_budget`], counting a refusal: a subprogram for the stack's
/// sake (see the module's note).
#[inline(never)]
fn budget_allows(sk: u64) -> bool {
    if within_budget(sk) {
        return true;
    }
    count_throttled();
    false
}

/// Copies the head and tail of `len` bytes at `buf` into the record's
/// segment, then redacts and marks them; false if the head is unreadable.
///
/// Not inlined, nor are the redaction and the marking in it, and called
/// with the rest of the record written: 5.10's verifier stops tracking
/// which values matter at a call (LLVM's `memset`s) and then tells states
/// apart by every value they hold. Inlined, the masking and port loops
/// were walked once per path to them (socket family, failed reads, the
/// return value's width, the head loop's exits...), and `tls_return` and
/// `openssl_write` ran past the limit of a million instructions; a
/// subprogram is walked once per state its caller keeps, here little more
/// than the slot.
///
/// # Safety
/// `segment` is in a reserved ring buffer slot this program owns, every
/// field but `data` and `captured_len` written.
#[inline(never)]
unsafe fn capture(segment: *mut ControlSegment, buf: u64, len: u32, from_server: u32) -> bool {
    let head = head_len(len);
    // SAFETY: the caller's slot; `head` and `tail` are within `data`.
    unsafe {
        let data = &raw mut (*segment).data;
        if bpf_probe_read_user(data.cast(), head, buf as *const core::ffi::c_void) != 0 {
            return false;
        }
        (*segment).captured_len = head as u16;
        if len > CONTROL_HEAD_BYTES as u32 {
            let rest = len - CONTROL_HEAD_BYTES as u32;
            let tail = tail_len(rest);
            let into = data.cast::<u8>().add(CONTROL_HEAD_BYTES);
            let from = buf + u64::from(len - tail);
            if bpf_probe_read_user(into.cast(), tail, from as *const core::ffi::c_void) == 0 {
                (*segment).captured_len = (CONTROL_HEAD_BYTES as u32 + tail) as u16;
                if rest > CONTROL_TAIL_BYTES as u32 {
                    (*segment).flags |= segment_flags::TAIL_APART;
                }
            }
        }
        redact_apart(segment);
        mark_apart(segment, from_server);
    }
    true
}

/// [`redact`] as its own subprogram, for the reason `capture` is one.
///
/// # Safety
/// As [`redact`].
#[inline(never)]
unsafe fn redact_apart(segment: *mut ControlSegment) {
    // SAFETY: the caller's guarantee.
    unsafe { redact(segment) }
}

/// [`mark`] as its own subprogram, like [`redact_apart`].
///
/// # Safety
/// As [`mark`].
#[inline(never)]
unsafe fn mark_apart(segment: *mut ControlSegment, from_server: u32) {
    // SAFETY: the caller's guarantee.
    unsafe { mark::<true>(segment, from_server) }
}

// Keeps CONTROL_CAPTURE_BYTES in view: the record's `data` holds the head
// and the tail.
const _: () = assert!(CONTROL_HEAD_BYTES + CONTROL_TAIL_BYTES == CONTROL_CAPTURE_BYTES);
