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
        if !d.is_human_readable() {
            return i64::deserialize(d).map(InstanceId);
        }
        // A visitor, not an untagged enum: that would buffer the value and
        // build (and format) an error for the hex it tried first, at every
        // record a watch decodes.
        d.deserialize_any(HexOrNumber)
    }
}

/// An instance id as a number or as the hex string it prints as.
struct HexOrNumber;

impl serde::de::Visitor<'_> for HexOrNumber {
    type Value = InstanceId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an instance id: a number, or hex digits")
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<InstanceId, E> {
        Ok(InstanceId(n))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<InstanceId, E> {
        i64::try_from(n)
            .map(InstanceId)
            .map_err(|_| E::custom(format!("instance id {n} is above the largest lease id")))
    }

    fn visit_bytes<E: serde::de::Error>(self, hex: &[u8]) -> Result<InstanceId, E> {
        match std::str::from_utf8(hex) {
            Ok(hex) => self.visit_str(hex),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(hex), &self)),
        }
    }

    fn visit_str<E: serde::de::Error>(self, hex: &str) -> Result<InstanceId, E> {
        // As printed: the two's complement bits of a negative id.
        u64::from_str_radix(hex, 16)
            .map(|bits| InstanceId(bits as i64))
            .map_err(|_| E::custom(format!("instance id {hex:?} is not hexadecimal")))
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

    /// The id that [`Display`](fmt::Display) printed as `hex`: lower-case
    /// hex digits, a negative id as the 16 digits of its two's complement.
    pub fn from_hex(hex: &str) -> Option<InstanceId> {
        u64::from_str_radix(hex, 16)
            .ok()
            .filter(|_| !hex.starts_with(['+', '-']))
            .map(|bits| InstanceId(bits as i64))
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
    fn an_id_reads_back_from_its_hex_whatever_its_sign() {
        for id in [0, 1, 0x2040_a233_cd2b_2006, i64::MAX, -1, i64::MIN] {
            assert_eq!(InstanceId::from_hex(&InstanceId(id).to_string()), Some(InstanceId(id)));
        }
        for bad in ["", "-1", "+1", "x", "10000000000000000"] {
            assert_eq!(InstanceId::from_hex(bad), None, "{bad:?}");
        }
    }

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
