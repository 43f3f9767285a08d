//! The hello each side of a direct connection sends before any frame:
//! the plane's name and version, then the largest message the side takes.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What each side sends first: the plane's name and its version, so that
/// a peer of another protocol (or version) is told apart before any frame.
/// The largest message the side takes follows (4 bytes, big endian), so
/// that neither sends a frame the other would refuse: a refused frame
/// closes the connection, with every call on it.
pub(crate) const PREAMBLE: &[u8; 8] = b"ROTOR\0\0\x02";

/// The preamble and the sender's limit.
pub(crate) type Hello = [u8; PREAMBLE.len() + 4];

/// The hello of a side that takes messages of up to `max_message` bytes.
pub(crate) fn hello(max_message: usize) -> Hello {
    let mut hello = [0; PREAMBLE.len() + 4];
    hello[..PREAMBLE.len()].copy_from_slice(PREAMBLE);
    let limit = u32::try_from(max_message).unwrap_or(u32::MAX);
    hello[PREAMBLE.len()..].copy_from_slice(&limit.to_be_bytes());
    hello
}

/// The limit a peer's hello announces; `Err` says what it sent instead.
pub(crate) fn peer_limit(hello: &Hello) -> Result<usize, String> {
    let (preamble, limit) = hello.split_at(PREAMBLE.len());
    if preamble != PREAMBLE {
        return Err(format!(
            "{preamble:?}, not the direct plane's preamble {PREAMBLE:?} (another protocol, or another version)"
        ));
    }
    let limit = u32::from_be_bytes(limit.try_into().expect("four bytes"));
    Ok(limit as usize)
}

/// Which side speaks first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Speaks {
    /// The caller: it sends its hello, then reads the server's.
    First,
    /// The server: it answers only a hello it accepts, so that a peer of
    /// another protocol is not sent anything.
    Second,
}

/// Exchanges hellos over `io`; the peer's limit, or what went wrong.
pub(crate) async fn exchange<S>(io: &mut S, max_message: usize, speaks: Speaks) -> Result<usize, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ours = hello(max_message);
    if speaks == Speaks::First {
        io.write_all(&ours).await.map_err(|e| format!("closed on the preamble: {e}"))?;
    }
    let mut theirs: Hello = [0; PREAMBLE.len() + 4];
    io.read_exact(&mut theirs).await.map_err(|e| format!("closed before its preamble: {e}"))?;
    let limit = peer_limit(&theirs)?;
    if speaks == Speaks::Second {
        io.write_all(&ours).await.map_err(|e| format!("closed on the preamble: {e}"))?;
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_carries_the_limit_and_another_protocol_is_told_apart() {
        assert_eq!(peer_limit(&hello(8 * 1024 * 1024)), Ok(8 * 1024 * 1024));
        assert_eq!(peer_limit(&hello(usize::MAX)), Ok(u32::MAX as usize));
        let mut earlier = hello(1024);
        earlier[7] = 1;
        assert!(peer_limit(&earlier).unwrap_err().contains("another version"));
        let http: Hello = *b"GET / HTTP/1";
        assert!(peer_limit(&http).is_err());
    }

    #[tokio::test]
    async fn each_side_learns_the_other_s_limit() {
        let (mut caller, mut server) = tokio::io::duplex(64);
        let (a, b) = tokio::join!(
            exchange(&mut caller, 1000, Speaks::First),
            exchange(&mut server, 2000, Speaks::Second)
        );
        assert_eq!((a, b), (Ok(2000), Ok(1000)));
    }
}
