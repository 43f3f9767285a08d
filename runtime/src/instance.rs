//! Instance identity.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id of one live instance: the discovery lease id of the process (or
/// [`Runtime`](crate::Runtime)) serving it. Printed as lower-case hex, as in
/// subjects and etcd keys, and in JSON as a hex string (`"2040a233cd2b2006"`);
/// a decimal number is read too. The etcd instance record keeps its
/// `instance_id` a number, as the record format has it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub i64);

impl Serialize for InstanceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Binary formats keep the number: hex is for people.
        if s.is_human_readable() { s.collect_str(self) } else { s.serialize_i64(self.0) }
    }
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Hex(String),
            Number(i64),
        }
        if !d.is_human_readable() {
            return i64::deserialize(d).map(InstanceId);
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(InstanceId(n)),
            // As printed: the two's complement bits of a negative id.
            Either::Hex(hex) => u64::from_str_radix(&hex, 16)
                .map(|bits| InstanceId(bits as i64))
                .map_err(|_| serde::de::Error::custom(format!("instance id {hex:?} is not hexadecimal"))),
        }
    }
}

/// The record format's `instance_id`: a number, for every reader of the
/// record, read back as a number or a hex string.
pub(crate) mod as_number {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::InstanceId;

    pub fn serialize<S: Serializer>(id: &InstanceId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(id.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<InstanceId, D::Error> {
        InstanceId::deserialize(d)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_carries_hex_and_still_reads_decimal() {
        let id = InstanceId(0x2040a233cd2b2006);
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"2040a233cd2b2006\"");
        assert_eq!(serde_json::from_str::<InstanceId>("\"2040a233cd2b2006\"").unwrap(), id);
        assert_eq!(serde_json::from_str::<InstanceId>(&id.0.to_string()).unwrap(), id);
        assert!(serde_json::from_str::<InstanceId>("\"xyz\"").is_err());
        let negative = InstanceId(-2);
        let text = serde_json::to_string(&negative).unwrap();
        assert_eq!(serde_json::from_str::<InstanceId>(&text).unwrap(), negative, "{text}");
    }
}
