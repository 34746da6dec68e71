//! Open connections by their 4-tuple, holding only where each connection
//! is (its session's key and its id): the tuple itself is in the
//! connection, and a table that kept a copy of it (64 bytes of two
//! `SocketAddr`s an entry) was the largest part of an idle session.

use std::{hash::BuildHasher, net::SocketAddr};

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::model::ConnId;

/// The client's and the server's ends of a connection.
pub type Tuple = (SocketAddr, SocketAddr);

/// A connection's place: its session's key and its id in the session.
pub type Place = (u64, ConnId);

#[derive(Debug, Default)]
pub struct TupleIndex {
    /// Keyed per process, so that tuples a stranger picks cannot be made
    /// to collide.
    hasher: RandomState,
    places: HashTable<Place>,
}

impl TupleIndex {
    /// The connection with this tuple; `tuple_of` reads a place's tuple
    /// (`None` for a place that is gone, which the index must not have).
    pub fn get(&self, tuple: &Tuple, tuple_of: impl Fn(Place) -> Option<Tuple>) -> Option<Place> {
        let hash = self.hasher.hash_one(tuple);
        self.places
            .find(hash, |place| tuple_of(*place) == Some(*tuple))
            .copied()
    }

    /// Files `place` under `tuple`, in place of any connection that had it.
    pub fn insert(
        &mut self,
        tuple: &Tuple,
        place: Place,
        tuple_of: impl Fn(Place) -> Option<Tuple>,
    ) {
        let hash = self.hasher.hash_one(tuple);
        let hasher = &self.hasher;
        match self
            .places
            .find_mut(hash, |old| tuple_of(*old) == Some(*tuple))
        {
            Some(old) => *old = place,
            None => {
                // Growing rehashes every place through its connection.
                self.places.insert_unique(hash, place, |p| {
                    tuple_of(*p).map_or(0, |t| hasher.hash_one(t))
                });
            }
        }
    }

    /// Takes `place` out, if `tuple` still leads to it.
    pub fn remove(&mut self, tuple: &Tuple, place: Place) {
        let hash = self.hasher.hash_one(tuple);
        if let Ok(entry) = self.places.find_entry(hash, |p| *p == place) {
            entry.remove();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.places.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn tuple(port: u16) -> Tuple {
        (
            format!("192.0.2.2:{port}").parse().unwrap(),
            "192.0.2.1:21".parse().unwrap(),
        )
    }

    #[test]
    fn finds_replaces_and_removes_by_the_tuple_each_place_has() {
        let mut tuples: HashMap<Place, Tuple> = HashMap::new();
        let mut index = TupleIndex::default();
        for n in 0..1000u64 {
            let place = (n, ConnId::Control);
            tuples.insert(place, tuple(n as u16 + 1024));
            index.insert(&tuple(n as u16 + 1024), place, |p| tuples.get(&p).copied());
        }
        assert_eq!(index.len(), 1000);
        assert_eq!(
            index.get(&tuple(1500), |p| tuples.get(&p).copied()),
            Some((476, ConnId::Control))
        );
        assert_eq!(index.get(&tuple(80), |p| tuples.get(&p).copied()), None);
        // A new connection on a tuple that is taken replaces the old one.
        let new = (5000, ConnId::Data(1));
        tuples.insert(new, tuple(1500));
        index.insert(&tuple(1500), new, |p| tuples.get(&p).copied());
        assert_eq!(index.len(), 1000);
        assert_eq!(
            index.get(&tuple(1500), |p| tuples.get(&p).copied()),
            Some(new)
        );
        // The old one's removal leaves the new one be.
        index.remove(&tuple(1500), (476, ConnId::Control));
        assert_eq!(
            index.get(&tuple(1500), |p| tuples.get(&p).copied()),
            Some(new)
        );
        index.remove(&tuple(1500), new);
        assert_eq!(index.get(&tuple(1500), |p| tuples.get(&p).copied()), None);
        assert_eq!(index.len(), 999);
    }
}
