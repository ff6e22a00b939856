//! The server's listener: connections bounded in number and in how long they may stay
//! silent before speaking HTTP/2.
//!
//! A TCP connection that never sends the HTTP/2 preface would otherwise hold a file
//! descriptor for ever; a few thousand of them exhaust the server. Here every accepted
//! connection must send the 24-byte preface within `handshake_timeout`; at most
//! `max_pending_connections` wait for theirs at once, and when a new one comes the oldest
//! waiting one is closed, so sockets that never speak cannot keep a real client out (a real
//! client sends its preface at once). At most `max_connections` connections that did speak
//! are served at once; one beyond is closed at once. What tonic receives replays the
//! preface it consumed, so HTTP/2 sees the connection as it came.
//!
//! Over TLS the first bytes are the TLS handshake, not the preface: there the connection
//! must send a TLS handshake record's first byte (0x16) within `handshake_timeout`, which is
//! only peeked at, never consumed; tonic's TLS acceptor then bounds the rest of the
//! handshake, and HTTP/2's preface follows inside TLS.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::limits::TransportLimits;

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The content type of a TLS handshake record, a TLS client's first byte (RFC 8446, 5.1).
const TLS_HANDSHAKE: u8 = 0x16;

/// What a connection's first bytes must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// The HTTP/2 preface, in plaintext (consumed, then replayed).
    Preface,
    /// A TLS handshake record (peeked at only).
    Tls,
}

/// A connection that sent the HTTP/2 preface, holding its place under the connection limit.
#[derive(Debug)]
pub struct Prefaced {
    /// The socket.
    stream: TcpStream,
    /// Bytes of [`PREFACE`] already handed back to the reader (all 24 once replayed).
    replayed: usize,
    /// Its place under `max_connections`, given back when the connection is dropped.
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Prefaced {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.replayed < PREFACE.len() {
            let rest = &PREFACE[self.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefaced {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Prefaced {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

/// Connections waiting for their preface, oldest first, each with what closes it.
///
/// Invariant: at most `max_pending_connections` entries; an entry is removed by its own
/// handshake task when it ends, or by the accept loop when it evicts it.
#[derive(Debug, Default)]
struct Pending {
    /// `(id, close)` per waiting connection.
    waiting: VecDeque<(u64, CancellationToken)>,
    /// The id of the next connection.
    next_id: u64,
}

/// Accepts connections on `listener` under `limits` until `shutdown` is cancelled; the
/// stream yields those that sent their preface, for `serve_with_incoming_shutdown`.
pub fn bounded_incoming(
    listener: TcpListener,
    limits: TransportLimits,
    first: FirstBytes,
    shutdown: CancellationToken,
) -> ReceiverStream<io::Result<Prefaced>> {
    let (ready, incoming) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, limits, first, shutdown, ready));
    ReceiverStream::new(incoming)
}

async fn accept_loop(
    listener: TcpListener,
    limits: TransportLimits,
    first: FirstBytes,
    shutdown: CancellationToken,
    ready: mpsc::Sender<io::Result<Prefaced>>,
) {
    let served = Arc::new(Semaphore::new(limits.max_connections));
    // A std mutex: held only to push, pop or remove an entry, never across an await.
    let pending = Arc::new(Mutex::new(Pending::default()));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
            () = ready.closed() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was accepted:
                // wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let close = CancellationToken::new();
        let id = {
            let mut p = pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if p.waiting.len() >= limits.max_pending_connections
                && let Some((_, oldest)) = p.waiting.pop_front()
            {
                oldest.cancel();
            }
            let id = p.next_id;
            p.next_id += 1;
            p.waiting.push_back((id, close.clone()));
            id
        };
        tokio::spawn(handshake(
            stream,
            id,
            close,
            Arc::clone(&pending),
            Arc::clone(&served),
            (limits, first),
            ready.clone(),
        ));
    }
}

/// Waits for one connection's preface, then hands it on if there is room.
async fn handshake(
    mut stream: TcpStream,
    id: u64,
    close: CancellationToken,
    pending: Arc<Mutex<Pending>>,
    served: Arc<Semaphore>,
    (limits, first): (TransportLimits, FirstBytes),
    ready: mpsc::Sender<io::Result<Prefaced>>,
) {
    let mut preface = [0u8; 24];
    let mut tls_byte = [0u8; 1];
    let outcome = tokio::select! {
        read = tokio::time::timeout(limits.handshake_timeout, async {
            match first {
                FirstBytes::Preface => stream.read_exact(&mut preface).await.map(|_| &preface == PREFACE),
                FirstBytes::Tls => stream.peek(&mut tls_byte).await.map(|n| n == 1 && tls_byte[0] == TLS_HANDSHAKE),
            }
        }) => match read {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err("not an HTTP/2 preface or TLS handshake"),
            Ok(Err(_)) => Err("closed before its preface"),
            Err(_) => Err("no preface within the handshake timeout"),
        },
        () = close.cancelled() => Err("closed to make room for a newer connection"),
    };
    // Over TLS nothing was consumed: there is nothing to replay.
    let replayed = match first {
        FirstBytes::Preface => 0,
        FirstBytes::Tls => PREFACE.len(),
    };
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .waiting
        .retain(|(i, _)| *i != id);
    if let Err(why) = outcome {
        tracing::debug!(why, "connection closed");
        return;
    }
    let Ok(permit) = served.try_acquire_owned() else {
        tracing::warn!(
            limit = limits.max_connections,
            "connection refused: the server serves its limit of connections (limits.max_connections)"
        );
        return;
    };
    let _ = ready
        .send(Ok(Prefaced {
            stream,
            replayed,
            _permit: permit,
        }))
        .await;
}
