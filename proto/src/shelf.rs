//! The in-process modes' column hand-off: host and executor share one
//! address space, so a column batch's frame names arrays left on a
//! [`Shelf`] instead of carrying their bytes, and the other side takes
//! them off it. No buffer is copied either way: the executor reads the
//! caller's own Arrow buffers (immutable, reference-counted: a UDF that
//! keeps a view keeps the buffer alive, and never sees another batch's
//! bytes in it), and the host takes the executor's result array as it was
//! built.
//!
//! A shelf belongs to one link (one executor thread) and lives as long as
//! either end holds it: a batch left on it by an executor that broke goes
//! when the shelf does. A frame from a worker process can never name a
//! shelf entry: the host reads shelved frames only from its in-process
//! links (`Columns::decode_from` and `Answer::decode_from` take the shelf
//! to look in, and refuse a shelved frame without one).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use arrow_array::ArrayRef;

/// Arrays handed between a host and its in-process executor, each batch's
/// under a key the frame carries. See the module docs.
#[derive(Debug, Default)]
pub struct Shelf {
    next: AtomicU64,
    items: Mutex<HashMap<u64, Vec<ArrayRef>>>,
}

impl Shelf {
    /// An empty shelf.
    pub fn new() -> Shelf {
        Shelf::default()
    }

    /// Leaves `arrays` on the shelf; returns the key that takes them off.
    pub fn put(&self, arrays: Vec<ArrayRef>) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, arrays);
        key
    }

    /// Takes the arrays left under `key` (`None` if there are none: never
    /// put, or taken already).
    pub fn take(&self, key: u64) -> Option<Vec<ArrayRef>> {
        self.lock().remove(&key)
    }

    /// How many batches' arrays are on the shelf (taken ones are not).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is on the shelf.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<ArrayRef>>> {
        // A panic while the lock was held left the map whole (every
        // operation on it is one call): go on with it.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Array, Int64Array};

    use super::*;

    #[test]
    fn arrays_come_off_once_under_their_own_key() {
        let shelf = Shelf::new();
        let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![4]));
        let ka = shelf.put(vec![Arc::clone(&a)]);
        let kb = shelf.put(vec![Arc::clone(&b)]);
        assert_ne!(ka, kb);
        assert_eq!(shelf.len(), 2);
        let got = shelf.take(kb).unwrap();
        assert_eq!(got[0].len(), 1);
        // The very buffers, not copies.
        assert!(Arc::ptr_eq(&got[0], &b));
        assert!(shelf.take(kb).is_none());
        assert!(Arc::ptr_eq(&shelf.take(ka).unwrap()[0], &a));
        assert!(shelf.is_empty());
    }
}
