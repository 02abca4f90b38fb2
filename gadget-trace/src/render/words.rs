//! Arguments and names from a traced process, written so that their content
//! cannot fake where one ends or that it was cut.
//!
//! Joined with spaces, `["x /etc/shadow"]` would read as two arguments, and
//! an argument or a path ending in `…` would read as one the kernel side cut.
//! So a word is written escaped (see [`write_escaped`]) and, when it could be
//! misread, between double quotes:
//!
//! | word                                         | written as           |
//! |----------------------------------------------|----------------------|
//! | empty                                        | `""`                 |
//! | with a space, `"`, `'` or `…`, or led by `<` | `"x /etc/shadow"`    |
//! | a `"` inside quotes                          | `\"`                 |
//! | anything else                                | as [`write_escaped`] |
//!
//! The escaper writes every backslash as `\\`, so `\"` is one more escape
//! and cannot come from the content. Outside quotes, a space only separates
//! words, a `…` is only the truncation marker, and a word led by `<` is only
//! a marker of this module (`<unreadable>`).

use super::escape::write_escaped;

/// What is shown for a name the kernel side could not read.
pub(crate) const UNREADABLE: &str = "<unreadable>";

/// Writes `word` escaped, quoted when it could be misread.
pub(crate) fn write_word(out: &mut Vec<u8>, word: &[u8]) {
    if !needs_quotes(word) {
        write_escaped(out, word);
        return;
    }
    out.push(b'"');
    // `"` is ASCII, so splitting on it never splits a UTF-8 sequence the
    // escaper would otherwise have kept whole.
    for (i, part) in word.split(|&b| b == b'"').enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\\\"");
        }
        write_escaped(out, part);
    }
    out.push(b'"');
}

/// Writes `words` separated by spaces, then ` …` when the list was cut.
pub(crate) fn write_words<'a>(
    out: &mut Vec<u8>,
    words: impl IntoIterator<Item = &'a [u8]>,
    truncated: bool,
) {
    let start = out.len();
    for word in words {
        if out.len() > start {
            out.push(b' ');
        }
        write_word(out, word);
    }
    if truncated {
        if out.len() > start {
            out.push(b' ');
        }
        out.extend_from_slice("…".as_bytes());
    }
}

/// Writes a name (a path, a program) as a word, followed by `…` when its
/// end was cut, or [`UNREADABLE`] when it could not be read.
pub(crate) fn write_name(out: &mut Vec<u8>, name: &[u8], truncated: bool, unreadable: bool) {
    if unreadable {
        out.extend_from_slice(UNREADABLE.as_bytes());
        return;
    }
    write_word(out, name);
    if truncated {
        out.extend_from_slice("…".as_bytes());
    }
}

fn needs_quotes(word: &[u8]) -> bool {
    const ELLIPSIS: &[u8] = "…".as_bytes();
    word.is_empty()
        || word.first() == Some(&b'<')
        || word.iter().any(|b| matches!(b, b' ' | b'"' | b'\''))
        || word.windows(ELLIPSIS.len()).any(|w| w == ELLIPSIS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&[u8]], truncated: bool) -> String {
        let mut out = Vec::new();
        write_words(&mut out, list.iter().copied(), truncated);
        String::from_utf8(out).unwrap()
    }

    fn name(text: &[u8], truncated: bool) -> String {
        let mut out = Vec::new();
        write_name(&mut out, text, truncated, false);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_words_are_written_as_they_are() {
        assert_eq!(words(&[b"cat", b"/etc/passwd"], false), "cat /etc/passwd");
    }

    /// Regression: `["x /etc/shadow"]` read as two arguments.
    #[test]
    fn one_argument_with_a_space_is_not_two() {
        let one = words(&[b"x /etc/shadow"], false);
        let two = words(&[b"x", b"/etc/shadow"], false);
        assert_eq!(one, "\"x /etc/shadow\"");
        assert_eq!(two, "x /etc/shadow");
        assert_ne!(one, two);
    }

    /// Regression: an argument ending in `…` read as a cut argument list.
    #[test]
    fn an_argument_ending_in_an_ellipsis_is_not_the_truncation_marker() {
        let fake = words(&[b"ls", "…".as_bytes()], false);
        let cut = words(&[b"ls"], true);
        assert_eq!(fake, "ls \"…\"");
        assert_eq!(cut, "ls …");
        assert_ne!(fake, cut);
        assert_eq!(words(&[], true), "…");
    }

    /// Regression: a path ending in `…` read as a cut path.
    #[test]
    fn a_name_ending_in_an_ellipsis_is_not_a_cut_name() {
        assert_eq!(name("/tmp/x…".as_bytes(), false), "\"/tmp/x…\"");
        assert_eq!(name(b"/tmp/x", true), "/tmp/x…");
        assert_eq!(name("/tmp/x…".as_bytes(), true), "\"/tmp/x…\"…");
    }

    #[test]
    fn empty_arguments_are_shown() {
        assert_eq!(words(&[b"a", b"", b"b"], false), "a \"\" b");
    }

    #[test]
    fn quotes_inside_a_quoted_word_are_escaped_and_backslashes_stay_distinct() {
        assert_eq!(words(&[b"say \"hi\""], false), r#""say \"hi\"""#);
        // A backslash then a quote in the content: `\\` then `\"`.
        assert_eq!(words(&[b"a\\\"b"], false), r#""a\\\"b""#);
        assert_eq!(words(&[b"it's"], false), "\"it's\"");
    }

    #[test]
    fn controls_are_escaped_inside_quotes_too() {
        assert_eq!(words(&[b"a \x1b[2J"], false), "\"a \\x1b[2J\"");
        assert_eq!(words(&[b"a\nb"], false), "a\\nb");
    }

    #[test]
    fn markers_cannot_be_faked_by_a_word() {
        let mut out = Vec::new();
        write_name(&mut out, b"", false, true);
        assert_eq!(out, UNREADABLE.as_bytes());
        assert_eq!(name(UNREADABLE.as_bytes(), false), "\"<unreadable>\"");
        assert_eq!(name(b"", false), "\"\"");
    }
}
