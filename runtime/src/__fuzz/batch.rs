//! A stream's item messages: the sequence number of the first item, then
//! each item as its length and its bytes. The caller reads them from the
//! server; nothing else in them says how long they are.

use crate::exchange::stream::fuzz::{BATCH_HEADER, ENTRY_HEADER, decode_batch, encode_batch};

/// Arbitrary bytes as an item message: read within them, item by item, to
/// the first malformed entry, which ends the message; the items read are
/// the message's own bytes, and written again they are the message.
pub fn decode(payload: &[u8]) {
    let (first, entries) = match decode_batch(payload) {
        Ok(read) => read,
        Err(what) => {
            assert!(payload.len() < BATCH_HEADER, "{} bytes hold a sequence number", payload.len());
            assert_eq!(what, "no sequence number");
            return;
        }
    };
    let (head, mut rest) = payload.split_at(BATCH_HEADER);
    assert_eq!(first, u64::from_be_bytes(head.try_into().unwrap()));
    let whole_items = entries.iter().filter(|e| e.is_ok()).count();
    assert!(whole_items <= rest.len() / ENTRY_HEADER, "more items than lengths fit");
    let mut items = Vec::new();
    for (at, entry) in entries.iter().enumerate() {
        match entry {
            Ok(item) => {
                let (len, tail) = rest.split_at(ENTRY_HEADER);
                let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
                assert_eq!(*item, &tail[..len], "item {at} is its own bytes");
                items.push(*item);
                rest = &tail[len..];
            }
            Err(what) => {
                assert_eq!(at, entries.len() - 1, "a malformed entry ends the message");
                let cut_length = rest.len() < ENTRY_HEADER;
                assert_eq!(*what, if cut_length { "a cut item length" } else { "a cut item" });
                if !cut_length {
                    let len = u32::from_be_bytes(rest[..ENTRY_HEADER].try_into().unwrap()) as usize;
                    assert!(len > rest.len() - ENTRY_HEADER, "item {at} fits but was refused");
                }
                rest = &[];
            }
        }
    }
    assert!(rest.is_empty(), "{} bytes left unread", rest.len());
    let read = BATCH_HEADER + items.iter().map(|i| ENTRY_HEADER + i.len()).sum::<usize>();
    let again = encode_batch(first, items.iter().copied());
    assert_eq!(&again.payload[..], &payload[..read], "the items read, written again, are the message");
}

/// Items written into a message come back in order, numbered from `first`;
/// the server's count of the message's length is the message's length.
pub fn round_trip(first: u64, items: &[Vec<u8>]) {
    let batch = encode_batch(first, items.iter().map(Vec::as_slice));
    assert!(batch.headerless, "an item message has no header");
    let len = BATCH_HEADER + items.iter().map(|i| ENTRY_HEADER + i.len()).sum::<usize>();
    assert_eq!((batch.len, batch.payload.len()), (len, len));
    assert_eq!(batch.is_empty, items.is_empty());
    let (read_first, entries) = decode_batch(&batch.payload).expect("a sequence number");
    assert_eq!(read_first, first);
    let read: Vec<&[u8]> = entries.into_iter().map(|e| e.expect("a whole item")).collect();
    assert_eq!(read, items.iter().map(Vec::as_slice).collect::<Vec<_>>());
}
