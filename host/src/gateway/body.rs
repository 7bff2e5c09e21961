//! Reading a request body within bounds: size and time.
//!
//! A body over the size limit is answered 413, but only after reading on
//! (and discarding) a bounded amount more: a client still sending when the
//! daemon closes would otherwise see a connection reset instead of the
//! answer that says why. A body that trickles in is cut off at the read
//! deadline, so a slow sender holds its connection only that long.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::error::{ApiError, ErrorKind};

/// Most bytes read and thrown away after a body passed its limit, before
/// the 413 is sent.
pub const DRAIN_BYTES: usize = 8 * 1024 * 1024;
/// Longest time spent draining an oversized body.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The whole body, at most `limit` bytes, read within `timeout`.
pub async fn read(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let mut body = body;
    let mut buffer = BytesMut::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::invalid(format!("the request body could not be read: {e}"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if buffer.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            buffer.extend_from_slice(&data);
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(())) => Ok(buffer.freeze()),
        Ok(Err(error)) => {
            if error.kind == ErrorKind::TooLarge {
                drain(&mut body).await;
            }
            Err(error)
        }
        Err(_) => Err(ApiError::new(
            ErrorKind::RequestTimeout,
            format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        )),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorKind::TooLarge,
        format!("the request body is over the {limit} byte limit"),
    )
}

/// Reads and discards up to [`DRAIN_BYTES`] for up to [`DRAIN_TIME`].
async fn drain(body: &mut Body) {
    let drain = async {
        let mut drained = 0;
        while drained < DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    drained += frame.data_ref().map_or(0, |data| data.len());
                }
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn chunks(n: usize, size: usize) -> Body {
        let stream = futures::stream::iter(0..n)
            .map(move |_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; size])));
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let bytes = read(chunks(4, 100), 400, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(bytes.len(), 400);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_and_drained() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let body = Body::from_stream(tokio_stream_from(rx));
        let sender = tokio::spawn(async move {
            let mut sent = 0;
            for _ in 0..100 {
                if tx.send(Ok(Bytes::from(vec![b'x'; 1000]))).await.is_err() {
                    break;
                }
                sent += 1000;
            }
            sent
        });
        let error = read(body, 10_000, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::TooLarge);
        // Everything the client sent was read, not left to reset the
        // connection.
        assert_eq!(sender.await.unwrap(), 100_000);
    }

    #[tokio::test]
    async fn a_trickling_body_is_cut_off_at_the_deadline() {
        let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let error = read(body, 1000, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::RequestTimeout);
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures::Stream<Item = T> + Send + 'static {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
