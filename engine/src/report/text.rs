//! Text a target wrote, made safe to keep and show ([`target_text`]): the one edge every
//! word of a target passes before it is kept as evidence (a refusal's body, its
//! `Retry-After` and rate-limit headers, a close frame's reason), whether it comes from
//! this process's connections, an agent's tick or an imported run. Re-exported from
//! [`crate::report`].
//!
//! What it does: every control character (C0 — tab and line feed included, evidence is
//! one line —, DEL, C1) becomes a visible stand-in (the Unicode control pictures `␛`,
//! `␊`, `␡`; `�` for C1), and so does every character that reorders or breaks lines when
//! displayed (bidi overrides and isolates, marks, line and paragraph separators); the
//! text is cut to a byte bound on a character boundary and trimmed. So the API, pages,
//! CSV, the CLI and logs show what the target sent, and never let it drive a terminal
//! or rearrange a page.

use std::borrow::Cow;

/// A character that must not be kept raw.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}'
                | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Its visible stand-in.
fn stand_in(c: char) -> char {
    match c as u32 {
        n @ 0x00..=0x1f => char::from_u32(0x2400 + n).unwrap_or('\u{fffd}'),
        0x7f => '\u{2421}',
        _ => '\u{fffd}',
    }
}

/// `text` with control and reordering characters replaced by visible stand-ins, cut to
/// at most `max` bytes (on a character boundary) and trimmed.
pub fn target_text(text: &str, max: usize) -> Cow<'_, str> {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text[..end].trim();
    if !cut.chars().any(unsafe_char) {
        return Cow::Borrowed(cut);
    }
    let mut out = String::with_capacity(cut.len() + 8);
    for c in cut.chars() {
        out.push(if unsafe_char(c) { stand_in(c) } else { c });
    }
    // A stand-in takes up to three bytes where the control took one.
    let mut end = out.len().min(max);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_become_visible_and_nothing_raw_is_left() {
        let said =
            "busy \x1b[31mRED\x1b[0m \x1b]0;owned\x07\r\nnext\u{9b}31m \u{202e}evil\tend\x7f";
        let kept = target_text(said, 1000);
        assert!(!kept.chars().any(unsafe_char), "{kept:?}");
        assert!(kept.contains("␛[31mRED␛[0m"), "{kept}");
        assert!(kept.contains("␇␍␊next"), "{kept}");
        assert!(kept.contains("\u{fffd}31m \u{fffd}evil␉end␡"), "{kept}");
    }

    #[test]
    fn plain_text_is_kept_as_it_is_and_bounded() {
        assert!(matches!(
            target_text("too many connections", 123),
            Cow::Borrowed(_)
        ));
        assert_eq!(target_text("  spaced  ", 123), "spaced");
        let long = "é".repeat(200);
        let cut = target_text(&long, 123);
        assert!(cut.len() <= 123 && cut.chars().all(|c| c == 'é'));
        let escapes = "\x1b".repeat(100);
        assert!(target_text(&escapes, 123).len() <= 123);
    }
}
