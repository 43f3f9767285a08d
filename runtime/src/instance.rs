//! Instance identity.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The id of one live instance: the discovery lease id of the process (or
/// [`Runtime`](crate::Runtime)) serving it. Printed as lower-case hex, as in
/// subjects and etcd keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(pub i64);

impl InstanceId {
    /// The raw lease id.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({:x})", self.0)
    }
}

impl fmt::LowerHex for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}
