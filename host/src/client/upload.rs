//! Streaming one immutable share from an `AsyncRead`: chunked, several chunks in flight,
//! and resumable.
//!
//! The first chunk goes alone. The server's answer lists the ranges it still needs; every
//! byte outside them is already stored (by an earlier, interrupted run with the same upload
//! secret), so later chunks send only what falls inside them and skip the rest. A fresh
//! upload therefore sends everything, and a resumed one sends only what is missing, without
//! seeking: skipped input is read and dropped. Memory use is about chunk size times chunks
//! in flight, whatever the share size.
//!
//! A chunk answered 404 does not end the upload at once: with chunks in flight, one may
//! find the share already completed by another (a server that checks completion apart from
//! the write can answer so). Only if no chunk completed the share is the 404 reported.

use std::ops::Range;

use bytes::{BufMut as _, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;

use super::{ChunkWritten, ClientError, ImmutableUpload};
use crate::protocol::ShareNumber;

/// How an upload of one share went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct UploadReport {
    /// Bytes sent to the server.
    pub bytes_sent: u64,
    /// Bytes the server already had, so not sent again.
    pub bytes_skipped: u64,
}

impl ImmutableUpload {
    /// Uploads share `shnum` from `reader`, which must hold exactly the allocated size, and
    /// completes it. Continues an interrupted upload with the same secret from where the
    /// server's missing ranges say.
    pub async fn upload_share<R>(
        &self,
        shnum: ShareNumber,
        reader: R,
    ) -> Result<UploadReport, ClientError>
    where
        R: AsyncRead + Unpin,
    {
        self.upload_share_with_progress(shnum, reader, |_| {}).await
    }

    /// [`ImmutableUpload::upload_share`], calling `progress` with the number of bytes dealt
    /// with so far (acknowledged by the server or found already there) after each chunk.
    pub async fn upload_share_with_progress<R, P>(
        &self,
        shnum: ShareNumber,
        reader: R,
        mut progress: P,
    ) -> Result<UploadReport, ClientError>
    where
        R: AsyncRead + Unpin,
        P: FnMut(u64),
    {
        let size = self.allocated_size();
        if size == 0 {
            return Err(ClientError::InvalidArgument(
                "a 0-byte share cannot be uploaded: PATCH needs at least one byte",
            ));
        }
        let inner = &self.client().inner;
        let chunk_size = inner.upload_chunk_size as u64;
        let mut input = Input {
            reader,
            consumed: 0,
            size,
        };

        let first = input.next_chunk(chunk_size).await?;
        let first_len = first.len() as u64;
        let answer = self.write_chunk(shnum, 0, first).await?;
        progress(first_len);
        let mut run = Run {
            upload: self.clone(),
            shnum,
            needed: answer.required.clone(),
            complete: answer.complete,
            gone: false,
            required: answer.required,
            in_flight: JoinSet::new(),
            limit: inner.uploads_in_flight,
            report: UploadReport {
                bytes_sent: first_len,
                bytes_skipped: 0,
            },
        };
        while input.consumed < size {
            let offset = input.consumed;
            let data = input.next_chunk(chunk_size).await?;
            run.send(offset, data, &mut progress).await?;
        }
        run.finish(&mut progress).await
    }
}

/// The chunks after the first: what the server needs, what is in flight, what it answered.
struct Run {
    upload: ImmutableUpload,
    shnum: ShareNumber,
    /// The ranges missing after the first chunk; nothing else is sent.
    needed: Vec<Range<u64>>,
    complete: bool,
    /// Some chunk found no upload in progress (404). Either the upload is gone (expired,
    /// aborted, server restarted) or another chunk of ours completed the share while this
    /// one was in flight; which one is known once every chunk in flight has answered.
    gone: bool,
    /// The latest answer's missing ranges, for the error if the share never completes.
    required: Vec<Range<u64>>,
    in_flight: JoinSet<(u64, Result<ChunkWritten, ClientError>)>,
    limit: usize,
    report: UploadReport,
}

impl Run {
    /// Sends the needed parts of the chunk `data` read at `offset`, waiting for answers
    /// while the limit of chunks in flight is reached. Once the share is complete nothing
    /// more is sent, but the caller still reads the rest of the input to check its length.
    async fn send(
        &mut self,
        offset: u64,
        data: Bytes,
        progress: &mut impl FnMut(u64),
    ) -> Result<(), ClientError> {
        let span = offset..offset + data.len() as u64;
        let parts = if self.complete {
            Vec::new()
        } else {
            overlaps(&span, &self.needed)
        };
        let mut sent = 0;
        for part in parts {
            let (Ok(from), Ok(to)) = (
                usize::try_from(part.start - offset),
                usize::try_from(part.end - offset),
            ) else {
                return Err(ClientError::InvalidArgument(
                    "chunk offsets exceed this platform's memory",
                ));
            };
            let len = part.end - part.start;
            sent += len;
            let (upload, shnum, piece) = (self.upload.clone(), self.shnum, data.slice(from..to));
            self.in_flight
                .spawn(async move { (len, upload.write_chunk(shnum, part.start, piece).await) });
            while self.in_flight.len() >= self.limit {
                self.absorb_next(progress).await?;
            }
        }
        self.report.bytes_skipped += (span.end - span.start) - sent;
        progress(self.report.bytes_sent + self.report.bytes_skipped);
        if self.gone {
            self.drain(progress).await?;
            if !self.complete {
                return Err(ClientError::NotFound);
            }
        }
        Ok(())
    }

    /// Waits for every chunk in flight, then says how the upload ended.
    async fn finish(mut self, progress: &mut impl FnMut(u64)) -> Result<UploadReport, ClientError> {
        self.drain(progress).await?;
        if self.complete {
            Ok(self.report)
        } else if self.gone {
            Err(ClientError::NotFound)
        } else {
            Err(ClientError::UploadIncomplete {
                required: self.required,
            })
        }
    }

    async fn drain(&mut self, progress: &mut impl FnMut(u64)) -> Result<(), ClientError> {
        while !self.in_flight.is_empty() {
            self.absorb_next(progress).await?;
        }
        Ok(())
    }

    /// Takes in the next chunk to answer. A 404 is held (see [`Run::gone`]); any other
    /// error ends the upload, and dropping the `JoinSet` cancels the chunks still in flight.
    async fn absorb_next(&mut self, progress: &mut impl FnMut(u64)) -> Result<(), ClientError> {
        match self.in_flight.join_next().await {
            None => {}
            Some(Ok((len, Ok(written)))) => {
                self.complete |= written.complete;
                self.required = written.required;
                self.report.bytes_sent += len;
            }
            Some(Ok((len, Err(ClientError::NotFound)))) => {
                self.gone = true;
                self.report.bytes_sent += len;
            }
            Some(Ok((_, Err(error)))) => return Err(error),
            Some(Err(error)) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Some(Err(_)) => {
                return Err(ClientError::InvalidArgument("an upload task was cancelled"))
            }
        }
        progress(self.report.bytes_sent + self.report.bytes_skipped);
        Ok(())
    }
}

/// The parts of `span` inside `needed` (ascending, as the server sends them).
fn overlaps(span: &Range<u64>, needed: &[Range<u64>]) -> Vec<Range<u64>> {
    needed
        .iter()
        .map(|r| r.start.max(span.start)..r.end.min(span.end))
        .filter(|r| r.start < r.end)
        .collect()
}

/// The upload's input, read a chunk at a time and held to the allocated size.
struct Input<R> {
    reader: R,
    consumed: u64,
    size: u64,
}

impl<R: AsyncRead + Unpin> Input<R> {
    /// The next chunk of at most `max` bytes. Before handing out the last one, checks that
    /// the input ends there, so that a share is never completed from the wrong input.
    async fn next_chunk(&mut self, max: u64) -> Result<Bytes, ClientError> {
        let want = usize::try_from(max.min(self.size - self.consumed)).map_err(|_| {
            ClientError::InvalidArgument("chunk size exceeds this platform's memory")
        })?;
        // Read into capacity that is not zeroed first: zeroing each 1 MiB chunk was 7% of
        // `gbs client put`'s CPU.
        let mut buffer = BytesMut::with_capacity(want);
        while buffer.len() < want {
            let room = want - buffer.len();
            let read = self
                .reader
                .read_buf(&mut (&mut buffer).limit(room))
                .await
                .map_err(ClientError::Input)?;
            if read == 0 {
                return Err(ClientError::InputTooShort {
                    expected: self.size,
                    actual: self.consumed + buffer.len() as u64,
                });
            }
        }
        self.consumed += want as u64;
        if self.consumed == self.size {
            let mut probe = [0u8; 1];
            if self
                .reader
                .read(&mut probe)
                .await
                .map_err(ClientError::Input)?
                > 0
            {
                return Err(ClientError::InputTooLong {
                    expected: self.size,
                });
            }
        }
        Ok(buffer.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_keep_only_needed_bytes() {
        let needed = [5..10, 20..30];
        assert_eq!(overlaps(&(0..8), &needed), vec![5..8]);
        assert_eq!(overlaps(&(8..25), &needed), vec![8..10, 20..25]);
        assert_eq!(overlaps(&(10..20), &needed), Vec::<Range<u64>>::new());
    }

    /// Input tried: 10 bytes arriving 3 at a time, taken in chunks of 4; each chunk holds
    /// exactly its bytes, never some of the next one.
    #[tokio::test]
    async fn chunks_are_filled_across_short_reads() {
        let (reader, mut writer) = tokio::io::simplex(3);
        let feeder = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            writer.write_all(b"0123456789").await.unwrap();
            writer.shutdown().await.unwrap();
        });
        let mut input = Input {
            reader,
            consumed: 0,
            size: 10,
        };
        assert_eq!(&input.next_chunk(4).await.unwrap()[..], b"0123");
        assert_eq!(&input.next_chunk(4).await.unwrap()[..], b"4567");
        assert_eq!(&input.next_chunk(4).await.unwrap()[..], b"89");
        feeder.await.unwrap();
    }

    #[tokio::test]
    async fn input_is_held_to_the_allocated_size() {
        let mut exact = Input {
            reader: &b"abcdef"[..],
            consumed: 0,
            size: 6,
        };
        assert_eq!(&exact.next_chunk(4).await.unwrap()[..], b"abcd");
        assert_eq!(&exact.next_chunk(4).await.unwrap()[..], b"ef");
        let mut short = Input {
            reader: &b"abc"[..],
            consumed: 0,
            size: 6,
        };
        assert!(matches!(
            short.next_chunk(10).await,
            Err(ClientError::InputTooShort {
                expected: 6,
                actual: 3
            })
        ));
        let mut long = Input {
            reader: &b"abcdefg"[..],
            consumed: 0,
            size: 6,
        };
        assert!(matches!(
            long.next_chunk(10).await,
            Err(ClientError::InputTooLong { expected: 6 })
        ));
    }
}
