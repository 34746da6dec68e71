//! Connection churn, the load of issue 12: clients that open a TCP
//! connection and reset it at once, as fast as the host allows, against a
//! listener that accepts and closes. Each connection is a handful of state
//! changes and two resets for any tracer on its port.
//!
//! `churn serve ADDR PORT`: accept and close until killed.
//! `churn connect ADDR PORT SECONDS THREADS [LIMIT]`: connect and reset for
//! SECONDS (or until LIMIT connections), then print how many connected.

use std::{
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("churn: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let arg = |i: usize, what: &str| args.get(i).ok_or(format!("missing {what}"));
    let addr = |i: usize| -> Result<SocketAddr, String> {
        let ip: IpAddr = arg(i, "ADDR")?.parse().map_err(|e| format!("ADDR: {e}"))?;
        let port: u16 = arg(i + 1, "PORT")?
            .parse()
            .map_err(|e| format!("PORT: {e}"))?;
        Ok(SocketAddr::new(ip, port))
    };
    match arg(0, "serve or connect")?.as_str() {
        "serve" => serve(addr(1)?),
        "connect" => {
            let seconds: u64 = arg(3, "SECONDS")?.parse().map_err(|e| format!("{e}"))?;
            let threads: usize = arg(4, "THREADS")?.parse().map_err(|e| format!("{e}"))?;
            let limit: u64 = match args.get(5) {
                Some(limit) => limit.parse().map_err(|e| format!("LIMIT: {e}"))?,
                None => u64::MAX,
            };
            let done = connect(addr(1)?, Duration::from_secs(seconds), threads, limit);
            println!("{done}");
            Ok(())
        }
        other => Err(format!("unknown mode {other}")),
    }
}

fn serve(at: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(at).map_err(|e| format!("bind {at}: {e}"))?;
    // std listens with a backlog of 128: a full accept queue drops SYNs,
    // and each drop stalls a client for a second. (Listening again only
    // changes the backlog; the kernel caps it at somaxconn.)
    // SAFETY: a valid listening socket.
    if unsafe { libc::listen(listener.as_raw_fd(), 65535) } != 0 {
        return Err(format!("listen {at}: {}", std::io::Error::last_os_error()));
    }
    let acceptors: Vec<_> = (0..2)
        .map(|_| listener.try_clone().map_err(|e| format!("{e}")))
        .collect::<Result<_, _>>()?;
    let threads: Vec<_> = acceptors
        .into_iter()
        .map(|listener| {
            thread::spawn(move || {
                loop {
                    // A reset can reach an accepted connection first: not an error.
                    let _ = listener.accept();
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

/// Connections made by `threads` threads until `length` has passed or
/// `limit` connections were made.
fn connect(to: SocketAddr, length: Duration, threads: usize, limit: u64) -> u64 {
    // `started` reserves a connection within the limit, `done` counts the
    // ones made.
    let started = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + length;
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (started, done) = (Arc::clone(&started), Arc::clone(&done));
            thread::spawn(move || {
                while Instant::now() < end && started.fetch_add(1, Ordering::Relaxed) < limit {
                    match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
                        Ok(stream) => {
                            reset(&stream);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        // Refused or timed out: the slot is free again.
                        Err(_) => {
                            started.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    done.load(Ordering::Relaxed)
}

/// Closes with SO_LINGER 0: the kernel sends a reset, not a FIN.
fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
