//! Kubernetes label selectors: the text syntax `kubectl -l` accepts, parsed and
//! validated the way the API server does, and matched against a label set.
//!
//! Supported requirements, joined by `,` (all must hold):
//!
//! | syntax           | holds when                                        |
//! |------------------|---------------------------------------------------|
//! | `key=value`      | the label exists and equals `value` (also `==`)   |
//! | `key!=value`     | the label is absent or differs from `value`       |
//! | `key in (a,b)`   | the label exists and is one of the values         |
//! | `key notin (a,b)`| the label is absent or is none of the values      |
//! | `key`            | the label exists                                  |
//! | `!key`           | the label does not exist                          |
//!
//! The empty selector selects everything.
//!
//! # Examples
//!
//! ```
//! use std::collections::BTreeMap;
//! use gadget_proto::label_selector::LabelSelector;
//!
//! let selector: LabelSelector = "app in (web,api), tier!=db".parse().unwrap();
//! let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
//! assert!(selector.matches(&labels));
//! assert_eq!(selector.to_string(), "app in (api,web),tier!=db");
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::k8s_names::{self, NameProblem, QualifiedNameProblem};

/// A parsed Kubernetes label selector: a conjunction of requirements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    /// Sorted by key (stable), as Kubernetes does, so that the text form is
    /// canonical.
    requirements: Vec<Requirement>,
}

/// One requirement of a selector: a label key and what must hold for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
}

/// What a [`Requirement`] demands of its label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value` or `key==value`: present with this value.
    Equals(String),
    /// `key!=value`: absent, or present with another value.
    NotEquals(String),
    /// `key in (a,b)`: present with one of these values.
    In(BTreeSet<String>),
    /// `key notin (a,b)`: absent, or present with none of these values.
    NotIn(BTreeSet<String>),
    /// `key`: present, whatever the value.
    Exists,
    /// `!key`: absent.
    DoesNotExist,
}

/// A label selector text that could not be parsed; says which text and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {problem}")]
pub struct ParseLabelSelectorError {
    selector: String,
    problem: SelectorProblem,
}

impl ParseLabelSelectorError {
    /// The selector text as it was given.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &SelectorProblem {
        &self.problem
    }
}

/// What is wrong with a label selector text. Offsets are in bytes from the
/// start of the selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorProblem {
    /// A set of values was opened with `(` and never closed.
    #[error("missing ')'")]
    MissingCloseParen,
    /// The text at `offset` is not what the grammar allows there.
    #[error("expected {expected} at offset {offset}, found {found}")]
    Unexpected {
        /// What the grammar allows at this point.
        expected: &'static str,
        /// What is there instead, quoted, or `end of input`.
        found: String,
        /// Where, in bytes from the start of the selector.
        offset: usize,
    },
    /// `<` and `>` are in the Kubernetes grammar for node affinity, but the
    /// API server rejects them in label selectors.
    #[error("unsupported operator '{operator}' at offset {offset}; use =, ==, !=, in, notin, key or !key")]
    UnsupportedOperator {
        /// The operator as written.
        operator: char,
        /// Where, in bytes from the start of the selector.
        offset: usize,
    },
    /// The key is not a Kubernetes qualified name.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A value is not a valid Kubernetes label value.
    #[error("invalid value {value:?} for key {key:?}: {reason}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The value as written.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

impl LabelSelector {
    /// The selector that matches every label set, including the empty one.
    pub fn everything() -> Self {
        Self::default()
    }

    /// True when the selector has no requirement and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when `labels` meets every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    /// The label key, possibly with a DNS prefix (`app.kubernetes.io/name`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What must hold for the label.
    pub fn operator(&self) -> &Operator {
        &self.operator
    }

    /// True when `labels` meets this requirement. `!=` and `notin` hold for
    /// label sets without the key, as in Kubernetes.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.operator {
            Operator::Equals(v) => value == Some(v),
            Operator::NotEquals(v) => value != Some(v),
            Operator::In(set) => value.is_some_and(|v| set.contains(v)),
            Operator::NotIn(set) => value.is_none_or(|v| !set.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl FromStr for LabelSelector {
    type Err = ParseLabelSelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut requirements =
            Parser::new(text)
                .parse()
                .map_err(|problem| ParseLabelSelectorError {
                    selector: text.to_string(),
                    problem,
                })?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match &self.operator {
            Operator::Equals(v) => write!(f, "{key}={v}"),
            Operator::NotEquals(v) => write!(f, "{key}!={v}"),
            Operator::In(set) => write!(f, "{key} in ({})", join(set)),
            Operator::NotIn(set) => write!(f, "{key} notin ({})", join(set)),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
        }
    }
}

fn join(values: &BTreeSet<String>) -> String {
    values
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// A lexical token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    /// A run of characters that are neither whitespace nor one of `=!(),<>`.
    Word(&'a str),
    Equals,
    DoubleEquals,
    NotEquals,
    Bang,
    Open,
    Close,
    Comma,
    /// `<` or `>`: lexed so that the error can name them.
    Compare(char),
    End,
}

impl Token<'_> {
    /// How the token reads in an error message.
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::Equals => "'='".into(),
            Token::DoubleEquals => "'=='".into(),
            Token::NotEquals => "'!='".into(),
            Token::Bang => "'!'".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Comma => "','".into(),
            Token::Compare(c) => format!("'{c}'"),
            Token::End => "end of input".into(),
        }
    }
}

/// Characters that end a word, as in the Kubernetes lexer.
fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '<' | '>')
}

/// A recursive-descent parser over the selector text with one token of
/// lookahead.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    /// The next token and its offset, without consuming it.
    fn peek(&self) -> (Token<'a>, usize) {
        let rest = &self.text[self.pos..];
        let trimmed = rest.trim_start();
        let start = self.pos + (rest.len() - trimmed.len());
        let mut chars = trimmed.chars();
        let token = match chars.next() {
            None => Token::End,
            Some('=') if chars.next() == Some('=') => Token::DoubleEquals,
            Some('=') => Token::Equals,
            Some('!') if chars.next() == Some('=') => Token::NotEquals,
            Some('!') => Token::Bang,
            Some('(') => Token::Open,
            Some(')') => Token::Close,
            Some(',') => Token::Comma,
            Some(c @ ('<' | '>')) => Token::Compare(c),
            Some(_) => {
                let end = trimmed
                    .find(|c: char| c.is_whitespace() || is_special(c))
                    .unwrap_or(trimmed.len());
                Token::Word(&trimmed[..end])
            }
        };
        (token, start)
    }

    /// Consumes and returns the next token and its offset.
    fn next(&mut self) -> (Token<'a>, usize) {
        let (token, start) = self.peek();
        let len = match &token {
            Token::Word(w) => w.len(),
            Token::DoubleEquals | Token::NotEquals => 2,
            Token::End => 0,
            _ => 1,
        };
        self.pos = start + len;
        (token, start)
    }

    fn unexpected(expected: &'static str, (token, offset): (Token<'_>, usize)) -> SelectorProblem {
        if let Token::Compare(operator) = token {
            return SelectorProblem::UnsupportedOperator { operator, offset };
        }
        SelectorProblem::Unexpected {
            expected,
            found: token.describe(),
            offset,
        }
    }

    fn parse(mut self) -> Result<Vec<Requirement>, SelectorProblem> {
        let mut requirements = Vec::new();
        if self.peek().0 == Token::End {
            return Ok(requirements);
        }
        loop {
            requirements.push(self.requirement()?);
            match self.next() {
                (Token::End, _) => return Ok(requirements),
                (Token::Comma, _) => {}
                other => return Err(Self::unexpected("',' or end of input", other)),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorProblem> {
        let negated = self.peek().0 == Token::Bang;
        if negated {
            self.next();
        }
        let key = match self.next() {
            (Token::Word(word), _) => word.to_string(),
            other => return Err(Self::unexpected("a label key or '!'", other)),
        };
        validate_key(&key)?;
        if negated {
            return Ok(Requirement {
                key,
                operator: Operator::DoesNotExist,
            });
        }
        let operator = match self.peek() {
            (Token::End | Token::Comma, _) => Operator::Exists,
            (Token::Equals | Token::DoubleEquals, _) => {
                self.next();
                Operator::Equals(self.exact_value(&key)?)
            }
            (Token::NotEquals, _) => {
                self.next();
                Operator::NotEquals(self.exact_value(&key)?)
            }
            (Token::Word("in"), _) => {
                self.next();
                Operator::In(self.value_set(&key)?)
            }
            (Token::Word("notin"), _) => {
                self.next();
                Operator::NotIn(self.value_set(&key)?)
            }
            other => {
                return Err(Self::unexpected(
                    "'=', '==', '!=', 'in', 'notin', ',' or end of input",
                    other,
                ))
            }
        };
        Ok(Requirement { key, operator })
    }

    /// The value after `=`, `==` or `!=`; missing means the empty value, as
    /// in Kubernetes (`a=` selects labels `a` with an empty value).
    fn exact_value(&mut self, key: &str) -> Result<String, SelectorProblem> {
        let value = match self.peek() {
            (Token::End | Token::Comma, _) => String::new(),
            (Token::Word(word), _) => {
                self.next();
                word.to_string()
            }
            other => return Err(Self::unexpected("a label value", other)),
        };
        validate_value(key, &value)?;
        Ok(value)
    }

    /// `(v1,v2,...)` after `in` or `notin`. An empty slot (`()`, `(a,)`,
    /// `(a,,b)`) is the empty value, as in Kubernetes.
    fn value_set(&mut self, key: &str) -> Result<BTreeSet<String>, SelectorProblem> {
        match self.next() {
            (Token::Open, _) => {}
            other => return Err(Self::unexpected("'(' starting a list of values", other)),
        }
        let mut values = BTreeSet::new();
        loop {
            let value = match self.peek() {
                (Token::Word(word), _) => {
                    self.next();
                    word.to_string()
                }
                (Token::Comma | Token::Close, _) => String::new(),
                (Token::End, _) => return Err(SelectorProblem::MissingCloseParen),
                other => return Err(Self::unexpected("a label value, ',' or ')'", other)),
            };
            validate_value(key, &value)?;
            values.insert(value);
            match self.next() {
                (Token::Comma, _) => {}
                (Token::Close, _) => return Ok(values),
                (Token::End, _) => return Err(SelectorProblem::MissingCloseParen),
                other => return Err(Self::unexpected("',' or ')'", other)),
            }
        }
    }
}

const WORD_RULE: &str =
    "must start and end with a letter or digit and contain only letters, digits, '-', '_' or '.'";

/// Checks a key the way the API server checks qualified names.
fn validate_key(key: &str) -> Result<(), SelectorProblem> {
    let reason = match k8s_names::check_qualified_name(key) {
        Ok(()) => return Ok(()),
        Err(QualifiedNameProblem::Prefix(NameProblem::Empty)) => {
            "prefix before '/' must not be empty"
        }
        Err(QualifiedNameProblem::Prefix(NameProblem::TooLong { .. })) => {
            "prefix before '/' must be 253 characters or less"
        }
        Err(QualifiedNameProblem::Prefix(_)) => {
            "prefix before '/' must be a lower-case DNS subdomain, e.g. example.com"
        }
        Err(QualifiedNameProblem::Slashes) => "a key may contain at most one '/'",
        Err(QualifiedNameProblem::Name(NameProblem::Empty)) => "name part must not be empty",
        Err(QualifiedNameProblem::Name(NameProblem::TooLong { .. })) => {
            "name part must be 63 characters or less"
        }
        Err(QualifiedNameProblem::Name(_)) => {
            "name part must start and end with a letter or digit and contain only letters, digits, '-', '_' or '.'"
        }
    };
    Err(SelectorProblem::InvalidKey {
        key: key.to_string(),
        reason,
    })
}

/// Checks a value the way the API server checks label values.
fn validate_value(key: &str, value: &str) -> Result<(), SelectorProblem> {
    let reason = match k8s_names::check_label_value(value) {
        Ok(()) => return Ok(()),
        Err(NameProblem::TooLong { .. }) => "must be 63 characters or less",
        Err(_) => WORD_RULE,
    };
    Err(SelectorProblem::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    })
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(text: &str) -> LabelSelector {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn error(text: &str) -> String {
        match text.parse::<LabelSelector>() {
            Ok(s) => panic!("{text:?} should not parse, got {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_and_blank_select_everything() {
        for text in ["", "   ", "\t\n"] {
            let s = parse(text);
            assert!(s.is_empty());
            assert!(s.matches(&labels(&[])));
            assert!(s.matches(&labels(&[("a", "b")])));
            assert_eq!(s.to_string(), "");
        }
        assert_eq!(LabelSelector::everything(), parse(""));
    }

    #[test]
    fn equals_and_double_equals() {
        for text in ["app=web", "app==web", " app = web ", "app == web"] {
            let s = parse(text);
            assert!(s.matches(&labels(&[("app", "web")])), "{text}");
            assert!(!s.matches(&labels(&[("app", "api")])), "{text}");
            assert!(!s.matches(&labels(&[])), "{text}");
            assert_eq!(s.to_string(), "app=web");
        }
    }

    #[test]
    fn not_equals_matches_missing_key() {
        let s = parse("app!=web");
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(s.matches(&labels(&[("app", "api")])));
        assert!(s.matches(&labels(&[])));
        assert_eq!(s.to_string(), "app!=web");
    }

    #[test]
    fn in_set() {
        let s = parse("env in (prod, staging)");
        assert!(s.matches(&labels(&[("env", "prod")])));
        assert!(s.matches(&labels(&[("env", "staging")])));
        assert!(!s.matches(&labels(&[("env", "dev")])));
        assert!(!s.matches(&labels(&[])));
        assert_eq!(s.to_string(), "env in (prod,staging)");
    }

    #[test]
    fn notin_set_matches_missing_key() {
        let s = parse("env notin (prod,staging)");
        assert!(!s.matches(&labels(&[("env", "prod")])));
        assert!(s.matches(&labels(&[("env", "dev")])));
        assert!(s.matches(&labels(&[])));
        assert_eq!(s.to_string(), "env notin (prod,staging)");
    }

    #[test]
    fn exists_and_does_not_exist() {
        let exists = parse("app");
        assert!(exists.matches(&labels(&[("app", "")])));
        assert!(!exists.matches(&labels(&[("other", "x")])));
        let absent = parse("!app");
        assert!(!absent.matches(&labels(&[("app", "x")])));
        assert!(absent.matches(&labels(&[])));
        assert_eq!(parse("! app").to_string(), "!app");
    }

    #[test]
    fn requirements_are_anded() {
        let s = parse("app=web,tier in (front),!canary,release");
        assert!(s.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("release", "1")
        ])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("release", "1"),
            ("canary", "yes")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert_eq!(s.requirements().len(), 4);
    }

    #[test]
    fn prefixed_keys() {
        let s = parse("app.kubernetes.io/name=nginx,example.com/tier notin (db)");
        assert!(s.matches(&labels(&[("app.kubernetes.io/name", "nginx")])));
        assert_eq!(s.requirements()[0].key(), "app.kubernetes.io/name");
        assert_eq!(
            s.to_string(),
            "app.kubernetes.io/name=nginx,example.com/tier notin (db)"
        );
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        let s = parse("  zone notin (b, a, a),  app==web ,!x, y in (2,1)");
        let text = s.to_string();
        assert_eq!(text, "app=web,!x,y in (1,2),zone notin (a,b)");
        assert_eq!(parse(&text), s);
    }

    #[test]
    fn empty_values_follow_kubernetes() {
        // `a=` selects an empty value; empty list slots are the empty value.
        let s = parse("a=,b!=");
        assert!(s.matches(&labels(&[("a", "")])));
        assert!(!s.matches(&labels(&[("a", "x")])));
        assert_eq!(s.to_string(), "a=,b!=");
        let set = parse("a in (x,)");
        assert!(set.matches(&labels(&[("a", "")])));
        assert!(set.matches(&labels(&[("a", "x")])));
        assert_eq!(set.to_string(), "a in (,x)");
        assert!(parse("a in ()").matches(&labels(&[("a", "")])));
        assert_eq!(parse("a in (,,x)").to_string(), "a in (,x)");
    }

    #[test]
    fn keywords_can_be_values_and_keys() {
        let s = parse("mode in (in,notin),in=notin");
        assert!(s.matches(&labels(&[("mode", "in"), ("in", "notin")])));
    }

    #[test]
    fn missing_close_paren() {
        assert_eq!(
            error("a in (b"),
            r#"invalid label selector "a in (b": missing ')'"#
        );
        assert_eq!(
            error("a in (b,"),
            r#"invalid label selector "a in (b,": missing ')'"#
        );
        assert_eq!(
            error("a notin ("),
            r#"invalid label selector "a notin (": missing ')'"#
        );
    }

    #[test]
    fn missing_open_paren() {
        assert_eq!(
            error("a in b"),
            r#"invalid label selector "a in b": expected '(' starting a list of values at offset 5, found "b""#
        );
        assert!(error("a notin")
            .contains("expected '(' starting a list of values at offset 7, found end of input"));
    }

    #[test]
    fn stray_tokens() {
        assert_eq!(
            error("a=b=c"),
            r#"invalid label selector "a=b=c": expected ',' or end of input at offset 3, found '='"#
        );
        assert!(error("a b").contains(
            "expected '=', '==', '!=', 'in', 'notin', ',' or end of input at offset 2, found \"b\""
        ));
        assert!(error("a,").contains("expected a label key or '!' at offset 2, found end of input"));
        assert!(error(",a").contains("expected a label key or '!' at offset 0, found ','"));
        assert!(error("a,,b").contains("at offset 2, found ','"));
        assert!(error("!a=b").contains("expected ',' or end of input at offset 2, found '='"));
        assert!(error("!").contains("expected a label key or '!' at offset 1"));
        assert!(error("a in (b) c").contains("found \"c\""));
        assert!(error("a=(b)").contains("expected a label value at offset 2, found '('"));
        assert!(error("a in (b)(").contains("offset 8"));
        assert!(error("a in (b c)").contains("expected ',' or ')' at offset 8, found \"c\""));
        assert!(
            error("a in (=)").contains("expected a label value, ',' or ')' at offset 6, found '='")
        );
        assert!(error("(a)").contains("expected a label key or '!' at offset 0, found '('"));
    }

    #[test]
    fn comparison_operators_are_rejected_by_name() {
        assert_eq!(
            error("a>1"),
            r#"invalid label selector "a>1": unsupported operator '>' at offset 1; use =, ==, !=, in, notin, key or !key"#
        );
        assert!(error("a < 1").contains("unsupported operator '<' at offset 2"));
    }

    #[test]
    fn invalid_keys() {
        assert!(error("-a=b").contains(r#"invalid key "-a": name part must start and end"#));
        assert!(error("a-=b").contains(r#"invalid key "a-""#));
        assert!(error("a$b=c").contains(r#"invalid key "a$b""#));
        assert!(error("/a=b").contains("prefix before '/' must not be empty"));
        assert!(error("a/=b").contains("name part must not be empty"));
        assert!(error("Example.com/a=b").contains("lower-case DNS subdomain"));
        assert!(error("a..b/c=d").contains("lower-case DNS subdomain"));
        assert!(error("a/b/c=d").contains("at most one '/'"));
        let long = "k".repeat(64);
        assert!(error(&format!("{long}=v")).contains("name part must be 63 characters or less"));
        let long_prefix = format!("{}/k", "p".repeat(254));
        assert!(error(&long_prefix).contains("253 characters or less"));
        // The limits themselves are accepted.
        parse(&format!("{}=v", "k".repeat(63)));
        parse(&format!("{}.io/k", "p".repeat(60)));
        parse("A_b.C-9=x");
    }

    #[test]
    fn invalid_values() {
        assert_eq!(
            error("a=-b"),
            r#"invalid label selector "a=-b": invalid value "-b" for key "a": must start and end with a letter or digit and contain only letters, digits, '-', '_' or '.'"#
        );
        assert!(error("a in (ok, bad_)").contains(r#"invalid value "bad_" for key "a""#));
        assert!(error("a!=x/y").contains(r#"invalid value "x/y""#));
        let long = "v".repeat(64);
        assert!(error(&format!("a={long}")).contains("must be 63 characters or less"));
        parse(&format!("a={}", "v".repeat(63)));
        parse("a=Web_1.2-x");
    }

    #[test]
    fn non_ascii_is_reported_not_panicking() {
        assert!(error("é=b").contains(r#"invalid key "é""#));
        assert!(error("a=ü").contains(r#"invalid value "ü""#));
        assert!(error("a in (ü").contains("invalid value"));
    }

    #[test]
    fn error_exposes_its_parts() {
        let e = "a in (b".parse::<LabelSelector>().unwrap_err();
        assert_eq!(e.selector(), "a in (b");
        assert_eq!(e.problem(), &SelectorProblem::MissingCloseParen);
    }

    #[test]
    fn requirement_accessors() {
        let s = parse("b notin (x),a");
        assert_eq!(s.requirements()[0].key(), "a");
        assert_eq!(s.requirements()[0].operator(), &Operator::Exists);
        assert_eq!(
            s.requirements()[1].operator(),
            &Operator::NotIn(BTreeSet::from(["x".to_string()]))
        );
    }
}
