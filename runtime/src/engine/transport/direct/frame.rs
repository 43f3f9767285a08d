//! The frames of the direct plane: what one connection carries, each frame
//! a length (4 bytes, big endian, from `tokio-util`'s length-delimited
//! codec) and a body.
//!
//! A body is a kind (1 byte), a request id (8 bytes), a subject (2-byte
//! length, UTF-8), the headers (2-byte count; each a 2-byte name length,
//! the name, a 4-byte value length, the value, all UTF-8) and the payload,
//! the rest of the frame. The ids and subjects are the connection's own:
//! a request names the instance subject it is for, a reply the id of its
//! request, a publish the inbox it goes to, as on NATS.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::engine::transport::message::{Headers, Message, header};

/// Bytes of a frame's body beside its subject, headers and payload.
const FIXED: usize = 1 + 8 + 2 + 2;

/// One frame.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A request for `subject`, answered by a [`Frame::Reply`] of its `id`.
    Request { id: u64, subject: String, message: Message },
    /// The reply to request `id`.
    Reply { id: u64, message: Message },
    /// Nothing on the peer serves the subject of request `id`: what NATS
    /// calls "no responders".
    NoResponders { id: u64 },
    /// A message to `subject` (a stream's items, credit and control).
    Publish { subject: String, message: Message },
}

const REQUEST: u8 = 1;
const REPLY: u8 = 2;
const NO_RESPONDERS: u8 = 3;
const PUBLISH: u8 = 4;

/// Why a frame was refused; the connection that sent it is closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

/// Frames, over a length-delimited stream whose frames are at most `max`
/// bytes.
pub(crate) struct FrameCodec {
    frames: LengthDelimitedCodec,
    max: usize,
}

impl FrameCodec {
    /// A codec for bodies of at most `max_message` bytes of subject,
    /// headers and payload.
    pub(crate) fn new(max_message: usize) -> Self {
        // The length field is 4 bytes: no frame is longer, whatever the limit.
        let max = max_message.saturating_add(FIXED + u16::MAX as usize).min(u32::MAX as usize);
        FrameCodec { frames: LengthDelimitedCodec::builder().max_frame_length(max).new_codec(), max }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.frames.decode(src) {
            Ok(Some(body)) => parse(body.freeze()).map(Some),
            Ok(None) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(FrameError::Malformed("a frame over the connection's size limit"))
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl FrameCodec {
    /// The length of `frame`'s body, or why it cannot be written: the
    /// writer checks before it writes, so a frame it refuses costs its
    /// caller an error, not the connection.
    pub(crate) fn body_len(&self, frame: &Frame) -> Result<usize, FrameError> {
        let (subject, message) = match frame {
            Frame::Request { subject, message, .. } | Frame::Publish { subject, message } => {
                (subject.as_str(), Some(message))
            }
            Frame::Reply { message, .. } => ("", Some(message)),
            Frame::NoResponders { .. } => ("", None),
        };
        let Some(message) = message else { return Ok(FIXED) };
        let headers: usize = message.headers.iter().map(|(n, v)| 6 + n.len() + v.len()).sum();
        let len = FIXED + subject.len() + headers + message.payload.len();
        let short = |n: usize| n <= u16::MAX as usize;
        if len > self.max {
            return Err(FrameError::Malformed("a frame over the connection's size limit"));
        }
        if !short(subject.len())
            || !short(message.headers.iter().count())
            || !message.headers.iter().all(|(name, _)| short(name.len()))
        {
            return Err(FrameError::Malformed("a subject, header name or header count over 65,535"));
        }
        Ok(len)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = self.body_len(&frame)?;
        let (kind, id, subject, message) = match frame {
            Frame::Request { id, subject, message } => (REQUEST, id, subject, message),
            Frame::Reply { id, message } => (REPLY, id, String::new(), message),
            Frame::NoResponders { id } => (NO_RESPONDERS, id, String::new(), Message::default()),
            Frame::Publish { subject, message } => (PUBLISH, 0, subject, message),
        };
        dst.reserve(4 + len);
        dst.put_u32(len as u32);
        dst.put_u8(kind);
        dst.put_u64(id);
        dst.put_u16(subject.len() as u16);
        dst.put_slice(subject.as_bytes());
        dst.put_u16(message.headers.iter().count() as u16);
        for (name, value) in message.headers.iter() {
            dst.put_u16(name.len() as u16);
            dst.put_slice(name.as_bytes());
            dst.put_u32(value.len() as u32);
            dst.put_slice(value.as_bytes());
        }
        dst.put_slice(&message.payload);
        Ok(())
    }
}

fn parse(mut body: Bytes) -> Result<Frame, FrameError> {
    if body.len() < FIXED {
        return Err(FrameError::Malformed("a frame shorter than its fixed fields"));
    }
    let kind = body.get_u8();
    let id = body.get_u64();
    let subject = text(&mut body, 2)?;
    let count = take(&mut body, 2)?.get_u16();
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = text(&mut body, 2)?;
        let value = text(&mut body, 4)?;
        // Rotor's own names are borrowed rather than copied for every message.
        match header::known(&name) {
            Some(known) => headers.insert(known, value),
            None => headers.insert(name, value),
        }
    }
    let message = Message { headers, payload: body };
    Ok(match kind {
        REQUEST => Frame::Request { id, subject, message },
        REPLY => Frame::Reply { id, message },
        NO_RESPONDERS => Frame::NoResponders { id },
        PUBLISH => Frame::Publish { subject, message },
        _ => return Err(FrameError::Malformed("a frame of an unknown kind")),
    })
}

/// The next `n` bytes.
fn take(body: &mut Bytes, n: usize) -> Result<Bytes, FrameError> {
    if body.len() < n {
        return Err(FrameError::Malformed("a field that runs past the end of its frame"));
    }
    Ok(body.split_to(n))
}

/// A string of UTF-8 after its length, itself `width` bytes long.
fn text(body: &mut Bytes, width: usize) -> Result<String, FrameError> {
    let mut len = take(body, width)?;
    let len = if width == 2 { len.get_u16() as usize } else { len.get_u32() as usize };
    let bytes = take(body, len)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::Malformed("a name or value that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) -> Frame {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::new();
        codec.encode(frame, &mut buf).unwrap();
        let decoded = codec.decode(&mut buf).unwrap().expect("a whole frame");
        assert!(buf.is_empty());
        decoded
    }

    #[test]
    fn every_kind_reads_back_as_written() {
        let mut message = Message::ok(Bytes::from_static(b"payload"));
        message.headers.insert(header::TIMEOUT_MS, "250");
        message.headers.insert("X-Custom".to_string(), "value");
        match round_trip(Frame::Request { id: 7, subject: "a_b.c-1f".into(), message: message.clone() }) {
            Frame::Request { id, subject, message: m } => {
                assert_eq!((id, subject.as_str()), (7, "a_b.c-1f"));
                assert_eq!(m.headers, message.headers);
                assert_eq!(m.payload, message.payload);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            round_trip(Frame::Reply { id: 9, message: Message::default() }),
            Frame::Reply { id: 9, .. }
        ));
        assert!(matches!(round_trip(Frame::NoResponders { id: 3 }), Frame::NoResponders { id: 3 }));
        match round_trip(Frame::Publish { subject: "_INBOX.x".into(), message }) {
            Frame::Publish { subject, message } => {
                assert_eq!(subject, "_INBOX.x");
                assert_eq!(message.headers.get("x-custom"), Some("value"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_frame_cut_short_or_of_an_unknown_kind_is_refused() {
        let mut codec = FrameCodec::new(1024);
        for body in
            [&b"\x01\0\0"[..], b"\x09\0\0\0\0\0\0\0\x01\0\0\0\0", b"\x01\0\0\0\0\0\0\0\x01\0\x09ab\0\0"]
        {
            let mut buf = BytesMut::new();
            buf.put_u32(body.len() as u32);
            buf.put_slice(body);
            assert!(matches!(codec.decode(&mut buf), Err(FrameError::Malformed(_))), "{body:?}");
        }
    }

    #[test]
    fn a_limit_near_the_length_field_s_width_does_not_overflow() {
        let codec = FrameCodec::new(usize::MAX);
        assert_eq!(codec.max, u32::MAX as usize);
        let named = Frame::Publish { subject: "x".repeat(70_000), message: Message::default() };
        assert!(matches!(FrameCodec::new(1 << 20).body_len(&named), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_before_its_body_arrives() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::new();
        buf.put_u32(10 * 1024 * 1024);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::Malformed(_))));
        let big = Message::ok(Bytes::from(vec![0u8; 100_000]));
        let sent = codec.encode(Frame::Reply { id: 1, message: big }, &mut BytesMut::new());
        assert!(matches!(sent, Err(FrameError::Malformed(_))));
    }
}
