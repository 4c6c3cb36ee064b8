//! Message search: what a user types in the queue's filter box, read as a query over the
//! cached messages (pure: no I/O; the store runs [`SearchQuery::fts`]).
//!
//! The syntax is the part of Mattermost's own search syntax that applies to a message cache:
//! - `deploy staging`: messages with both words (any order, any case, accents ignored);
//! - `deploy*`: words starting with "deploy";
//! - `"rolled back"`: these words together, in this order;
//! - `-staging`, `-"rolled back"`: messages with it are left out;
//! - `from:bob` (or `from:@bob`): messages by that person; several `from:` = any of them;
//! - `in:town-square` (or `in:~town-square`): messages in that channel (its name, as in its
//!   address); several `in:` = any of them.
//!
//! Every word reaches SQLite's FTS5 inside double quotes (quotes doubled), so no FTS5 operator,
//! column filter or syntax error can come from what was typed.

use std::fmt::Write as _;

/// Words, phrases, `from:` people and `in:` channels taken from one query (the rest is
/// ignored).
pub const MAX_TERMS: usize = 16;

/// One thing to find: a run of words (one word, or a quoted phrase); `prefix` = the last word
/// may continue (`word*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub words: Vec<String>,
    pub prefix: bool,
}

/// A parsed query. Empty ([`SearchQuery::is_empty`]) when nothing in it can select messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Each must appear.
    pub include: Vec<Term>,
    /// None may appear.
    pub exclude: Vec<Term>,
    /// Authors' usernames (lowercase, without `@`): the message is by one of them.
    pub from: Vec<String>,
    /// Channel names (lowercase, without `~`): the message is in one of them.
    pub channels: Vec<String>,
}

impl SearchQuery {
    /// Reads what the user typed. Never fails: what cannot be a term is skipped.
    #[must_use]
    pub fn parse(input: &str) -> Self {
        let mut q = Self::default();
        let mut rest = input;
        let mut taken = 0;
        while taken < MAX_TERMS {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let negated = rest.starts_with('-') && rest.len() > 1;
            if negated {
                rest = &rest[1..];
            }
            // A token: a quoted phrase (up to the closing quote, or to the end), or a run of
            // non-space characters.
            let (raw, quoted, after) = if let Some(body) = rest.strip_prefix('"') {
                match body.find('"') {
                    Some(end) => (&body[..end], true, &body[end + 1..]),
                    None => (body, true, ""),
                }
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], false, &rest[end..])
            };
            rest = after;
            let mut prefix = false;
            let mut raw = raw;
            if quoted {
                // `"rolled ba"*`: the phrase's last word may continue.
                if let Some(r) = rest.strip_prefix('*') {
                    rest = r;
                    prefix = true;
                }
            } else if let Some(who) = strip_prefix_ci(raw, "from:").filter(|_| !negated) {
                let who = who.trim_start_matches('@').to_lowercase();
                if is_username(&who) && !q.from.contains(&who) {
                    q.from.push(who);
                    taken += 1;
                }
                continue;
            } else if let Some(ch) = strip_prefix_ci(raw, "in:").filter(|_| !negated) {
                let ch = ch.trim_start_matches('~').to_lowercase();
                if is_channel_name(&ch) && !q.channels.contains(&ch) {
                    q.channels.push(ch);
                    taken += 1;
                }
                continue;
            } else if let Some(r) = raw.strip_suffix('*') {
                raw = r.trim_end_matches('*');
                prefix = true;
            }
            let words = words(raw);
            if words.is_empty() {
                continue;
            }
            let term = Term { words, prefix };
            if negated {
                q.exclude.push(term);
            } else {
                q.include.push(term);
            }
            taken += 1;
        }
        q
    }

    /// Nothing to search for: no word, author or channel (exclusions alone select nothing).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.from.is_empty() && self.channels.is_empty()
    }

    /// The FTS5 `MATCH` expression, or `None` when the query has no word to find (then only
    /// `from:` selects). Every word is a quoted string.
    #[must_use]
    pub fn fts(&self) -> Option<String> {
        if self.include.is_empty() {
            return None;
        }
        let mut out = String::from("(");
        for (i, t) in self.include.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            push_term(&mut out, t);
        }
        out.push(')');
        for t in &self.exclude {
            out.push_str(" NOT ");
            push_term(&mut out, t);
        }
        Some(out)
    }

    /// Where in `message` the first word to find starts (byte offset, on a char boundary), for
    /// showing the part of a long message that matched. Case-insensitive; accents count here
    /// (FTS5 ignores them), so a match found only without accents gives `None`.
    #[must_use]
    pub fn first_match(&self, message: &str) -> Option<usize> {
        let folded: Vec<(usize, char)> = message
            .char_indices()
            .flat_map(|(at, c)| c.to_lowercase().map(move |l| (at, l)))
            .collect();
        self.include
            .iter()
            .filter_map(|t| t.words.first())
            .filter_map(|w| {
                let needle: Vec<char> = w.chars().collect();
                folded
                    .windows(needle.len().max(1))
                    .position(|win| win.iter().map(|(_, c)| *c).eq(needle.iter().copied()))
                    .map(|i| folded[i].0)
            })
            .min()
    }
}

impl SearchQuery {
    /// Where the words to find stand in `text` (byte ranges on char boundaries, in order, not
    /// overlapping), for marking them: case-insensitive, at the start of a word, and ending
    /// with the word unless the term is a prefix (`word*`).
    #[must_use]
    pub fn highlights(&self, text: &str) -> Vec<(usize, usize)> {
        let folded: Vec<(usize, char)> = text
            .char_indices()
            .flat_map(|(at, c)| c.to_lowercase().map(move |l| (at, l)))
            .collect();
        let at = |i: usize| folded.get(i).map_or(text.len(), |(b, _)| *b);
        let is_word = |i: usize| folded.get(i).is_some_and(|(_, c)| c.is_alphanumeric());
        let mut out = Vec::new();
        for t in &self.include {
            for (n, w) in t.words.iter().enumerate() {
                let prefix = t.prefix && n + 1 == t.words.len();
                let needle: Vec<char> = w.chars().collect();
                let mut i = 0;
                while i + needle.len() <= folded.len() {
                    let end = i + needle.len();
                    let hit = !needle.is_empty()
                        && (i == 0 || !is_word(i - 1))
                        && (prefix || !is_word(end))
                        && folded[i..end]
                            .iter()
                            .map(|(_, c)| *c)
                            .eq(needle.iter().copied());
                    if hit && at(i) < at(end) {
                        // A prefix marks the whole word it starts.
                        let mut end = end;
                        while prefix && is_word(end) {
                            end += 1;
                        }
                        out.push((at(i), at(end)));
                        i = end;
                    } else {
                        i += 1;
                    }
                }
            }
        }
        out.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(out.len());
        for (s, e) in out {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }
}

/// `message` from a little before its first match (at a word boundary, with "…"), so that a
/// snippet cut after a fixed length still shows the match. The whole message when the match
/// is near its start or not found.
#[must_use]
pub fn excerpt(message: &str, query: &SearchQuery) -> String {
    const LEAD_CHARS: usize = 40;
    let Some(at) = query.first_match(message) else {
        return message.to_owned();
    };
    let before = &message[..at];
    if before.chars().count() <= LEAD_CHARS {
        return message.to_owned();
    }
    // Start LEAD_CHARS before the match, moved forward to the next word.
    let start = before
        .char_indices()
        .rev()
        .nth(LEAD_CHARS - 1)
        .map_or(0, |(i, _)| i);
    let from_word = message[start..at]
        .find(char::is_whitespace)
        .map_or(start, |i| start + i);
    format!("…{}", message[from_word..].trim_start())
}

fn push_term(out: &mut String, t: &Term) {
    // One quoted string per word: FTS5 reads `"a" + "b"` as the phrase "a b".
    for (i, w) in t.words.iter().enumerate() {
        if i > 0 {
            out.push_str(" + ");
        }
        let _ = write!(out, "\"{}\"", w.replace('"', "\"\""));
    }
    if t.prefix {
        out.push_str(" *");
    }
}

/// The words of `raw` as FTS5's `unicode61` tokenizer splits them (letters and digits;
/// everything else separates), lowercased.
fn words(raw: &str) -> Vec<String> {
    raw.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Mattermost channel names: 1–64 of `a-z 0-9 - _` (lowercase; `__` joins a DM's two ids).
fn is_channel_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
}

/// Mattermost usernames: 1–64 of `a-z 0-9 . - _` (lowercase).
fn is_username(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn term(words: &[&str], prefix: bool) -> Term {
        Term {
            words: words.iter().map(|w| (*w).to_owned()).collect(),
            prefix,
        }
    }

    #[test]
    fn words_phrases_prefixes_exclusions_and_authors() {
        let q = SearchQuery::parse(
            r#"Deploy "rolled  BACK" stag* -canary -"dry run" from:@Bob FROM:carol.x"#,
        );
        assert_eq!(
            q.include,
            vec![
                term(&["deploy"], false),
                term(&["rolled", "back"], false),
                term(&["stag"], true),
            ]
        );
        assert_eq!(
            q.exclude,
            vec![term(&["canary"], false), term(&["dry", "run"], false)]
        );
        assert_eq!(q.from, vec!["bob".to_owned(), "carol.x".to_owned()]);
        assert_eq!(
            q.fts().unwrap(),
            r#"("deploy" "rolled" + "back" "stag" *) NOT "canary" NOT "dry" + "run""#
        );
    }

    #[test]
    fn punctuation_splits_words_as_the_index_does() {
        let q = SearchQuery::parse("don't v1.2 ünïcode");
        assert_eq!(
            q.include,
            vec![
                term(&["don", "t"], false),
                term(&["v1", "2"], false),
                term(&["ünïcode"], false)
            ]
        );
    }

    #[test]
    fn what_selects_nothing_is_empty() {
        for s in [
            "",
            "   ",
            "-x",
            "\"",
            "***",
            "-\"a b\"",
            "from:",
            "from:in/valid!",
            "(",
            "¿?",
        ] {
            let q = SearchQuery::parse(s);
            assert!(q.is_empty(), "{s:?} → {q:?}");
        }
        assert!(!SearchQuery::parse("from:bob").is_empty());
        let q = SearchQuery::parse("in:~Town-Square in:off-topic in:town-square in:no/such deploy");
        assert_eq!(q.channels, ["town-square", "off-topic"]);
        assert_eq!(q.include, vec![term(&["deploy"], false)]);
        assert!(!SearchQuery::parse("in:town-square").is_empty());
        assert!(SearchQuery::parse("-in:town-square").channels.is_empty());
        assert_eq!(SearchQuery::parse("from:bob").fts(), None);
        // An unclosed quote runs to the end.
        assert_eq!(
            SearchQuery::parse("\"half open").include,
            vec![term(&["half", "open"], false)]
        );
        // A lone "-" is a word separator, not an exclusion of nothing.
        assert!(SearchQuery::parse("a - b").exclude.is_empty());
    }

    #[test]
    fn at_most_sixteen_terms() {
        let q = SearchQuery::parse(&"w ".repeat(100));
        assert_eq!(q.include.len(), MAX_TERMS);
    }

    #[test]
    fn the_excerpt_starts_shortly_before_the_match() {
        let q = SearchQuery::parse("needle");
        let long = format!("{} the Needle is here", "word ".repeat(30));
        let e = excerpt(&long, &q);
        assert!(e.starts_with('…'), "{e}");
        assert!(e.contains("the Needle is here"), "{e}");
        assert!(e.chars().count() < 70, "{e}");
        assert_eq!(excerpt("a needle", &q), "a needle");
        assert_eq!(excerpt("no match at all", &q), "no match at all");
        // Case folding that changes lengths does not break the offsets.
        let odd = format!("{}İİ needle", "ẞ ".repeat(40));
        assert!(excerpt(&odd, &q).ends_with("İİ needle"));
    }

    #[test]
    fn highlights_mark_whole_words_and_prefixes_in_any_case() {
        let q = SearchQuery::parse("deploy* \"rolled back\" api");
        let text = "Bob: Deployment ROLLED back; redeploy the API, not rapid";
        let marked: Vec<&str> = q
            .highlights(text)
            .iter()
            .map(|&(s, e)| &text[s..e])
            .collect();
        assert_eq!(marked, ["Deployment", "ROLLED", "back", "API"]);
        assert!(SearchQuery::parse("from:bob").highlights(text).is_empty());
        // Case folding that changes lengths keeps the ranges on char boundaries.
        let odd = "İstanbul ẞ deploy";
        let marked: Vec<&str> = q.highlights(odd).iter().map(|&(s, e)| &odd[s..e]).collect();
        assert_eq!(marked, ["deploy"]);
    }

    proptest! {
        /// Whatever the text and query: ranges are in order, apart, on char boundaries.
        #[test]
        fn highlights_are_valid_ranges(q in "\\PC{0,40}", text in "\\PC{0,200}") {
            let ranges = SearchQuery::parse(&q).highlights(&text);
            let mut last = 0;
            for (s, e) in ranges {
                prop_assert!(s >= last && s < e && e <= text.len());
                prop_assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
                last = e;
            }
        }

        /// Whatever is typed: no panic, and every word reaches FTS5 quoted (outside the quotes
        /// only the expression's own parentheses, `+`, `*` and ` NOT `).
        #[test]
        fn any_input_gives_a_quoted_expression(s in "\\PC{0,120}") {
            let q = SearchQuery::parse(&s);
            let _ = excerpt(&s, &q);
            if let Some(fts) = q.fts() {
                let mut outside = String::new();
                let mut inside = false;
                let mut chars = fts.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '"' {
                        if inside && chars.peek() == Some(&'"') {
                            chars.next();
                            continue;
                        }
                        inside = !inside;
                    } else if !inside {
                        outside.push(c);
                    }
                }
                prop_assert!(!inside);
                let rest = outside.replace("NOT", "");
                prop_assert!(rest.chars().all(|c| matches!(c, '(' | ')' | '+' | '*' | ' ')), "{fts}");
            }
        }
    }
}
