//! Escaping of untrusted text (paths, arguments, command names) for terminals.
//!
//! A traced process chooses its file names and arguments, so printing them
//! raw would let it move the cursor, clear the screen, retitle the window
//! (OSC) or reorder what the reader sees (bidi overrides). Every character
//! that is not plainly visible is written as an escape instead:
//!
//! | input                                   | written as          |
//! |-----------------------------------------|---------------------|
//! | `\`                                     | `\\`                |
//! | newline, tab, carriage return           | `\n`, `\t`, `\r`    |
//! | other C0 controls and DEL               | `\x1b`, `\x7f`, ... |
//! | a byte that is not part of valid UTF-8  | `\xff`, `\x9b`, ... |
//! | C1 controls (U+0080..U+009F)            | `\u{9b}`, ...       |
//! | invisible and direction-changing chars  | `\u{202e}`, ...     |
//!
//! Every backslash in the output starts an escape, and `\xHH` above 0x7f
//! always means a raw byte while `\u{..}` always means a character, so the
//! original bytes can be told apart and recovered.

use std::ops::ControlFlow;

/// A part of escaped text: either characters written as they are, or one
/// escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    /// Printable characters, one display column each.
    Plain(&'a str),
    /// One escape sequence; ASCII, one column per byte.
    Escape(&'a [u8]),
}

/// Writes `text` to `out` with every control, invisible or invalid part
/// escaped as described in the module documentation.
pub fn write_escaped(out: &mut Vec<u8>, text: &[u8]) {
    let _ = for_each_piece(text, |piece| {
        match piece {
            Piece::Plain(s) => out.extend_from_slice(s.as_bytes()),
            Piece::Escape(e) => out.extend_from_slice(e),
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `text` escaped as by [`write_escaped`], for a line composed as a
/// string: an error or report line with text from the API server, a node
/// or the kernel in it.
pub fn escaped(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    write_escaped(&mut out, text.as_bytes());
    // The escaper writes ASCII escapes and whole UTF-8 characters only.
    String::from_utf8(out).expect("escaped text is UTF-8")
}

/// Writes `text` escaped into at most `width` display columns and returns
/// the columns used. Text that does not fit is cut at a character or escape
/// boundary and ends with `…`; an escape is never cut in half.
///
/// Columns are counted as one per character: wide (East Asian) and
/// combining characters make a row look misaligned, not unsafe.
pub(crate) fn write_escaped_fit(out: &mut Vec<u8>, text: &[u8], width: usize) -> usize {
    let Some(limit) = width.checked_sub(1) else {
        return 0;
    };
    if printable_ascii_run(text, b'\\') == text.len() {
        // Nothing to escape and one column a byte (most paths and names):
        // what the pieces below come to, without walking them.
        if text.len() <= width {
            out.extend_from_slice(text);
            return text.len();
        }
        out.extend_from_slice(&text[..limit]);
        out.extend_from_slice("…".as_bytes());
        return width;
    }
    // `limit` is what is left for text once the `…` is needed; `cut` is the
    // furthest boundary (output length, columns) that stays within it.
    let mut cols = 0;
    let mut cut = (out.len(), 0);
    let flow = for_each_piece(text, |piece| {
        let (bytes, n) = match piece {
            Piece::Plain(s) => (s.as_bytes(), s.chars().count()),
            Piece::Escape(e) => (e, e.len()),
        };
        if cols <= limit {
            let (kept_bytes, kept_cols) = match piece {
                Piece::Plain(s) => s
                    .char_indices()
                    .nth(limit - cols)
                    .map_or((s.len(), n), |(i, _)| (i, limit - cols)),
                Piece::Escape(e) if cols + n <= limit => (e.len(), n),
                Piece::Escape(_) => (0, 0),
            };
            cut = (out.len() + kept_bytes, cols + kept_cols);
        }
        if cols + n > width {
            // Keep the part of this piece that is before the cut.
            let kept = cut.0.saturating_sub(out.len());
            out.extend_from_slice(&bytes[..kept]);
            return ControlFlow::Break(());
        }
        out.extend_from_slice(bytes);
        cols += n;
        ControlFlow::Continue(())
    });
    if flow.is_break() {
        out.truncate(cut.0);
        out.extend_from_slice("…".as_bytes());
        cut.1 + 1
    } else {
        cols
    }
}

/// Calls `emit` with the pieces of `text` escaped, in order, until it breaks.
fn for_each_piece(
    text: &[u8],
    mut emit: impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    for chunk in text.utf8_chunks() {
        let valid = chunk.valid();
        let bytes = valid.as_bytes();
        let mut run_start = 0;
        let mut i = 0;
        while i < bytes.len() {
            // Printable ASCII but `\` is printed as it is, decided from the
            // byte alone: decoding and classifying every character took
            // most of the client's time per row in columns.
            let plain = printable_ascii_run(&bytes[i..], b'\\');
            if plain > 0 {
                i += plain;
                continue;
            }
            // `i` is on a character boundary: it only ever moves by whole
            // characters.
            let c = valid[i..].chars().next().expect("i < len");
            let at = i;
            i += c.len_utf8();
            let mut buf = [0u8; 12];
            let Some(escape) = escape_char(c, &mut buf) else {
                continue;
            };
            if run_start < at {
                emit(Piece::Plain(&valid[run_start..at]))?;
            }
            emit(Piece::Escape(escape))?;
            run_start = i;
        }
        if run_start < valid.len() {
            emit(Piece::Plain(&valid[run_start..]))?;
        }
        for &byte in chunk.invalid() {
            emit(Piece::Escape(&hex_byte_escape(byte)))?;
        }
    }
    ControlFlow::Continue(())
}

/// How many of the leading `bytes` are printable ASCII (0x20 to 0x7e) but
/// `\` and `stop`: what both the terminal escaper (`stop` = `\`) and JSON
/// strings (`stop` = `"`) write as it is.
///
/// Eight bytes at a time, in a `u64`: byte by byte, the test and the jump
/// cost more than a dozen instructions a byte, and strings were 28% of
/// the client's instructions per JSON row.
pub(crate) fn printable_ascii_run(bytes: &[u8], stop: u8) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // High bit of some byte set when a byte of `word` is zero (exact as an
    // "any", which is all that is asked).
    let any_zero = |word: u64| word.wrapping_sub(ONES) & !word;
    let all_plain = |chunk: &[u8]| {
        let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
        // A byte below 0x20 (any byte below n <= 0x80 shows as `(word - n)
        // & !word`), at 0x80 or above, DEL, `\` or `stop` ends the run.
        let special = (word.wrapping_sub(ONES * 0x20) & !word)
            | word
            | any_zero(word ^ (ONES * 0x7f))
            | any_zero(word ^ (ONES * u64::from(b'\\')))
            | any_zero(word ^ (ONES * u64::from(stop)));
        special & HIGHS == 0
    };
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        if !all_plain(chunk) {
            break;
        }
        i += 8;
    }
    // Fewer than eight bytes left, after whole words that were plain: the
    // last eight bytes, overlapping those words, are checked as one word
    // rather than byte by byte (the tail of a name or path cost as much as
    // its words).
    if bytes.len() - i < 8 && bytes.len() >= 8 && all_plain(&bytes[bytes.len() - 8..]) {
        return bytes.len();
    }
    i + bytes[i..]
        .iter()
        .take_while(|&&b| matches!(b, b' '..=b'~') && b != b'\\' && b != stop)
        .count()
}

/// The escape for `c`, or `None` when it is printed as it is.
fn escape_char(c: char, buf: &mut [u8; 12]) -> Option<&[u8]> {
    match c {
        '\\' => Some(b"\\\\"),
        '\n' => Some(b"\\n"),
        '\t' => Some(b"\\t"),
        '\r' => Some(b"\\r"),
        // C0 and DEL: one byte, written like an invalid byte is.
        '\0'..='\x1f' | '\x7f' => {
            buf[..4].copy_from_slice(&hex_byte_escape(c as u8));
            Some(&buf[..4])
        }
        // C1 controls, including U+009B, which terminals may take as CSI.
        '\u{80}'..='\u{9f}' => Some(unicode_escape(c, buf)),
        c if is_invisible(c) => Some(unicode_escape(c, buf)),
        _ => None,
    }
}

/// Characters that change direction, join or hide text without showing
/// anything themselves: with them a name can look like another.
pub(super) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'                        // soft hyphen
        | '\u{34f}'                     // combining grapheme joiner
        | '\u{61c}'                     // arabic letter mark
        | '\u{115f}' | '\u{1160}'       // hangul fillers
        | '\u{17b4}' | '\u{17b5}'       // khmer inherent vowels
        | '\u{180e}'                    // mongolian vowel separator
        | '\u{200b}'..='\u{200f}'       // zero width space/joiners, LRM, RLM
        | '\u{2028}'..='\u{202e}'       // line/paragraph separators, bidi embeddings and overrides
        | '\u{2060}'..='\u{206f}'       // word joiner, invisible operators, bidi isolates
        | '\u{3164}'                    // hangul filler
        | '\u{fe00}'..='\u{fe0f}'       // variation selectors
        | '\u{feff}'                    // zero width no-break space (BOM)
        | '\u{ffa0}'                    // halfwidth hangul filler
        | '\u{fff9}'..='\u{fffb}'       // interlinear annotation
        | '\u{e0000}'..='\u{e0fff}' // tags and variation selectors supplement
    )
}

/// `\xHH` for `byte`.
fn hex_byte_escape(byte: u8) -> [u8; 4] {
    [
        b'\\',
        b'x',
        HEX[usize::from(byte >> 4)],
        HEX[usize::from(byte & 0xf)],
    ]
}

/// Writes `\u{h..}` (lower-case hex, no leading zeros) for `c` into `buf`.
fn unicode_escape(c: char, buf: &mut [u8; 12]) -> &[u8] {
    let code = u32::from(c);
    let digits = (32 - code.leading_zeros()).div_ceil(4).max(1) as usize;
    buf[..3].copy_from_slice(b"\\u{");
    for i in 0..digits {
        let shift = 4 * (digits - 1 - i);
        buf[3 + i] = HEX[((code >> shift) & 0xf) as usize];
    }
    buf[3 + digits] = b'}';
    &buf[..4 + digits]
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn escaped(text: &[u8]) -> String {
        let mut out = Vec::new();
        write_escaped(&mut out, text);
        String::from_utf8(out).expect("escaped text is UTF-8")
    }

    #[test]
    fn printable_run_stops_at_every_byte_the_terminal_escaper_does_not_pass() {
        // Every byte value at every place of a word and past it, against
        // the byte-by-byte rule (`"` is plain here, unlike in JSON).
        for byte in 0..=u8::MAX {
            let plain = matches!(byte, b' '..=b'~') && byte != b'\\';
            for at in 0..20 {
                let mut bytes = vec![b'a'; 20];
                bytes[at] = byte;
                let expected = if plain { 20 } else { at };
                let run = printable_ascii_run(&bytes, b'\\');
                assert_eq!(run, expected, "{byte:#x} at {at}");
            }
        }
    }

    #[test]
    fn plain_text_fits_as_the_pieces_would_fit_it() {
        // The whole-text shortcut against the same text with one escape at
        // its end, which walks the pieces: the part before it is cut alike.
        let text = b"/usr/lib/python3.11/site-packages/checkout/handlers.py";
        for width in 0..text.len() + 2 {
            let (fitted, cols) = fit(text, width);
            let mut walked = text.to_vec();
            walked.push(b'\n');
            let (walked, walked_cols) = fit(&walked, width);
            if width < text.len() {
                assert_eq!((&fitted, cols), (&walked, walked_cols), "width {width}");
            } else {
                assert_eq!(fitted.as_bytes(), text, "width {width}");
                assert_eq!(cols, text.len());
            }
        }
    }

    fn fit(text: &[u8], width: usize) -> (String, usize) {
        let mut out = b"prefix|".to_vec();
        let cols = write_escaped_fit(&mut out, text, width);
        let out = String::from_utf8(out).expect("escaped text is UTF-8");
        (out["prefix|".len()..].to_string(), cols)
    }

    /// Parses escaped text back into bytes, to show the escaping loses
    /// nothing.
    pub(crate) fn unescape(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            match chars.next() {
                Some('\\') => out.push(b'\\'),
                Some('n') => out.push(b'\n'),
                Some('t') => out.push(b'\t'),
                Some('r') => out.push(b'\r'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    out.push(u8::from_str_radix(&hex, 16).unwrap());
                }
                Some('u') => {
                    assert_eq!(chars.next(), Some('{'));
                    let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    let c = char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap();
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                other => panic!("unexpected escape {other:?}"),
            }
        }
        out
    }

    pub(crate) fn assert_terminal_safe(out: &str) {
        for c in out.chars() {
            assert!(
                !c.is_control() && !is_invisible(c),
                "{c:?} reached the terminal in {out:?}"
            );
        }
    }

    #[test]
    fn printable_text_passes_through() {
        assert_eq!(escaped(b"/etc/passwd"), "/etc/passwd");
        assert_eq!(
            escaped("/tmp/café/日本語 ✓".as_bytes()),
            "/tmp/café/日本語 ✓"
        );
        assert_eq!(escaped(b""), "");
        // Plain runs between escapes, multi-byte characters and invalid
        // bytes are cut exactly at each of them.
        assert_eq!(
            escaped(b"ab\xe2\x80\xaec\xc3\xa9\\d\xffe~"),
            "ab\\u{202e}cé\\\\d\\xffe~"
        );
    }

    #[test]
    fn backslash_is_doubled_so_escapes_are_unambiguous() {
        assert_eq!(escaped(br"C:\x41"), r"C:\\x41");
        assert_eq!(unescape(&escaped(br"C:\x41")), br"C:\x41");
    }

    #[test]
    fn clear_screen_sequence_is_escaped() {
        let out = escaped(b"/tmp/\x1b[2J\x1b[Hinnocent");
        assert_eq!(out, r"/tmp/\x1b[2J\x1b[Hinnocent");
        assert_terminal_safe(&out);
    }

    #[test]
    fn osc_title_and_hyperlink_sequences_are_escaped() {
        let out = escaped(b"\x1b]0;pwned\x07\x1b]8;;http://evil\x1b\\x\x1b]8;;\x1b\\");
        assert_eq!(
            out,
            r"\x1b]0;pwned\x07\x1b]8;;http://evil\x1b\\x\x1b]8;;\x1b\\"
        );
        assert_terminal_safe(&out);
    }

    #[test]
    fn newlines_and_carriage_returns_cannot_forge_lines() {
        let out = escaped(b"a\nfake row\rover\tb\0c\x7f");
        assert_eq!(out, r"a\nfake row\rover\tb\x00c\x7f");
        assert_terminal_safe(&out);
    }

    #[test]
    fn eight_bit_csi_byte_and_c1_character_are_escaped_differently() {
        // 0x9b alone is not UTF-8: a raw byte. U+009B is the C1 character.
        assert_eq!(escaped(b"a\x9b2Jb"), r"a\x9b2Jb");
        assert_eq!(escaped("a\u{9b}2Jb".as_bytes()), r"a\u{9b}2Jb");
        assert_eq!(escaped("\u{85}".as_bytes()), r"\u{85}");
    }

    #[test]
    fn invalid_utf8_bytes_are_escaped_one_by_one() {
        assert_eq!(escaped(b"\xff\xfe/ok/\xe2\x82"), r"\xff\xfe/ok/\xe2\x82");
        assert_eq!(escaped(b"\xc3\xa9\xc3"), r"é\xc3");
    }

    #[test]
    fn bidi_override_cannot_reverse_a_name() {
        // "invoice\u{202e}fdp.exe" shows as "invoiceexe.pdf" in a terminal.
        let out = escaped("invoice\u{202e}fdp.exe".as_bytes());
        assert_eq!(out, r"invoice\u{202e}fdp.exe");
        assert_eq!(
            escaped("\u{2066}x\u{2069}".as_bytes()),
            r"\u{2066}x\u{2069}"
        );
        assert_eq!(
            escaped("a\u{200b}b\u{feff}".as_bytes()),
            r"a\u{200b}b\u{feff}"
        );
        assert_eq!(escaped("\u{e0041}".as_bytes()), r"\u{e0041}");
    }

    #[test]
    fn escaping_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        let out = escaped(&all);
        assert_terminal_safe(&out);
        assert_eq!(unescape(&out), all);

        let mixed = "\\é\u{9b}\u{202e}日\n".as_bytes().iter().copied();
        let mixed: Vec<u8> = mixed.chain([0xff, b'x', 0xc3]).collect();
        assert_eq!(unescape(&escaped(&mixed)), mixed);
    }

    #[test]
    fn text_that_fits_is_written_whole() {
        assert_eq!(fit(b"abc", 3), ("abc".to_string(), 3));
        assert_eq!(fit(b"abc", 10), ("abc".to_string(), 3));
        assert_eq!(fit(b"", 4), (String::new(), 0));
        assert_eq!(fit(b"a\nb", 4), (r"a\nb".to_string(), 4));
    }

    #[test]
    fn text_that_does_not_fit_ends_with_an_ellipsis() {
        assert_eq!(fit(b"abcdef", 4), ("abc…".to_string(), 4));
        assert_eq!(fit("日本語です".as_bytes(), 3), ("日本…".to_string(), 3));
        assert_eq!(fit(b"abcdef", 1), ("…".to_string(), 1));
        assert_eq!(fit(b"abcdef", 0), (String::new(), 0));
    }

    #[test]
    fn truncation_never_splits_an_escape() {
        // "ab" + "\x1b" would be 6 columns; only "ab" and the … fit in 5.
        assert_eq!(fit(b"ab\x1bcd", 5), ("ab…".to_string(), 3));
        assert_eq!(fit(b"ab\x1bcd", 6), ("ab…".to_string(), 3));
        assert_eq!(fit(b"ab\x1bcd", 7), (r"ab\x1b…".to_string(), 7));
        assert_eq!(fit(b"\xff\xff", 5), (r"\xff…".to_string(), 5));
        assert_eq!(fit(b"a\x1b", 5), (r"a\x1b".to_string(), 5));
        assert_eq!(fit(b"a\x1bb", 5), ("a…".to_string(), 2));
    }

    #[test]
    fn truncated_text_is_still_terminal_safe() {
        for width in 0..40 {
            let (out, cols) = fit(b"\x1b]0;title\x07\x1b[2J\n\xff\xfeend", width);
            assert!(cols <= width, "{cols} > {width} for {out:?}");
            assert_eq!(out.chars().count(), cols);
            assert_terminal_safe(&out);
        }
    }
}
