//! What a watch reports: the records under a prefix, and across a resync
//! the ones the fresh read no longer lists, kept for a grace period.
//!
//! A resync follows any break of the watch. When etcd lost its data, the
//! fresh read is empty until the servers, which are still reachable, have
//! registered again under new leases; emptying the routing table meanwhile
//! would fail every call for that long. So a record the fresh read lacks
//! stays listed until its instance registers again (a record with the same
//! subject, as a server that replaced its lease writes) or the grace period
//! (one lease TTL) passes. A dead instance kept this way costs one "no
//! responders" and is taken out of rotation by the client.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{InstanceList, InstanceRecord};

/// The records under one prefix, by key, and the list watchers see, kept
/// up to date by each change rather than rebuilt: O(log n) per watch event.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Shared with the list, so that a record is decoded and stored once.
    live: HashMap<String, Arc<InstanceRecord>>,
    /// Records a resync no longer found, and until when they stay.
    stale: HashMap<String, (Arc<InstanceRecord>, Instant)>,
    /// The key of each stale record, by subject.
    stale_subjects: HashMap<String, String>,
    list: InstanceList,
}

impl Listing {
    pub(crate) fn new(live: BTreeMap<String, InstanceRecord>) -> Self {
        // The list is built in key order, so that of two records with the
        // same place in it (records that contradict their keys) the same
        // one stays in every process.
        let live: Vec<(String, Arc<InstanceRecord>)> =
            live.into_iter().map(|(key, r)| (key, Arc::new(r))).collect();
        let list = live.iter().map(|(_, r)| r.clone()).collect();
        Listing { live: live.into_iter().collect(), list, ..Listing::default() }
    }

    /// Replaces the records with a fresh read; what it lacks stays for
    /// `grace` unless a fresh record has its subject. Rebuilds the list:
    /// O(n), once per break of the watch.
    pub(crate) fn resync(&mut self, fresh: BTreeMap<String, InstanceRecord>, grace: Duration) {
        let until = Instant::now() + grace;
        let subjects: HashSet<String> = fresh.values().map(|r| subject(r).to_string()).collect();
        let old =
            std::mem::replace(&mut self.live, fresh.into_iter().map(|(key, r)| (key, Arc::new(r))).collect());
        let stale = std::mem::take(&mut self.stale);
        let lacking = old.into_iter().map(|(key, record)| (key, (record, until))).chain(stale);
        for (key, (record, until)) in lacking {
            if !self.live.contains_key(&key) && !subjects.contains(subject(&record)) {
                self.stale.insert(key, (record, until));
            }
        }
        self.stale_subjects =
            self.stale.iter().map(|(key, (r, _))| (subject(r).to_string(), key.clone())).collect();
        self.list = self.live.values().chain(self.stale.values().map(|(r, _)| r)).cloned().collect();
    }

    /// A record written at `key`.
    pub(crate) fn put(&mut self, key: String, record: InstanceRecord) {
        self.unstale(&key);
        if let Some(again) = self.stale_subjects.get(subject(&record)).cloned() {
            self.unstale(&again);
        }
        let record = Arc::new(record);
        if let Some(old) = self.live.insert(key, record.clone()) {
            self.list.remove(&old);
        }
        self.list.insert_shared(record);
    }

    /// The record at `key` deleted.
    pub(crate) fn delete(&mut self, key: &str) {
        if let Some(old) = self.live.remove(key) {
            self.list.remove(&old);
        }
        self.unstale(key);
    }

    fn unstale(&mut self, key: &str) {
        if let Some((old, _)) = self.stale.remove(key) {
            self.stale_subjects.remove(subject(&old));
            self.list.remove(&old);
        }
    }

    /// Drops the stale records whose grace passed by `now`; `true` when any did.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let expired: Vec<String> =
            self.stale.iter().filter(|(_, (_, until))| *until <= now).map(|(key, _)| key.clone()).collect();
        for key in &expired {
            self.unstale(key);
        }
        !expired.is_empty()
    }

    /// When the next stale record's grace passes.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.stale.values().map(|(_, until)| *until).min()
    }

    /// Every record, live and stale, sorted by instance id: O(1).
    pub(crate) fn list(&self) -> InstanceList {
        self.list.clone()
    }
}

fn subject(record: &InstanceRecord) -> &str {
    record.transport.subject()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InstanceId;
    use crate::engine::discovery::TransportAddress;

    fn record(id: i64, subject: &str) -> (String, InstanceRecord) {
        let record = InstanceRecord {
            namespace: "ns".into(),
            component: "c".into(),
            endpoint: "e".into(),
            instance_id: InstanceId(id),
            transport: TransportAddress::NatsTcp(subject.into()),
            descriptor: None,
            codec: None,
            direct: None,
        };
        (format!("instances/ns/c/e:{id:x}"), record)
    }

    fn ids(listing: &Listing) -> Vec<i64> {
        listing.list().iter().map(|r| r.instance_id.0).collect()
    }

    #[test]
    fn an_empty_resync_keeps_the_last_records_for_the_grace_period() {
        let mut listing = Listing::new([record(1, "s.a"), record(2, "s.b")].into());
        listing.resync(BTreeMap::new(), Duration::from_secs(3));
        assert_eq!(ids(&listing), [1, 2], "etcd came back empty; the instances are still routed to");
        assert!(!listing.expire(Instant::now()));
        assert!(listing.expire(Instant::now() + Duration::from_secs(4)));
        assert!(ids(&listing).is_empty(), "past the grace period they go");
        assert_eq!(listing.next_expiry(), None);
    }

    #[test]
    fn a_record_with_the_same_subject_replaces_a_stale_one_at_once() {
        let mut listing = Listing::new([record(1, "s.a"), record(2, "s.b")].into());
        listing.resync(BTreeMap::new(), Duration::from_secs(3));
        let (key, again) = record(7, "s.a");
        listing.put(key, again);
        assert_eq!(ids(&listing), [2, 7], "instance 1 registered again as 7");
        listing.resync([record(7, "s.a"), record(8, "s.b")].into(), Duration::from_secs(3));
        assert_eq!(ids(&listing), [7, 8]);
        assert_eq!(listing.next_expiry(), None, "nothing is stale");
    }

    #[test]
    fn of_two_records_that_contradict_their_keys_the_first_key_s_stays() {
        for _ in 0..20 {
            let (_, first) = record(1, "s.first");
            let (_, second) = record(1, "s.second");
            let listing = Listing::new([("k/a".to_string(), first), ("k/b".to_string(), second)].into());
            let subjects: Vec<&str> = listing.list.iter().map(|r| r.transport.subject()).collect();
            assert_eq!(subjects, ["s.first"], "the record under the first key, in every process");
        }
    }

    #[test]
    fn a_deleted_key_goes_whether_live_or_stale() {
        let (key, one) = record(1, "s.a");
        let mut listing = Listing::new([(key.clone(), one)].into());
        listing.delete(&key);
        assert!(ids(&listing).is_empty());
        let mut listing = Listing::new([record(1, "s.a")].into());
        listing.resync(BTreeMap::new(), Duration::from_secs(3));
        listing.delete(&key);
        assert!(ids(&listing).is_empty());
    }
}
