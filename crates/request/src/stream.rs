//! Connecting and reading with deadlines, over TCP or a unix socket alike.

use std::io::ErrorKind;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::{ms, Answer, Limits, Target};

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub async fn connect(target: &Target, limits: &Limits) -> Result<Box<dyn Io>, Answer> {
    let start = Instant::now();
    let attempt = async {
        match target {
            Target::Tcp(a) => TcpStream::connect(a)
                .await
                .map(|s| Box::new(s) as Box<dyn Io>),
            Target::Unix(p) => UnixStream::connect(p)
                .await
                .map(|s| Box::new(s) as Box<dyn Io>),
        }
    };
    match tokio::time::timeout(limits.connect_timeout, attempt).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(Answer::ConnectFailed {
            error: e.to_string(),
        }),
        Err(_) => Err(Answer::ConnectTimeout {
            waited_ms: ms(start.elapsed()),
        }),
    }
}

pub async fn send(io: &mut Box<dyn Io>, bytes: &[u8], limits: &Limits) -> Result<(), Answer> {
    // The flush pushes TLS records out; on a plain socket it does nothing.
    let write = async {
        io.write_all(bytes).await?;
        io.flush().await
    };
    match tokio::time::timeout(limits.read_timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(closed_or_reset(&e, 0, None)),
        Err(_) => Err(Answer::NoAnswer {
            waited_ms: ms(limits.read_timeout),
        }),
    }
}

/// One read under nginx's rule: at most `read_timeout` between two reads. `Ok(0)` is EOF.
pub async fn read_some(
    io: &mut Box<dyn Io>,
    buf: &mut [u8],
    limits: &Limits,
) -> Result<std::io::Result<usize>, ()> {
    tokio::time::timeout(limits.read_timeout, io.read(buf))
        .await
        .map_err(|_| ())
}

/// The connection ended early; `first_byte_ms` counts from when the request was sent.
pub fn closed_or_reset(e: &std::io::Error, bytes: usize, first_byte_ms: Option<u64>) -> Answer {
    Answer::Closed {
        bytes,
        reset: matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
        ),
        first_byte_ms,
    }
}
