//! How the collector's sockets are served: accept loops (TCP_NODELAY set on every accepted socket, TLS
//! handshakes off the accept path and under a deadline), the HTTP server with header-read and idle
//! timeouts, and authentication of the query surfaces.
//!
//! With `[collector.tls]`, both ports speak TLS only (a plaintext client fails the handshake). The HTTP API
//! and the gRPC Query service then answer only a client with a certificate from `client-ca` or a bearer
//! token from `api-token-file`; `/healthz` and `grpc.health.v1` stay open for liveness probes.

use std::collections::HashMap;
use std::future::Future as _;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{Request, State as AxState};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use super::bucket::TokenBucket;
use super::state::IngestStats;
use crate::tls::ServerTls;

/// Longest a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Longest an HTTP client may take to send its request headers.
const HEADER_READ: Duration = Duration::from_secs(10);
/// An HTTP connection with no traffic this long is closed.
const HTTP_IDLE: Duration = Duration::from_secs(60);

/// Each source's share of the accept pace (`admit-connections-per-source-per-sec`, a tenth of it unless
/// set), with one second of burst, per IPv4 address or IPv6 /64. A connection beyond its source's share is
/// closed at once, before any TLS work, and its token goes back to the pace, so one flooding source can
/// neither spend the others' pace nor make the accept loop pause; a site of agents behind one NAT address
/// (a few hundred) still comes back within seconds after an outage.
#[derive(Debug)]
pub struct SourceShare {
    rate: u32,
    sources: HashMap<IpAddr, TokenBucket>,
}

/// Most sources tracked; beyond, the idle ones are forgotten (and, if all are busy, all of them).
const MAX_SOURCES: usize = 65_536;

impl SourceShare {
    /// `rate` connections a second for each source.
    pub fn new(rate: u32) -> SourceShare {
        SourceShare {
            rate,
            sources: HashMap::new(),
        }
    }

    /// IPv4 addresses count alone; IPv6 ones by their /64 (what one host or site is given).
    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
            },
        }
    }

    /// Whether `ip` may have one more connection now.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.sources.len() >= MAX_SOURCES {
            let full = Duration::from_secs(1);
            self.sources
                .retain(|_, b| now.saturating_duration_since(b.last()) < full);
            if self.sources.len() >= MAX_SOURCES {
                self.sources.clear();
            }
        }
        let rate = self.rate;
        self.sources
            .entry(Self::key(ip))
            .or_insert_with(|| TokenBucket::new(rate, now))
            .try_take(now)
    }
}

/// The next connection, at the configured pace and within its source's share, with TCP_NODELAY set (acks
/// must not wait for Nagle). The pace (`admit-connections-per-sec`) works as HAProxy's `rate-limit
/// sessions` does: when its bucket is empty the loop stops accepting until a token is back, so new
/// connections wait in the kernel's accept queue (65,535 deep; beyond it the client's SYN retries), costing
/// this process nothing, and a fleet coming back after an outage never gets more than that many TLS
/// handshakes a second, however many knock at once. Streams on accepted connections then meet
/// `admit-streams-per-sec` and its retry hints. Pauses are counted in `stats`, so the collector knows it is holding agents back
/// (and opens no verdict from their silence meanwhile); connections closed over their source's share are
/// counted apart, and hold nobody back.
async fn accept_paced(
    listener: &TcpListener,
    pace: &mut TokenBucket,
    share: &mut SourceShare,
    stats: &IngestStats,
) -> (TcpStream, SocketAddr) {
    loop {
        if !pace.try_take(Instant::now()) {
            let wait = pace.wait();
            IngestStats::bump(&stats.accept_pauses);
            let us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
            stats.accept_paused_us.fetch_add(us, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
            continue;
        }
        match listener.accept().await {
            Ok((sock, peer)) if !share.admit(peer.ip(), Instant::now()) => {
                IngestStats::bump(&stats.refused_over_share);
                pace.refund();
                drop(sock);
            }
            Ok((sock, peer)) => {
                let _ = sock.set_nodelay(true);
                return (sock, peer);
            }
            Err(e) => accept_error(&e).await,
        }
    }
}

/// Accepted TCP connections at `pace` and each source's share, for plaintext gRPC.
pub fn tcp_incoming(
    listener: TcpListener,
    (mut pace, mut share): (TokenBucket, SourceShare),
    stats: Arc<IngestStats>,
) -> ReceiverStream<Result<TcpStream, io::Error>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let (sock, _) = accept_paced(&listener, &mut pace, &mut share, &stats).await;
            if tx.send(Ok(sock)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Accepted TLS connections at `pace` and each source's share: each handshake runs on its own task under `HANDSHAKE` (10 s), so a
/// slow or hostile client never holds the accept loop. Failed handshakes (plaintext clients, foreign CAs)
/// are counted.
pub fn tls_incoming(
    listener: TcpListener,
    tls: ServerTls,
    (mut pace, mut share): (TokenBucket, SourceShare),
    stats: Arc<IngestStats>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let (sock, peer) = accept_paced(&listener, &mut pace, &mut share, &stats).await;
            if tx.is_closed() {
                return;
            }
            let acceptor = tls.acceptor();
            let conn_tx = tx.clone();
            let stats = stats.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE, acceptor.accept(sock)).await {
                    Ok(Ok(s)) => {
                        let _ = conn_tx.send(Ok(s)).await;
                    }
                    Ok(Err(e)) => {
                        IngestStats::bump(&stats.tls_failed);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        IngestStats::bump(&stats.tls_failed);
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Out of file descriptors or a transient error: logged, and a short pause instead of a hot loop.
async fn accept_error(e: &io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Whether the connection a request came on presented a client certificate the CA verified.
#[derive(Debug, Clone, Copy)]
pub struct ClientCert(pub bool);

/// Who may use the query surfaces.
#[derive(Clone, Default)]
pub struct Auth {
    /// Authentication is required (TLS is configured).
    pub required: bool,
    /// The bearer token, if `api-token-file` is set (re-read on SIGHUP).
    pub token: Arc<RwLock<Option<String>>>,
}

impl Auth {
    /// Whether `Authorization: Bearer <token>` matches the configured token (compared in constant time).
    pub fn bearer_ok(&self, authorization: Option<&str>) -> bool {
        let Some(given) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
            return false;
        };
        let guard = self.token.read().unwrap_or_else(|p| p.into_inner());
        let Some(want) = guard.as_deref() else {
            return false;
        };
        want.len() == given.len()
            && want
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// Reads the token file (trimmed; an empty file is no token).
    pub fn load_token(&self, path: Option<&std::path::Path>) -> io::Result<()> {
        let token = match path {
            None => None,
            Some(p) => {
                Some(std::fs::read_to_string(p)?.trim().to_owned()).filter(|t| !t.is_empty())
            }
        };
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = token;
        Ok(())
    }
}

/// HTTP middleware: with TLS, every endpoint but `/healthz` needs a client certificate or the token.
pub async fn require_auth(AxState(auth): AxState<Auth>, req: Request, next: Next) -> Response {
    if !auth.required || req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let cert = req.extensions().get::<ClientCert>().is_some_and(|c| c.0);
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if cert || auth.bearer_ok(bearer) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({
            "error": "authentication required: a client certificate from client-ca, or Authorization: Bearer <api token>"
        })),
    )
        .into_response()
}

/// A connection that fails once it has been idle (no bytes either way) for `idle`.
struct IdleIo<T> {
    inner: T,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<T> IdleIo<T> {
    fn new(inner: T, idle: Duration) -> IdleIo<T> {
        IdleIo {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        let at = tokio::time::Instant::now() + self.idle;
        self.timer.as_mut().reset(at);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().poll(cx).is_ready()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "idle connection closed",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves `router` over HTTP/1.1 on `listener` (TLS when `tls` is set) until `stop`: headers must arrive
/// within `HEADER_READ` (10 s), and a connection idle for `HTTP_IDLE` (60 s) is closed.
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<ServerTls>,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    accept_error(&e).await;
                    continue;
                }
            },
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_conn(sock, peer, false, router).await,
                Some(tls) => {
                    match tokio::time::timeout(HANDSHAKE, tls.acceptor().accept(sock)).await {
                        Ok(Ok(s)) => {
                            let cert = s
                                .get_ref()
                                .1
                                .peer_certificates()
                                .is_some_and(|c| !c.is_empty());
                            serve_conn(s, peer, cert, router).await;
                        }
                        _ => tracing::debug!(%peer, "HTTP TLS handshake failed"),
                    }
                }
            }
        });
    }
}

async fn serve_conn<T>(io: T, peer: SocketAddr, cert: bool, router: axum::Router)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt as _;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ClientCert(cert));
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let io = hyper_util::rt::TokioIo::new(IdleIo::new(io, HTTP_IDLE));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ)
        .serve_connection(io, svc);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}

#[cfg(test)]
mod share_tests {
    use super::{MAX_SOURCES, SourceShare};
    use std::net::IpAddr;
    use std::time::{Duration, Instant};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_source_has_its_own_share_and_an_ipv6_slash_64_is_one_source() {
        let t0 = Instant::now();
        let mut s = SourceShare::new(3);
        assert_eq!((0..10).filter(|_| s.admit(ip("10.0.0.1"), t0)).count(), 3);
        assert!(
            s.admit(ip("10.0.0.2"), t0),
            "another source is not held back"
        );
        // Two addresses of one /64 share; another /64 does not; an IPv4-mapped address is its IPv4 one.
        assert_eq!(
            (0..4)
                .filter(|i| s.admit(ip(&format!("2001:db8:1:2::{i}")), t0))
                .count(),
            3
        );
        assert!(s.admit(ip("2001:db8:1:3::1"), t0));
        assert!(!s.admit(ip("::ffff:10.0.0.1"), t0));
        // A third of a second later, one more for the first source.
        let t1 = t0 + Duration::from_millis(340);
        assert!(s.admit(ip("10.0.0.1"), t1));
        assert!(!s.admit(ip("10.0.0.1"), t1));
    }

    #[test]
    fn the_sources_tracked_stay_bounded() {
        let t0 = Instant::now();
        let mut s = SourceShare::new(2);
        for i in 0..MAX_SOURCES as u32 + 10 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(s.admit(a, t0));
        }
        assert!(s.sources.len() <= MAX_SOURCES, "{}", s.sources.len());
        // Idle sources are forgotten first: after two quiet seconds the map starts over.
        let t1 = t0 + Duration::from_secs(2);
        assert!(s.admit(ip("192.0.2.1"), t1));
        assert!(s.sources.len() <= MAX_SOURCES);
    }
}
