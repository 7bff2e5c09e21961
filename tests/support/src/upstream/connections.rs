//! Connections a reply can reset

use super::*;

/// The upstream's listener: plain TCP, but each connection comes with a
/// [`ResetSwitch`] its requests can reach; it counts what it accepts.
pub(crate) struct Resettable {
    pub(crate) tcp: tokio::net::TcpListener,
    pub(crate) accepted: Arc<AtomicU64>,
}

/// A connection that fails every read and write once its switch is thrown,
/// and then closes with a TCP reset (`SO_LINGER` 0) rather than a FIN.
pub(crate) struct ResettableStream {
    pub(crate) tcp: tokio::net::TcpStream,
    pub(crate) reset: Arc<AtomicBool>,
}

/// Throws a connection's reset switch (a request's [`ConnectInfo`]).
#[derive(Clone)]
pub(crate) struct ResetSwitch(Arc<AtomicBool>);

impl ResetSwitch {
    pub(crate) fn reset(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Listener for Resettable {
    type Io = ResettableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = Listener::accept(&mut self.tcp).await;
        self.accepted.fetch_add(1, Ordering::SeqCst);
        let reset = Arc::new(AtomicBool::new(false));
        (ResettableStream { tcp, reset }, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl Connected<IncomingStream<'_, Resettable>> for ResetSwitch {
    fn connect_info(stream: IncomingStream<'_, Resettable>) -> Self {
        ResetSwitch(stream.io().reset.clone())
    }
}

impl ResettableStream {
    /// `Some(error)` once the switch is thrown; the socket then closes with
    /// a reset when hyper drops it.
    pub(crate) fn check(&self) -> Option<std::io::Error> {
        if !self.reset.load(Ordering::SeqCst) {
            return None;
        }
        let _ = self.tcp.set_zero_linger();
        Some(std::io::ErrorKind::ConnectionReset.into())
    }
}

impl tokio::io::AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.check() {
            Some(e) => Poll::Ready(Err(e)),
            None => Pin::new(&mut this.tcp).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match this.check() {
            Some(e) => Poll::Ready(Err(e)),
            None => Pin::new(&mut this.tcp).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.check() {
            Some(e) => Poll::Ready(Err(e)),
            None => Pin::new(&mut this.tcp).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.check() {
            Some(e) => Poll::Ready(Err(e)),
            None => Pin::new(&mut this.tcp).poll_shutdown(cx),
        }
    }
}
