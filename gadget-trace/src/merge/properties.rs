//! Property tests of merging, with timestamps as untrusted as the nodes
//! that send them (any u64, any order, any node): every item comes out
//! exactly once; the buffer never holds more than its capacity; an item
//! comes out before its window has passed only when the buffer was full
//! or it was already late; and the items that come out after a newer one
//! are exactly those counted out of order.

use proptest::prelude::*;

use super::*;

/// What the task driving a merge does.
#[derive(Debug, Clone)]
enum Step {
    /// An item arrives from `node` with `timestamp_ns`.
    Push { node: usize, timestamp_ns: u64 },
    /// The timer fires at `now_ns`.
    Pop { now_ns: u64 },
}

/// Timestamps near each other (so that windows matter), anywhere, and at
/// the ends of u64.
fn timestamp() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 1_000u64..1_200,
        1 => any::<u64>(),
        1 => prop_oneof![Just(0), Just(u64::MAX), Just(u64::MAX - 1)],
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..3, timestamp())
            .prop_map(|(node, timestamp_ns)| Step::Push { node, timestamp_ns }),
        1 => timestamp().prop_map(|now_ns| Step::Pop { now_ns }),
    ]
}

/// An item: its arrival number and timestamp.
type Item = (usize, u64);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn every_item_comes_out_once_and_out_of_order_ones_are_counted(
        steps in proptest::collection::vec(step(), 0..40),
        window_ns in prop_oneof![0u64..100, Just(u64::MAX)],
        capacity in 1usize..8,
    ) {
        let mut merge = MergeWindow::new(Duration::from_nanos(window_ns), capacity);
        let mut out: Vec<Item> = Vec::new();
        let mut pushed = 0;
        let mut early = 0;
        for step in steps {
            match step {
                Step::Push { node, timestamp_ns } => {
                    if let Some(item) = merge.push(node, timestamp_ns, (pushed, timestamp_ns)) {
                        early += 1;
                        out.push(item);
                    }
                    pushed += 1;
                }
                Step::Pop { now_ns } => {
                    let newest = out.iter().map(|&(_, t)| t).max();
                    for item in merge.pop_ready(now_ns) {
                        // Due, or older than something already out.
                        let due = item.1 <= now_ns.saturating_sub(window_ns);
                        let late = newest.is_some_and(|newest| item.1 < newest);
                        prop_assert!(due || late, "{:?} out at {}", item, now_ns);
                        out.push(item);
                    }
                }
            }
            prop_assert!(merge.len() <= capacity);
        }
        out.extend(merge.finish());
        prop_assert!(merge.is_empty());

        let mut arrivals: Vec<usize> = out.iter().map(|&(arrival, _)| arrival).collect();
        arrivals.sort_unstable();
        prop_assert_eq!(arrivals, (0..pushed).collect::<Vec<_>>());
        prop_assert_eq!(merge.released_early(), early);
        let mut newest = None;
        let mut behind = 0;
        for &(_, timestamp_ns) in &out {
            if newest.is_some_and(|newest| timestamp_ns < newest) {
                behind += 1;
            }
            newest = newest.max(Some(timestamp_ns));
        }
        prop_assert_eq!(merge.out_of_order(), behind);
    }

    /// The per-node queues release exactly what one sorted list of every
    /// buffered item would (the merge as it was before them): the oldest
    /// by (timestamp, node, arrival), at the same steps.
    #[test]
    fn releases_the_oldest_by_timestamp_node_and_arrival(
        steps in proptest::collection::vec(step(), 0..60),
        window_ns in prop_oneof![0u64..100, Just(u64::MAX)],
        capacity in 1usize..8,
    ) {
        let mut merge = MergeWindow::new(Duration::from_nanos(window_ns), capacity);
        // (timestamp, node, arrival) of every buffered item.
        let mut model: Vec<(u64, usize, usize)> = Vec::new();
        let take_oldest = |model: &mut Vec<(u64, usize, usize)>| {
            let oldest = model.iter().enumerate().min_by_key(|(_, key)| **key)?.0;
            Some(model.remove(oldest).2)
        };
        for (arrival, step) in steps.into_iter().enumerate() {
            match step {
                Step::Push { node, timestamp_ns } => {
                    model.push((timestamp_ns, node, arrival));
                    let expected = if model.len() > capacity { take_oldest(&mut model) } else { None };
                    prop_assert_eq!(merge.push(node, timestamp_ns, arrival), expected);
                }
                Step::Pop { now_ns } => {
                    let ready: Vec<usize> = merge.pop_ready(now_ns).collect();
                    for arrival in ready {
                        prop_assert_eq!(Some(arrival), take_oldest(&mut model));
                    }
                    let next = model.iter().min().map(|key| key.0);
                    prop_assert_eq!(merge.oldest().map(|key| key.timestamp_ns), next);
                }
            }
            prop_assert_eq!(merge.len(), model.len());
        }
        let rest: Vec<usize> = merge.finish().collect();
        for arrival in rest {
            prop_assert_eq!(Some(arrival), take_oldest(&mut model));
        }
        prop_assert!(model.is_empty());
    }
}
