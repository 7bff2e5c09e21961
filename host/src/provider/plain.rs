//! HTTP/1.1 connections to a plain-HTTP upstream (a local vLLM, Ollama or
//! benchmark server), driven by the task of the request that uses them.
//!
//! hyper's pooled client runs each connection on a task of its own: a call
//! hands its request to that task and is woken by it for the answer's head
//! and again for each piece of the body, and the pool hashes the host on
//! every checkout and return. Here a connection is leased to one call at a
//! time, and the call's own polls drive it, so a request wakes nothing but
//! itself. TLS upstreams stay on hyper's pooled client: there encryption
//! costs far more than the hand-offs, and HTTP/2 needs a connection task.
//!
//! Idle connections are not polled as they sit. One the upstream closed
//! meanwhile is noticed when it is next taken (a poll finds the end of the
//! stream) and dropped; one that closes in the instant between that check
//! and the request leaving is caught by hyper, which hands the unsent
//! request back, and the request goes on a new connection. A sweep every
//! [`SWEEP`] closes what expired or was closed by the upstream, so that a
//! pool nobody calls any more does not keep sockets half-closed.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::BoxError;

/// How often idle connections are checked while no call takes them.
pub const SWEEP: Duration = Duration::from_secs(15);

/// Idle connections to one upstream, most recently used last.
pub struct Pool {
    /// `host:port` to connect to.
    authority: String,
    /// Sent as `Host` with every request.
    host: HeaderValue,
    /// Where requests go, in origin form (`/v1/chat/completions`), unless
    /// a request names another path of the same upstream.
    path: Uri,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<VecDeque<Idle>>,
}

struct Idle {
    lease: Lease,
    since: Instant,
}

/// A connection, leased to one call.
struct Lease {
    sender: SendRequest<Full<Bytes>>,
    conn: Connection<TokioIo<TcpStream>, Full<Bytes>>,
}

impl Pool {
    /// A pool for `endpoint`, an `http://` URL that every request goes to.
    pub fn new(
        endpoint: &Uri,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> anyhow::Result<Arc<Self>> {
        let host = endpoint
            .host()
            .ok_or_else(|| anyhow::anyhow!("the URL has no host"))?;
        let port = endpoint.port_u16().unwrap_or(80);
        // An IPv6 host keeps its brackets here, as a socket address wants.
        let authority = format!("{host}:{port}");
        let shown = endpoint
            .authority()
            .map_or(authority.as_str(), |a| a.as_str());
        let pool = Arc::new(Pool {
            host: HeaderValue::from_str(shown)?,
            path: endpoint
                .path_and_query()
                .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone())),
            authority,
            connect_timeout,
            idle_timeout,
            max_idle,
            idle: Mutex::new(VecDeque::new()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&pool)));
        }
        Ok(pool)
    }

    /// Sends `request` to the endpoint (or to another path of its host, if
    /// the request's URI names one) and returns the
    /// answer's head; the body drives the connection as it is read and
    /// returns it to the pool at its end.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, BoxError> {
        // The request's own path when it names one (`count_tokens`), else
        // the endpoint's.
        let path = match request.uri().path_and_query() {
            Some(p) if p.path() != self.path.path() => Uri::from(p.clone()),
            _ => self.path.clone(),
        };
        *request.uri_mut() = path;
        request.headers_mut().insert(HOST, self.host.clone());
        loop {
            let (lease, reused) = match self.take().await {
                Some(lease) => (lease, true),
                None => (self.connect().await?, false),
            };
            match self.exchange(lease, request).await {
                Ok(response) => return Ok(response),
                // Not sent: the connection closed just before. Only a reused
                // connection can be stale; a new one failing is an answer.
                Err(Unsent::Stale(back)) if reused => request = *back,
                Err(Unsent::Stale(_)) => {
                    return Err("the upstream closed a new connection at once".into());
                }
                Err(Unsent::Failed(e)) => return Err(e),
            }
        }
    }

    /// The most recently used idle connection that is still open.
    async fn take(&self) -> Option<Lease> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_back()?;
            if idle.since.elapsed() >= self.idle_timeout {
                // The rest are older still.
                self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
                return None;
            }
            let mut lease = idle.lease;
            if poll_fn(|cx| Poll::Ready(lease.open(cx))).await {
                return Some(lease);
            }
        }
    }

    async fn connect(&self) -> Result<Lease, BoxError> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(self.authority.as_str()),
        )
        .await
        .map_err(|_| format!("connecting timed out after {:?}", self.connect_timeout))??;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        Ok(Lease { sender, conn })
    }

    /// Sends on `lease`, driving it until the answer's head arrives.
    async fn exchange(
        self: &Arc<Self>,
        mut lease: Lease,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, Unsent> {
        let mut answer = std::pin::pin!(lease.sender.try_send_request(request));
        let mut closed = false;
        let head = poll_fn(|cx| {
            if !closed && let Poll::Ready(_) = Pin::new(&mut lease.conn).poll(cx) {
                // Closed or failed; the answer future now resolves with why.
                closed = true;
            }
            answer.as_mut().poll(cx)
        })
        .await;
        match head {
            Ok(response) => Ok(response.map(|body| PooledBody {
                body,
                lease: (!closed).then_some(lease),
                pool: self.clone(),
            })),
            Err(mut e) => match e.take_message() {
                Some(request) => Err(Unsent::Stale(Box::new(request))),
                None => Err(Unsent::Failed(e.into_error().into())),
            },
        }
    }

    /// Drops the idle connections that expired or that the upstream closed.
    fn drop_unusable(&self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain_mut(|i| i.since.elapsed() < self.idle_timeout && i.lease.open(&mut cx));
    }

    /// Keeps `lease` for the next call; expired ones are the sweep's.
    fn give_back(&self, lease: Lease) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push_back(Idle {
                lease,
                since: Instant::now(),
            });
        }
    }
}

/// Drops the idle connections of `pool` that expired or that the upstream
/// closed, until the pool itself is dropped.
async fn sweep(pool: std::sync::Weak<Pool>) {
    let mut every = tokio::time::interval(SWEEP);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.drop_unusable();
    }
}

enum Unsent {
    /// The request never left; here it is back.
    Stale(Box<Request<Full<Bytes>>>),
    Failed(BoxError),
}

impl Lease {
    /// Whether the connection is still open and can take a request. Polls
    /// it once, which reads whatever the upstream sent while it sat idle:
    /// only its closing, on a healthy connection.
    fn open(&mut self, cx: &mut Context<'_>) -> bool {
        if Pin::new(&mut self.conn).poll(cx).is_ready() {
            return false;
        }
        matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

/// An answer's body that drives its connection while it is read, and hands
/// the connection back to the pool once the answer has been read whole.
pub struct PooledBody {
    body: Incoming,
    /// `None` once the connection has closed.
    lease: Option<Lease>,
    pool: Arc<Pool>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(lease) = &mut this.lease
            && Pin::new(&mut lease.conn).poll(cx).is_ready()
        {
            // Closed: the body sees the end or the error through its channel.
            this.lease = None;
        }
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        // A sized body ends with its last byte, a chunked one with `None`;
        // an error leaves the connection to be dropped with the body.
        let whole = frame.is_none() || this.body.is_end_stream();
        if whole
            && !matches!(frame, Some(Err(_)))
            && let Some(lease) = this.lease.take()
        {
            this.pool.give_back(lease);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn idle(pool: &Pool) -> usize {
        pool.idle.lock().unwrap().len()
    }

    /// A connection is kept after its answer; once the upstream closes it,
    /// the sweep lets it go without anyone calling.
    #[tokio::test]
    async fn the_sweep_drops_connections_the_upstream_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint: Uri = format!("http://{}/v1", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let (hang_up, hung_up) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let (mut buf, mut got) = ([0u8; 1024], Vec::new());
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tcp.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            let _ = hung_up.await;
        });
        let pool = Pool::new(
            &endpoint,
            Duration::from_secs(5),
            Duration::from_secs(90),
            8,
        )
        .unwrap();
        let request = Request::builder()
            .uri("/v1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let answer = pool.send(request).await.unwrap();
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        assert_eq!(idle(&pool), 1, "kept for the next call");
        pool.drop_unusable();
        assert_eq!(idle(&pool), 1, "an open connection survives the sweep");

        hang_up.send(()).unwrap();
        let started = Instant::now();
        while idle(&pool) > 0 {
            assert!(started.elapsed() < Duration::from_secs(5), "never dropped");
            tokio::time::sleep(Duration::from_millis(10)).await;
            pool.drop_unusable();
        }
    }
}
