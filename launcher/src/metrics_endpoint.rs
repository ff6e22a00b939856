//! `--metrics-listen`: `GET /metrics` in the Prometheus (OpenMetrics) text format, for a
//! server shard or a worker.
//!
//! A minimal HTTP/1.1 responder, not a web server: one request per connection, then the
//! connection is closed. The network may be hostile, so everything is bounded: the
//! request head ([`MAX_REQUEST_BYTES`]), the time to send it ([`READ_TIMEOUT`]) and the
//! connections served at once ([`MAX_CONNECTIONS`]; further ones wait in the backlog).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The largest request head read (request line and headers); larger ones get 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// How long a client has to send its request head; slower ones get 408.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// The content type of the exposition that `prometheus-client` writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One HTTP response, before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code and reason, e.g. `200 OK`.
    pub status: &'static str,
    /// Its content type.
    pub content_type: &'static str,
    /// Its body.
    pub body: String,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
        }
    }

    /// The bytes on the wire: status line, headers, body; the connection closes after it.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.status.starts_with("405") {
            out.push_str("Allow: GET\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

/// The answer to a request whose head (up to and including its blank line) is `head`:
/// the exposition of `registry` for `GET /metrics` (a query string is ignored), 404 for
/// any other path, 405 for any other method, 400 for anything that is not HTTP/1.x.
#[must_use]
pub fn respond(head: &[u8], registry: &Registry) -> Response {
    let Some(line) = head
        .split(|&b| b == b'\n')
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
    else {
        return Response::text("400 Bad Request", "the request line is not UTF-8");
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::text("400 Bad Request", "expected `METHOD /path HTTP/1.1`");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::text("400 Bad Request", "only HTTP/1.x is served");
    }
    if method != "GET" {
        return Response::text("405 Method Not Allowed", "only GET is served");
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Response::text("404 Not Found", "not found; metrics are at /metrics");
    }
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => Response {
            status: "200 OK",
            content_type: OPENMETRICS_CONTENT_TYPE,
            body,
        },
        Err(_) => Response::text("500 Internal Server Error", "encoding the metrics failed"),
    }
}

/// Why a request head could not be read whole.
#[derive(Debug)]
enum ReadError {
    /// Longer than [`MAX_REQUEST_BYTES`] without its blank line.
    TooLarge,
    /// The client closed the connection before its blank line, or the read failed.
    Closed,
}

/// Reads a request head, up to and including its blank line (`\r\n\r\n`).
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, ReadError> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        // Look for the terminator across the chunk boundary too.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(from + end + 4);
            return Ok(head);
        }
        if head.len() >= MAX_REQUEST_BYTES {
            return Err(ReadError::TooLarge);
        }
    }
}

/// Answers one connection's request and closes it.
async fn serve_connection(mut stream: TcpStream, registry: &Registry, read_timeout: Duration) {
    let response = match tokio::time::timeout(read_timeout, read_head(&mut stream)).await {
        Err(_) => Response::text("408 Request Timeout", "the request head took too long"),
        Ok(Err(ReadError::TooLarge)) => Response::text(
            "431 Request Header Fields Too Large",
            &format!("the request head exceeds {MAX_REQUEST_BYTES} bytes"),
        ),
        Ok(Err(ReadError::Closed)) => return,
        Ok(Ok(head)) => respond(&head, registry),
    };
    let write = async {
        stream.write_all(&response.to_bytes()).await?;
        stream.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(read_timeout, write).await {
        tracing::debug!(error = %e, "metrics client too slow to read its response");
    }
}

/// Serves `registry` at `GET /metrics` on `listener` until `shutdown` is cancelled.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    serve_with_timeout(listener, registry, shutdown, READ_TIMEOUT).await;
}

/// [`serve_metrics`] with another read timeout (tests).
async fn serve_with_timeout(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    read_timeout: Duration,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("never closed"),
            () = shutdown.cancelled() => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let registry = Arc::clone(&registry);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = serve_connection(stream, &registry, read_timeout) => {}
                () = shutdown.cancelled() => {}
            }
            drop(permit);
        });
    }
}

/// Binds `address` for the metrics endpoint and serves `registry` there until `shutdown`.
/// Returns the bound address.
///
/// # Errors
/// The OS error when `address` cannot be bound.
pub async fn spawn_metrics_endpoint(
    address: &str,
    registry: Registry,
    shutdown: CancellationToken,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving metrics at /metrics");
    tokio::spawn(serve_metrics(listener, Arc::new(registry), shutdown));
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    fn registry() -> Registry {
        let mut registry = Registry::default();
        let counter: Counter = Counter::default();
        counter.inc_by(7);
        registry.register("downpour_things", "Things", counter);
        registry
    }

    #[test]
    fn get_metrics_serves_the_exposition() {
        let r = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &registry());
        assert_eq!(r.status, "200 OK");
        assert_eq!(r.content_type, OPENMETRICS_CONTENT_TYPE);
        assert!(r.body.contains("downpour_things_total 7\n"), "{}", r.body);
        let r = respond(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", &registry());
        assert_eq!(r.status, "200 OK");
    }

    #[test]
    fn other_paths_methods_and_garbage_are_refused() {
        let reg = registry();
        assert_eq!(
            respond(b"GET / HTTP/1.1\r\n\r\n", &reg).status,
            "404 Not Found"
        );
        assert_eq!(
            respond(b"GET /metricsx HTTP/1.1\r\n\r\n", &reg).status,
            "404 Not Found"
        );
        let post = respond(b"POST /metrics HTTP/1.1\r\n\r\n", &reg);
        assert_eq!(post.status, "405 Method Not Allowed");
        assert!(
            String::from_utf8(post.to_bytes())
                .unwrap()
                .contains("Allow: GET\r\n")
        );
        for bad in [
            &b"\xff\xfe /metrics HTTP/1.1\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET /metrics HTTP/2.0\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(respond(bad, &reg).status, "400 Bad Request", "{bad:?}");
        }
    }

    /// Sends `request` to a live endpoint and returns the whole response.
    async fn exchange(request: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_metrics(
            listener,
            Arc::new(registry()),
            shutdown.clone(),
        ));
        let mut stream = TcpStream::connect(address).await.unwrap();
        // The server may answer and close before all of an oversized request is written.
        let _ = stream.write_all(&request).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        shutdown.cancel();
        server.await.unwrap();
        String::from_utf8_lossy(&response).into_owned()
    }

    #[tokio::test]
    async fn a_live_endpoint_answers_and_closes() {
        let response = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("downpour_things_total 7\n"), "{response}");
        assert!(response.ends_with("# EOF\n"), "{response}");
        let response = exchange(b"GET /weights HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(
            response.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{response}"
        );
    }

    #[tokio::test]
    async fn an_oversized_request_head_gets_431() {
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Junk: ".to_vec();
        request.resize(MAX_REQUEST_BYTES + 100, b'a');
        let response = exchange(request).await;
        assert!(
            response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{response}"
        );
    }

    #[tokio::test]
    async fn a_silent_client_gets_408_after_the_read_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_with_timeout(
            listener,
            Arc::new(registry()),
            shutdown.clone(),
            Duration::from_millis(200),
        ));
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{response}"
        );
        shutdown.cancel();
    }
}
