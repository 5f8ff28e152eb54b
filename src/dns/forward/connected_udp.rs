//! Upstream UDP sockets that are connected to their upstream, so that an ICMP port
//! unreachable fails the query at once instead of after the whole upstream timeout.
//!
//! Linux reports ICMP errors for UDP only on connected sockets (Unbound's `udp-connect`
//! does the same for this reason), and reports them as `EPOLLERR` without `EPOLLIN`: tokio's
//! `poll_recv_from` waits for read readiness only and would sleep through it. Each socket
//! therefore also waits for error readiness while a receive is pending. A connected socket
//! also makes the kernel drop datagrams from any other address before they reach us.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use hickory_server::net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_server::net::runtime::{
    DnsUdpSocket, RuntimeProvider, TokioHandle, TokioRuntimeProvider, TokioTime,
};
use tokio::io::{Interest, Ready};
use tokio::net::{TcpStream, UdpSocket};

/// hickory-net's tokio runtime, except that UDP sockets are [`ConnectedUdp`].
#[derive(Clone, Default)]
pub(super) struct ConnectedUdpRuntime(TokioRuntimeProvider);

impl RuntimeProvider for ConnectedUdpRuntime {
    type Handle = TokioHandle;
    type Timer = TokioTime;
    type Udp = ConnectedUdp;
    type Tcp = AsyncIoTokioAsStd<TcpStream>;

    fn create_handle(&self) -> Self::Handle {
        self.0.create_handle()
    }

    fn connect_tcp(
        &self,
        server_addr: SocketAddr,
        bind_addr: Option<SocketAddr>,
        timeout: Option<Duration>,
    ) -> Pin<Box<dyn Send + Future<Output = Result<Self::Tcp, io::Error>>>> {
        self.0.connect_tcp(server_addr, bind_addr, timeout)
    }

    fn bind_udp(
        &self,
        local_addr: SocketAddr,
        server_addr: SocketAddr,
    ) -> Pin<Box<dyn Send + Future<Output = Result<Self::Udp, io::Error>>>> {
        Box::pin(async move {
            let socket = UdpSocket::bind(local_addr).await?;
            socket.connect(server_addr).await?;
            Ok(ConnectedUdp {
                socket: Arc::new(socket),
                error: Mutex::new(None),
            })
        })
    }
}

type ErrorReadiness = Pin<Box<dyn Future<Output = io::Result<Ready>> + Send>>;

/// A UDP socket connected to one upstream.
pub(super) struct ConnectedUdp {
    socket: Arc<UdpSocket>,
    /// Waits for `EPOLLERR` while a receive is pending; created on the first pending receive.
    error: Mutex<Option<ErrorReadiness>>,
}

#[async_trait]
impl DnsUdpSocket for ConnectedUdp {
    type Time = TokioTime;

    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut read = tokio::io::ReadBuf::new(buf);
        if let Poll::Ready(result) = self.socket.poll_recv_from(cx, &mut read) {
            return Poll::Ready(result.map(|from| (read.filled().len(), from)));
        }
        let mut error = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        let readiness = error.get_or_insert_with(|| {
            let socket = self.socket.clone();
            Box::pin(async move { socket.ready(Interest::ERROR).await })
        });
        match readiness.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(ready) => {
                *error = None;
                ready?;
                // SO_ERROR holds the pending error (ECONNREFUSED after a port unreachable)
                // and reading it clears it.
                let failure = self.socket.take_error()?.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::ConnectionRefused, "upstream socket error")
                });
                Poll::Ready(Err(failure))
            }
        }
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        _target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        // Connected: the target is the upstream the socket was connected to.
        self.socket.poll_send(cx, buf)
    }
}
