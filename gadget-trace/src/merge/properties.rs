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
}
