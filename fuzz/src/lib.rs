//! What the fuzz targets share: an allocator that keeps the largest single
//! allocation, so that a target can check that a small input never makes a
//! decoder allocate much, and the shapes of header inputs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use arbitrary::Arbitrary;
use rotor_runtime::__fuzz::NAMES;

/// The system allocator, keeping the size of the largest allocation.
struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator unchanged.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// The largest single allocation a decoder may make for an input of `len`
/// bytes: room for a copy or two of the input, and for a runtime's own
/// buffers, never what a length field in the input asks for.
pub fn allocation_limit(len: usize) -> usize {
    64 * 1024 + 16 * len
}

/// Runs `f` on an input of `len` bytes; panics if it made an allocation
/// larger than [`allocation_limit`].
pub fn bounded<R>(len: usize, f: impl FnOnce() -> R) -> R {
    LARGEST.store(0, Ordering::Relaxed);
    let out = f();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= allocation_limit(len),
        "one allocation of {largest} bytes for an input of {len} bytes"
    );
    out
}

/// A header name: one Rotor reads, in any case, or any other.
#[derive(Arbitrary, Debug)]
pub enum Name {
    /// One of [`NAMES`], lower-cased where the mask's bit is set.
    Known(u8, u64),
    /// Anything.
    Other(String),
}

impl Name {
    pub fn build(&self) -> String {
        match self {
            Name::Known(at, case) => NAMES[usize::from(*at) % NAMES.len()]
                .chars()
                .enumerate()
                .map(|(i, c)| if case >> (i % 64) & 1 == 1 { c.to_ascii_lowercase() } else { c })
                .collect(),
            Name::Other(name) => name.clone(),
        }
    }
}

/// Words Rotor writes in its headers.
const WORDS: &[&str] = &[
    "1",
    "0",
    "",
    " ",
    "end",
    "end 3",
    "heartbeat",
    "credit",
    "cancel",
    "keepalive",
    "application",
    "decode",
    "deadline",
    "internal",
    "_INBOX.a",
    "_INBOX.a.>",
    "_INBOX..a",
    "\"oops\"",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
];

/// A header value: a number, a pair, a word Rotor writes, or anything.
#[derive(Arbitrary, Debug)]
pub enum Value {
    Number(u64),
    Hex(i64),
    Pair(u64, u64),
    Word(u8),
    Text(String),
}

impl Value {
    pub fn build(&self) -> String {
        match self {
            Value::Number(n) => n.to_string(),
            Value::Hex(n) => format!("{n:x}"),
            Value::Pair(a, b) => format!("{a} {b}"),
            Value::Word(at) => WORDS[usize::from(*at) % WORDS.len()].to_string(),
            Value::Text(text) => text.clone(),
        }
    }
}

/// A header.
#[derive(Arbitrary, Debug)]
pub struct Header(pub Name, pub Value);

/// Headers as names and values.
pub fn headers(headers: &[Header]) -> Vec<(String, String)> {
    headers.iter().map(|Header(n, v)| (n.build(), v.build())).collect()
}
