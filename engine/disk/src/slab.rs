//! A slab of I/Os in flight, indexed by the `user_data` the kernel echoes back in each CQE.

/// Owns each value from submission until its completion is reaped, under a small integer
/// index. A `Vec` with a free list, not a map: lookups are one bounds-checked index, and freed
/// indices are reused, so the slab stops allocating once it has grown to the deepest queue the
/// caller ever had.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Option<T>>,
    /// Indices of empty slots, reused last-freed first.
    free: Vec<u32>,
}

impl<T> Slab<T> {
    /// A slab with room for `capacity` values before it allocates.
    pub(crate) fn with_capacity(capacity: usize) -> Slab<T> {
        Slab {
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
        }
    }

    /// Stores `value` and returns its index.
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            assert!(
                slot.is_none(),
                "invariant: a free index names an empty slot"
            );
            *slot = Some(value);
            return index;
        }
        let index = u32::try_from(self.slots.len()).expect("invariant: fewer than 2^32 I/Os");
        self.slots.push(Some(value));
        index
    }

    /// Takes the value at `index` out, freeing the index.
    pub(crate) fn remove(&mut self, index: u32) -> T {
        let value = self.slots[index as usize]
            .take()
            .expect("invariant: the slot is occupied");
        self.free.push(index);
        value
    }

    /// The value at `index`, which must be occupied.
    pub(crate) fn get_mut(&mut self, index: u32) -> &mut T {
        self.slots[index as usize]
            .as_mut()
            .expect("invariant: the slot is occupied")
    }

    /// Values stored.
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The disk trusts the slab to give each in-flight I/O its own index and to hand back exactly
    // what was stored there. This drives a slab and a plain model through a deterministic mix
    // of inserts and removes and checks they agree after every step.
    #[test]
    fn slab_matches_a_model() {
        let mut slab = Slab::with_capacity(4);
        let mut model: Vec<(u32, u64)> = Vec::new();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for step in 0..10_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if model.is_empty() || !state.is_multiple_of(3) {
                let index = slab.insert(step);
                assert!(
                    model.iter().all(|&(i, _)| i != index),
                    "index {index} reused while live"
                );
                model.push((index, step));
            } else {
                let (index, value) = model.swap_remove((state >> 8) as usize % model.len());
                assert_eq!(*slab.get_mut(index), value);
                assert_eq!(slab.remove(index), value);
            }
            assert_eq!(slab.len(), model.len());
        }
        for (index, value) in model {
            assert_eq!(slab.remove(index), value);
        }
        assert_eq!(slab.len(), 0);
    }
}
