//! `--metrics ADDR`: the page of `output/metrics.rs` over HTTP, for
//! Prometheus to scrape. One GET path and nothing else, so written here on
//! tokio's sockets rather than with an HTTP framework: every request is
//! hostile input, read with a size cap, a deadline and a cap on
//! connections at once; the page itself is made by the run's own loop,
//! which owns the counts, when a scrape asks.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc, oneshot},
};

/// The largest request head read: a scraper's is a few hundred bytes.
const MAX_REQUEST: usize = 8192;
/// How long a client gets to send its request and read the answer.
const CLIENT_DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const AT_ONCE: usize = 8;

/// A scrape's wish: the page, in OpenMetrics or Prometheus's text format.
pub struct PageWanted {
    pub openmetrics: bool,
    pub reply: oneshot::Sender<String>,
}

/// Binds `addr` (before the programs are attached: a port in use is an
/// error at once, not after the start line).
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on --metrics {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| anyhow::anyhow!("cannot listen on --metrics {addr}: {e}"))?;
    Ok(listener)
}

/// Serves `listener` until the runtime ends; each page is asked of
/// `pages`. Must run inside the runtime.
pub fn serve(
    listener: std::net::TcpListener,
    pages: mpsc::Sender<PageWanted>,
) -> anyhow::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let permits = Arc::new(Semaphore::new(AT_ONCE));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let pages = pages.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CLIENT_DEADLINE, answer(stream, pages)).await;
                drop(permit);
            });
        }
    });
    Ok(())
}

async fn answer(mut stream: TcpStream, pages: mpsc::Sender<PageWanted>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
        if head.len() > MAX_REQUEST {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let request = Request::parse(&head);
    match request {
        Some(Request {
            path: "/metrics",
            openmetrics,
            head_only,
            ..
        }) => {
            let (reply, page) = oneshot::channel();
            if pages.send(PageWanted { openmetrics, reply }).await.is_err() {
                return respond(&mut stream, "503 Service Unavailable", "text/plain", "").await;
            }
            let Ok(page) = page.await else {
                return respond(&mut stream, "503 Service Unavailable", "text/plain", "").await;
            };
            let kind = if openmetrics {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                "text/plain; version=0.0.4; charset=utf-8"
            };
            let body = if head_only { "" } else { page.as_str() };
            respond(&mut stream, "200 OK", kind, body).await
        }
        Some(_) => respond(&mut stream, "404 Not Found", "text/plain", "try /metrics\n").await,
        None => respond(&mut stream, "400 Bad Request", "text/plain", "").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    kind: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The little of a request that matters: a GET (or HEAD) of a path, and
/// whether the scraper takes OpenMetrics.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    path: &'a str,
    openmetrics: bool,
    head_only: bool,
}

impl<'a> Request<'a> {
    fn parse(head: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(head).ok()?;
        let mut lines = text.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let head_only = match first.next()? {
            "GET" => false,
            "HEAD" => true,
            _ => return None,
        };
        let target = first.next()?;
        if !first.next()?.starts_with("HTTP/1.") {
            return None;
        }
        let path = target.split('?').next()?;
        let openmetrics = lines.any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                name.eq_ignore_ascii_case("accept")
                    && value.contains("application/openmetrics-text")
            })
        });
        Some(Self {
            path,
            openmetrics,
            head_only,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_strictly() {
        assert_eq!(
            Request::parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Request {
                path: "/metrics",
                openmetrics: false,
                head_only: false
            })
        );
        let prometheus = b"GET /metrics?x=1 HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n";
        assert_eq!(
            Request::parse(prometheus).map(|r| (r.path, r.openmetrics)),
            Some(("/metrics", true))
        );
        assert_eq!(
            Request::parse(b"HEAD / HTTP/1.0\r\n\r\n").map(|r| r.head_only),
            Some(true)
        );
        for bad in [
            &b"POST /metrics HTTP/1.1\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET /metrics SPDY/3\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
            b"",
        ] {
            assert_eq!(Request::parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_scrape_gets_the_page_and_a_stranger_a_bounded_answer() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (pages, mut wanted) = mpsc::channel(4);
        serve(listener, pages).unwrap();
        tokio::spawn(async move {
            while let Some(PageWanted { openmetrics, reply }) = wanted.recv().await {
                let _ = reply.send(format!("page openmetrics={openmetrics}\n"));
            }
        });
        let ask = |request: Vec<u8>| async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(&request).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let page = ask(b"GET /metrics HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("version=0.0.4"), "{page}");
        assert!(page.ends_with("\r\n\r\npage openmetrics=false\n"), "{page}");
        let page =
            ask(b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n".to_vec())
                .await;
        assert!(page.ends_with("page openmetrics=true\n"), "{page}");
        assert!(
            ask(b"GET /x HTTP/1.1\r\n\r\n".to_vec())
                .await
                .starts_with("HTTP/1.1 404")
        );
        let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_REQUEST + 10));
        assert!(ask(huge).await.starts_with("HTTP/1.1 431"));
    }
}
