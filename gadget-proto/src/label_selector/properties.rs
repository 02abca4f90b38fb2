//! Property tests: any text parses or is refused with a one-line error
//! that points into it; what parses prints in a canonical form that parses
//! back to the same selector; and selectors written from a model parse to
//! that model and select what the model says.

use proptest::prelude::*;

use super::*;

/// Label keys, with and without a prefix; few enough that generated
/// selectors and label sets share keys.
const KEYS: &[&str] = &[
    "app",
    "tier",
    "in",
    "notin",
    "A_b.C-9",
    "app.kubernetes.io/name",
    "example.com/x",
];

/// Label values, the empty one and keywords included.
const VALUES: &[&str] = &["", "web", "db", "in", "notin", "Web_1.2-x", "9"];

fn key() -> impl Strategy<Value = String> {
    proptest::sample::select(KEYS).prop_map(str::to_string)
}

fn value() -> impl Strategy<Value = String> {
    proptest::sample::select(VALUES).prop_map(str::to_string)
}

/// A set of values; never empty, as `()` is the set of the empty value.
fn value_set() -> impl Strategy<Value = BTreeSet<String>> {
    proptest::collection::btree_set(value(), 1..4)
}

fn operator() -> impl Strategy<Value = Operator> {
    prop_oneof![
        value().prop_map(Operator::Equals),
        value().prop_map(Operator::NotEquals),
        value_set().prop_map(Operator::In),
        value_set().prop_map(Operator::NotIn),
        Just(Operator::Exists),
        Just(Operator::DoesNotExist),
    ]
}

fn requirement() -> impl Strategy<Value = Requirement> {
    (key(), operator()).prop_map(|(key, operator)| Requirement { key, operator })
}

/// Blanks a user may put between tokens.
fn blank() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&["", "", " ", "  ", "\t"][..])
}

/// `requirement` as a user may write it: any of the spellings of its
/// operator, blanks around tokens, a set's values in any order and
/// repeated, an empty value left out or written as an empty slot.
fn written(requirement: Requirement) -> impl Strategy<Value = String> {
    let blanks = proptest::collection::vec(blank(), 6);
    (blanks, any::<bool>(), any::<u64>()).prop_map(move |(b, double, order)| {
        let key = &requirement.key;
        let set = |values: &BTreeSet<String>| {
            // The set's values rotated and with the first repeated: the
            // same set, written otherwise.
            let mut list: Vec<&str> = values.iter().map(String::as_str).collect();
            if !list.is_empty() {
                let turn = (order % list.len() as u64) as usize;
                list.rotate_left(turn);
                list.push(list[0]);
            }
            format!(
                "({}{}{})",
                b[3],
                list.join(&format!("{},{}", b[4], b[5])),
                b[3]
            )
        };
        match &requirement.operator {
            Operator::Equals(v) => {
                let equals = if double { "==" } else { "=" };
                format!("{}{key}{}{equals}{}{v}", b[0], b[1], b[2])
            }
            Operator::NotEquals(v) => format!("{}{key}{}!={}{v}", b[0], b[1], b[2]),
            Operator::In(values) => format!("{}{key} in{}{}", b[0], b[1], set(values)),
            Operator::NotIn(values) => format!("{}{key} notin{}{}", b[0], b[1], set(values)),
            Operator::Exists => format!("{}{key}{}", b[0], b[1]),
            Operator::DoesNotExist => format!("{}!{}{key}{}", b[0], b[1], b[2]),
        }
    })
}

/// Requirements and one way of writing them as a selector.
fn selector_text() -> impl Strategy<Value = (Vec<Requirement>, String)> {
    proptest::collection::vec(requirement(), 0..5).prop_flat_map(|requirements| {
        let texts: Vec<_> = requirements.iter().cloned().map(written).collect();
        (Just(requirements), texts)
            .prop_map(|(requirements, texts)| (requirements, texts.join(",")))
    })
}

/// Whether `labels` meet `requirement`, read off the table in the module
/// documentation.
fn model_matches(requirement: &Requirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&requirement.key).map(String::as_str);
    match (&requirement.operator, value) {
        (Operator::Equals(v), Some(value)) => value == v,
        (Operator::Equals(_), None) => false,
        (Operator::NotEquals(v), Some(value)) => value != v,
        (Operator::NotEquals(_), None) => true,
        (Operator::In(set), Some(value)) => set.iter().any(|v| v == value),
        (Operator::In(_), None) => false,
        (Operator::NotIn(set), Some(value)) => set.iter().all(|v| v != value),
        (Operator::NotIn(_), None) => true,
        (Operator::Exists, found) => found.is_some(),
        (Operator::DoesNotExist, found) => found.is_none(),
    }
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(key(), value(), 0..5)
}

/// Tokens and words of the selector grammar, and characters near it.
const TOKENS: &[&str] = &[
    "a", "b", "in", "notin", "=", "==", "!=", "!", "(", ")", ",", " ", "<", ">", "x/y", "a.b/c",
    "-", "_", ".", "é", "\t", "\u{a0}", "\u{2003}", "\0",
];

/// Text made mostly of the selector's own tokens and words, so that it
/// gets deep into the grammar before going wrong, and anything else.
fn selector_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        4 => proptest::sample::select(TOKENS).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(token, 0..24).prop_map(|tokens| tokens.concat())
}

/// A valid selector with a token put in or a character taken out here and
/// there: near misses, and some that still parse.
fn near_selector() -> impl Strategy<Value = String> {
    let edits = proptest::collection::vec(
        (
            any::<usize>(),
            proptest::option::of(proptest::sample::select(TOKENS)),
        ),
        1..3,
    );
    (selector_text(), edits).prop_map(|((_, mut text), edits)| {
        for (at, token) in edits {
            let boundaries: Vec<usize> = text
                .char_indices()
                .map(|(i, _)| i)
                .chain([text.len()])
                .collect();
            let at = boundaries[at % boundaries.len()];
            match token {
                Some(token) => text.insert_str(at, token),
                None if at < text.len() => {
                    text.remove(at);
                }
                None => {}
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10000))]

    /// Whatever the text: no panic; a selector that parses prints in a
    /// canonical form that parses back to it; a refusal is one line and
    /// its offset is a character boundary of the text.
    #[test]
    fn any_text_parses_canonically_or_is_refused_clearly(
        text in prop_oneof![selector_like(), near_selector(), any::<String>()],
    ) {
        match text.parse::<LabelSelector>() {
            Ok(selector) => {
                let canonical = selector.to_string();
                let again: LabelSelector = canonical.parse().map_err(|e| {
                    TestCaseError::fail(format!("canonical form {canonical:?} refused: {e}"))
                })?;
                prop_assert_eq!(&again, &selector);
                prop_assert_eq!(again.to_string(), canonical);
            }
            Err(err) => {
                prop_assert_eq!(err.selector(), text.as_str());
                let message = err.to_string();
                prop_assert!(!message.contains('\n'), "{}", message);
                prop_assert!(!message.contains('\r'), "{}", message);
                if let SelectorProblem::Unexpected { offset, .. }
                | SelectorProblem::UnsupportedOperator { offset, .. } = err.problem()
                {
                    prop_assert!(*offset <= text.len());
                    prop_assert!(text.is_char_boundary(*offset));
                }
            }
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// A selector written in any of its spellings parses to its
    /// requirements (ordered by key, as Kubernetes orders them), and
    /// selects exactly the label sets the documented table says.
    #[test]
    fn written_selectors_parse_to_their_requirements_and_select_as_documented(
        (requirements, text) in selector_text(),
        label_sets in proptest::collection::vec(labels(), 8),
    ) {
        let selector: LabelSelector = text.parse().map_err(|e| {
            TestCaseError::fail(format!("{text:?} refused: {e}"))
        })?;
        let mut expected = requirements.clone();
        expected.sort_by(|a, b| a.key.cmp(&b.key));
        prop_assert_eq!(selector.requirements(), &expected[..]);
        prop_assert_eq!(selector.to_string().parse::<LabelSelector>(), Ok(selector.clone()));
        for labels in &label_sets {
            let wanted = requirements.iter().all(|r| model_matches(r, labels));
            prop_assert_eq!(selector.matches(labels), wanted, "{:?}", labels);
        }
    }
}
