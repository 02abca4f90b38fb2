//! Merging the event streams of many nodes into one stream ordered by time.
//!
//! Each node sends its events in order, but batched and over its own
//! connection, so events from different nodes arrive interleaved out of
//! order. [`MergeWindow`] holds each event back for a short window and
//! releases buffered events oldest first, which puts events that arrive
//! within the window of each other in timestamp order.
//!
//! The window trades latency for order: an event is printed at most
//! `window` after it happened (by the client's clock), so the window must
//! cover the nodes' batching delay, the network, and the skew between the
//! nodes' clocks and the client's. An event that arrives later than that is
//! still printed, at once, and counted as out of order: a late row is more
//! useful to a security trace than a missing one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

/// A bounded reorder buffer that merges the items of several streams (one
/// per node) into one stream ordered by timestamp.
///
/// It does no I/O and keeps no clock: the task that drives it passes the
/// current time in nanoseconds on the same clock as the items' timestamps
/// (wall-clock time since the Unix epoch for events), and sleeps until
/// [`MergeWindow::next_deadline`] between arrivals.
///
/// Items come out in (timestamp, node, arrival) order. Each node's items
/// wait in a queue of their own, kept in order; one heap holds each
/// queue's oldest item, so a release looks at as many keys as there are
/// nodes, not as many as there are items (a heap of every buffered item,
/// up to 100,000, cost 14-18% of the client's cycles in cache misses).
///
/// # Examples
///
/// ```
/// use gadget_trace::merge::MergeWindow;
/// use std::time::Duration;
///
/// let mut merge = MergeWindow::new(Duration::from_nanos(100), 1000);
/// assert!(merge.push(0, 50, "node 0, later").is_none());
/// assert!(merge.push(1, 20, "node 1, earlier").is_none());
/// // Nothing is old enough yet.
/// assert_eq!(merge.pop_ready(100).count(), 0);
/// assert_eq!(merge.next_deadline(), Some(120));
/// let ready: Vec<_> = merge.pop_ready(150).collect();
/// assert_eq!(ready, ["node 1, earlier", "node 0, later"]);
/// ```
#[derive(Debug)]
pub struct MergeWindow<T> {
    window_ns: u64,
    capacity: usize,
    /// Each node's buffered items, in (timestamp, arrival) order. A node's
    /// items arrive nearly in order (its ring buffer is filled from several
    /// CPUs), so one arriving is put in place from the back.
    queues: Vec<VecDeque<Buffered<T>>>,
    /// The key of each nonempty queue's first item, oldest on top; and
    /// keys of items that were first when pushed but have since had an
    /// older item put before them. Those are dropped when they reach the
    /// top, so the top is always a queue's first item.
    heads: BinaryHeap<Reverse<Key>>,
    /// Items buffered in all queues.
    len: usize,
    /// Arrival counter: among equal timestamps of one node, the order in
    /// which they arrived.
    next_seq: u64,
    /// The newest timestamp released so far; an item older than it can no
    /// longer be put in order.
    released_up_to: Option<u64>,
    out_of_order: u64,
    released_early: u64,
}

/// An item in its node's queue.
#[derive(Debug)]
struct Buffered<T> {
    timestamp_ns: u64,
    seq: u64,
    item: T,
}

/// A queue's first item's place in the order: (timestamp, node, arrival).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    timestamp_ns: u64,
    node: usize,
    seq: u64,
}

/// A queue whose capacity is above this and four times its length gives
/// half back, so that a burst of one node does not keep its memory.
const QUEUE_KEEP: usize = 1024;

impl<T> MergeWindow<T> {
    /// A merge that holds items for `window` and buffers at most
    /// `capacity` of them.
    pub fn new(window: Duration, capacity: usize) -> MergeWindow<T> {
        MergeWindow {
            window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            capacity,
            queues: Vec::new(),
            heads: BinaryHeap::new(),
            len: 0,
            next_seq: 0,
            released_up_to: None,
            out_of_order: 0,
            released_early: 0,
        }
    }

    /// Adds an item that node `node` reported at `timestamp_ns`.
    ///
    /// When the buffer is already full, the oldest buffered item (possibly
    /// this one) is released at once and returned: print it before anything
    /// [`MergeWindow::pop_ready`] returns later.
    #[must_use = "an item released early must be printed"]
    pub fn push(&mut self, node: usize, timestamp_ns: u64, item: T) -> Option<T> {
        self.insert(node, timestamp_ns, item, true)
    }

    /// [`MergeWindow::push`] for an item its node held back on purpose (see
    /// `EventBatch.held`): put in order like any other while that is still
    /// possible, but not counted as out of order when it is not.
    #[must_use = "an item released early must be printed"]
    pub fn push_held(&mut self, node: usize, timestamp_ns: u64, item: T) -> Option<T> {
        self.insert(node, timestamp_ns, item, false)
    }

    fn insert(&mut self, node: usize, timestamp_ns: u64, item: T, count_late: bool) -> Option<T> {
        if count_late
            && self
                .released_up_to
                .is_some_and(|released| timestamp_ns < released)
        {
            // It sorts before every buffered item, so it is the next one out.
            self.out_of_order += 1;
        }
        if self.queues.len() <= node {
            self.queues.resize_with(node + 1, VecDeque::new);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let queue = &mut self.queues[node];
        // After every item of this node with a timestamp up to this one.
        let at = queue
            .iter()
            .rposition(|b| b.timestamp_ns <= timestamp_ns)
            .map_or(0, |i| i + 1);
        queue.insert(
            at,
            Buffered {
                timestamp_ns,
                seq,
                item,
            },
        );
        if at == 0 {
            // The queue's new first item; a key of the one before it, if
            // any, stays behind it in the heap until it reaches the top.
            self.heads.push(Reverse(Key {
                timestamp_ns,
                node,
                seq,
            }));
        }
        self.len += 1;
        if self.len > self.capacity {
            self.released_early += 1;
            return self.release_oldest();
        }
        None
    }

    /// Releases, oldest first, the items that are due at `now_ns`: those
    /// that happened at least the window before `now_ns`, and late items
    /// that are older than something already released.
    ///
    /// Items not taken from the iterator stay buffered.
    pub fn pop_ready(&mut self, now_ns: u64) -> impl Iterator<Item = T> + '_ {
        let due_up_to = now_ns.saturating_sub(self.window_ns);
        std::iter::from_fn(move || {
            let oldest = self.oldest()?.timestamp_ns;
            let late = self.released_up_to.is_some_and(|r| oldest < r);
            if oldest <= due_up_to || late {
                self.release_oldest()
            } else {
                None
            }
        })
    }

    /// When the oldest buffered item is due, on the clock of `now_ns`; `None`
    /// when nothing is buffered. A time in the past means "now".
    pub fn next_deadline(&self) -> Option<u64> {
        let oldest = self.oldest()?;
        if self.released_up_to.is_some_and(|r| oldest.timestamp_ns < r) {
            return Some(oldest.timestamp_ns);
        }
        Some(oldest.timestamp_ns.saturating_add(self.window_ns))
    }

    /// Releases everything buffered, oldest first: for when every stream
    /// has ended, so nothing can arrive that would sort before them.
    pub fn finish(&mut self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.release_oldest())
    }

    /// Items that arrived after a newer item had been released, and so were
    /// printed out of order.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// Items released before their window passed because the buffer was
    /// full.
    pub fn released_early(&self) -> u64 {
        self.released_early
    }

    /// Number of buffered items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The oldest buffered item's key.
    fn oldest(&self) -> Option<Key> {
        // Outdated keys never stay on top (see `heads`).
        self.heads.peek().map(|top| top.0)
    }

    fn release_oldest(&mut self) -> Option<T> {
        let Reverse(key) = self.heads.pop()?;
        let queue = &mut self.queues[key.node];
        let first = queue
            .pop_front()
            .expect("the top key is its queue's first item");
        debug_assert_eq!(first.seq, key.seq);
        self.len -= 1;
        if let Some(next) = queue.front() {
            self.heads.push(Reverse(Key {
                timestamp_ns: next.timestamp_ns,
                node: key.node,
                seq: next.seq,
            }));
        }
        if queue.capacity() > QUEUE_KEEP && queue.len() < queue.capacity() / 4 {
            queue.shrink_to(queue.capacity() / 2);
        }
        self.drop_outdated_heads();
        self.released_up_to = Some(
            self.released_up_to
                .map_or(key.timestamp_ns, |r| r.max(key.timestamp_ns)),
        );
        Some(first.item)
    }

    /// Pops keys that are no longer their queue's first item off the top.
    fn drop_outdated_heads(&mut self) {
        while let Some(Reverse(top)) = self.heads.peek() {
            let current = self.queues[top.node].front().map(|b| b.seq);
            if current == Some(top.seq) {
                return;
            }
            self.heads.pop();
        }
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_nanos(100);

    /// (node, timestamp) pairs, to see where each item came from.
    type Item = (usize, u64);

    fn push(merge: &mut MergeWindow<Item>, node: usize, ts: u64) -> Option<Item> {
        merge.push(node, ts, (node, ts))
    }

    fn timestamps(items: &[Item]) -> Vec<u64> {
        items.iter().map(|&(_, ts)| ts).collect()
    }

    #[test]
    fn skewed_arrival_across_three_nodes_is_released_in_global_order() {
        // Each node's events are in order, but the nodes' batches arrive
        // staggered: node 2 is 60ns behind, node 1 sends in bursts.
        let arrivals: [(u64, usize, u64); 12] = [
            // (arrival time, node, event timestamp)
            (10, 0, 5),
            (12, 1, 1),
            (13, 1, 8),
            (20, 0, 15),
            (30, 0, 25),
            (55, 1, 20),
            (56, 1, 30),
            (70, 2, 2),
            (71, 2, 12),
            (72, 2, 26),
            (90, 0, 40),
            (95, 2, 41),
        ];
        let mut merge = MergeWindow::new(WINDOW, 1000);
        let mut out = Vec::new();
        for (now, node, ts) in arrivals {
            out.extend(push(&mut merge, node, ts));
            out.extend(merge.pop_ready(now));
        }
        assert!(out.is_empty(), "nothing is due before 100: {out:?}");
        out.extend(merge.pop_ready(125));
        assert_eq!(timestamps(&out), [1, 2, 5, 8, 12, 15, 20, 25]);
        out.extend(merge.finish());
        assert_eq!(
            timestamps(&out),
            [1, 2, 5, 8, 12, 15, 20, 25, 26, 30, 40, 41]
        );
        assert_eq!(merge.out_of_order(), 0);
        assert!(merge.is_empty());
    }

    #[test]
    fn equal_timestamps_keep_node_then_arrival_order() {
        let mut merge = MergeWindow::new(WINDOW, 1000);
        for (node, label) in [(2, "c"), (0, "a1"), (1, "b"), (0, "a2")] {
            assert!(merge.push(node, 7, label).is_none());
        }
        let out: Vec<_> = merge.finish().collect();
        assert_eq!(out, ["a1", "a2", "b", "c"]);
    }

    #[test]
    fn item_is_held_until_its_window_has_passed() {
        let mut merge = MergeWindow::new(WINDOW, 1000);
        assert!(push(&mut merge, 0, 1_000).is_none());
        assert_eq!(merge.next_deadline(), Some(1_100));
        assert_eq!(merge.pop_ready(1_099).count(), 0);
        assert_eq!(merge.pop_ready(1_100).collect::<Vec<_>>(), [(0, 1_000)]);
        assert_eq!(merge.next_deadline(), None);
    }

    #[test]
    fn late_item_is_released_at_once_and_counted() {
        let mut merge = MergeWindow::new(WINDOW, 1000);
        assert!(push(&mut merge, 0, 500).is_none());
        assert!(push(&mut merge, 0, 700).is_none());
        assert_eq!(merge.pop_ready(650).collect::<Vec<_>>(), [(0, 500)]);

        // Node 1 was slow: its event at 400 comes after 500 was printed.
        assert!(push(&mut merge, 1, 400).is_none());
        assert_eq!(merge.out_of_order(), 1);
        assert!(merge.next_deadline().is_some_and(|at| at <= 650));
        assert_eq!(merge.pop_ready(651).collect::<Vec<_>>(), [(1, 400)]);

        // Ones that are merely old, but not older than what was printed,
        // are in order and not counted.
        assert!(push(&mut merge, 1, 600).is_none());
        assert_eq!(
            merge.pop_ready(800).collect::<Vec<_>>(),
            [(1, 600), (0, 700)]
        );
        assert_eq!(merge.out_of_order(), 1);
    }

    #[test]
    fn an_item_held_on_purpose_is_released_at_once_and_not_counted() {
        let mut merge = MergeWindow::new(WINDOW, 1000);
        assert!(push(&mut merge, 0, 500).is_none());
        assert_eq!(merge.pop_ready(650).collect::<Vec<_>>(), [(0, 500)]);

        assert!(merge.push_held(0, 300, (0, 300)).is_none());
        assert_eq!(merge.pop_ready(651).collect::<Vec<_>>(), [(0, 300)]);
        assert_eq!(merge.out_of_order(), 0);
        // One still in time is put in order.
        assert!(push(&mut merge, 1, 700).is_none());
        assert!(merge.push_held(0, 600, (0, 600)).is_none());
        assert_eq!(
            merge.pop_ready(900).collect::<Vec<_>>(),
            [(0, 600), (1, 700)]
        );
    }

    #[test]
    fn late_item_is_released_at_once_even_when_the_clock_steps_back() {
        let mut merge = MergeWindow::new(WINDOW, 1000);
        assert!(push(&mut merge, 0, 500).is_none());
        assert_eq!(merge.pop_ready(650).count(), 1);
        assert!(push(&mut merge, 1, 450).is_none());
        // The client's wall clock was set back: 450 is not due by time, but
        // it is already out of order, and holding it would only delay it.
        assert_eq!(merge.pop_ready(300).collect::<Vec<_>>(), [(1, 450)]);
        assert_eq!(merge.out_of_order(), 1);
    }

    #[test]
    fn full_buffer_releases_the_oldest_early() {
        let mut merge = MergeWindow::new(Duration::from_secs(3600), 3);
        assert!(push(&mut merge, 0, 30).is_none());
        assert!(push(&mut merge, 1, 10).is_none());
        assert!(push(&mut merge, 2, 20).is_none());
        assert_eq!(merge.len(), 3);
        assert_eq!(push(&mut merge, 0, 40), Some((1, 10)));
        assert_eq!(merge.len(), 3);
        assert_eq!(merge.released_early(), 1);
        // An item older than the one released early comes straight back.
        assert_eq!(push(&mut merge, 1, 5), Some((1, 5)));
        assert_eq!(merge.out_of_order(), 1);
        assert_eq!(
            timestamps(&merge.finish().collect::<Vec<_>>()),
            [20, 30, 40]
        );
    }

    #[test]
    fn zero_capacity_passes_items_straight_through() {
        let mut merge = MergeWindow::new(WINDOW, 0);
        assert_eq!(push(&mut merge, 0, 9), Some((0, 9)));
        assert!(merge.is_empty());
    }

    #[test]
    fn finish_flushes_everything_in_order() {
        let mut merge = MergeWindow::new(Duration::from_secs(60), 100);
        for (node, ts) in [(0, 9), (1, 3), (2, 6), (0, 12), (1, 4)] {
            assert!(push(&mut merge, node, ts).is_none());
        }
        assert_eq!(merge.pop_ready(20).count(), 0);
        assert_eq!(
            timestamps(&merge.finish().collect::<Vec<_>>()),
            [3, 4, 6, 9, 12]
        );
        assert!(merge.is_empty());
        assert_eq!(merge.next_deadline(), None);
    }

    #[test]
    fn huge_window_and_timestamps_do_not_overflow() {
        let mut merge = MergeWindow::new(Duration::MAX, 10);
        assert!(push(&mut merge, 0, u64::MAX - 1).is_none());
        assert_eq!(merge.next_deadline(), Some(u64::MAX));
        assert_eq!(merge.pop_ready(u64::MAX).count(), 0);
        assert_eq!(merge.finish().count(), 1);
    }

    #[test]
    fn partly_consumed_iterator_leaves_the_rest_buffered() {
        let mut merge = MergeWindow::new(WINDOW, 100);
        for ts in [1, 2, 3] {
            assert!(push(&mut merge, 0, ts).is_none());
        }
        assert_eq!(merge.pop_ready(1_000).next(), Some((0, 1)));
        assert_eq!(merge.len(), 2);
        assert_eq!(
            timestamps(&merge.pop_ready(1_000).collect::<Vec<_>>()),
            [2, 3]
        );
    }
}
