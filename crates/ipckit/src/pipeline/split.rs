//! The word splitter: one pipeline stage, written with POSIX shell quoting, to an argv.
//!
//! It is hand-written because it must know, for every character, whether it was quoted: an
//! unquoted `*` is a glob, a quoted one is a star. Anything a shell would expand, redirect or
//! treat as syntax is refused rather than passed through, so that a stage means the same here
//! as in `bash -c`, or is an error.
//!
//! # References
//!
//! POSIX.1-2017 XCU 2.2 "Quoting", 2.3 "Token Recognition", 2.6 "Word Expansions".

use std::fmt;

/// Why a stage could not be split into words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SplitErrorKind {
    /// The stage has no words (empty, or only whitespace).
    Empty,
    /// A `'` with no closing `'`.
    UnbalancedSingleQuote,
    /// A `"` with no closing `"`.
    UnbalancedDoubleQuote,
    /// A `\` at the very end, escaping nothing.
    TrailingBackslash,
    /// A character a shell would give a meaning we do not implement: a glob, an expansion, a
    /// redirection or control operator, a subshell, a comment, a tilde, a keyword, an
    /// assignment.
    Refused {
        /// The character (for a keyword or an assignment, its first character).
        ch: char,
        /// What a shell would make of it, e.g. "a glob (pathname expansion)".
        what: &'static str,
    },
}

/// A stage that is not a plain command: what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitError {
    kind: SplitErrorKind,
    position: usize,
}

impl SplitError {
    /// What is wrong.
    pub fn kind(&self) -> SplitErrorKind {
        self.kind
    }

    /// Where: the 1-based column (in characters) of the offending character, or of the
    /// opening quote for an unbalanced one; 0 for [`SplitErrorKind::Empty`].
    pub fn position(&self) -> usize {
        self.position
    }
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.position;
        match self.kind {
            SplitErrorKind::Empty => f.write_str("empty stage: there is no command to run"),
            SplitErrorKind::UnbalancedSingleQuote => {
                write!(f, "unbalanced quote: the ' at column {at} is never closed")
            }
            SplitErrorKind::UnbalancedDoubleQuote => {
                write!(f, "unbalanced quote: the \" at column {at} is never closed")
            }
            SplitErrorKind::TrailingBackslash => {
                write!(f, "trailing backslash at column {at} escapes nothing")
            }
            SplitErrorKind::Refused { ch, what } => write!(
                f,
                "'{}' at column {at} would be {what} in a shell, which ipckit does not run; \
                 quote it to mean the character itself",
                ch.escape_debug()
            ),
        }
    }
}

impl std::error::Error for SplitError {}

/// Splits one stage into words with POSIX shell quoting, without running a shell.
///
/// - Unquoted spaces and tabs separate words.
/// - `'...'` is literal, every character of it.
/// - `"..."` is literal except that `\` escapes `$`, `` ` ``, `"`, `\` and newline (a
///   backslash before anything else stays); `$` and `` ` `` in it are refused (a shell
///   expands them there too).
/// - `\c` outside quotes is the character `c`; `\` before a newline joins the lines.
///
/// # Errors
///
/// A [`SplitError`] naming the character and its column for what a shell would treat
/// specially: unquoted `* ? [` (globs) and `{` (brace expansion), `$` and `` ` `` outside
/// single quotes (expansions), unquoted `< > | & ;` and newline (redirections and command
/// separators),
/// `( )` (subshells), `~` at the start of a word (tilde expansion), `#` at the start of a word
/// (a comment); a shell keyword (`if`, `!`, `time`, ...) or a variable assignment
/// (`NAME=value`) as the first word; an unbalanced quote, a trailing backslash, and a stage
/// with no words at all.
///
/// # Examples
///
/// ```
/// use ipckit::pipeline::split;
/// assert_eq!(split(r#"grep -e 'a b' "c\"d" e\ f"#).unwrap(), ["grep", "-e", "a b", "c\"d", "e f"]);
/// assert!(split("ls *.rs").is_err()); // a glob: a shell's job, not ours
/// ```
pub fn split(stage: &str) -> Result<Vec<String>, SplitError> {
    let mut words: Vec<String> = Vec::new();
    // `None` until something (even an empty quoted string) starts a word.
    let mut word: Option<Word> = None;
    let mut chars = stage.chars().zip(1..).peekable();
    let refuse = |ch, col, what| {
        Err(SplitError {
            kind: SplitErrorKind::Refused { ch, what },
            position: col,
        })
    };
    while let Some((c, col)) = chars.next() {
        if matches!(c, ' ' | '\t') {
            if let Some(w) = word.take() {
                w.finish(&mut words)?;
            }
            continue;
        }
        let starting = word.is_none();
        match c {
            '\\' => match chars.next() {
                None => {
                    return Err(SplitError {
                        kind: SplitErrorKind::TrailingBackslash,
                        position: col,
                    })
                }
                // A line continuation: both characters vanish, and no word starts.
                Some(('\n', _)) => continue,
                Some((e, _)) => Word::get(&mut word, col).quoted().push(e),
            },
            '\'' => {
                let w = Word::get(&mut word, col).quoted();
                loop {
                    match chars.next() {
                        None => {
                            return Err(SplitError {
                                kind: SplitErrorKind::UnbalancedSingleQuote,
                                position: col,
                            })
                        }
                        Some(('\'', _)) => break,
                        Some((q, _)) => w.push(q),
                    }
                }
            }
            '"' => {
                let w = Word::get(&mut word, col).quoted();
                loop {
                    match chars.next() {
                        None => {
                            return Err(SplitError {
                                kind: SplitErrorKind::UnbalancedDoubleQuote,
                                position: col,
                            })
                        }
                        Some(('"', _)) => break,
                        Some(('\\', _)) => match chars.peek() {
                            Some(&(e @ ('$' | '`' | '"' | '\\'), _)) => {
                                chars.next();
                                w.push(e);
                            }
                            Some(&('\n', _)) => {
                                chars.next();
                            }
                            // Before anything else the backslash is itself; at the end, the
                            // missing closing quote is the error, reported at the quote.
                            _ => w.push('\\'),
                        },
                        Some(('$', qcol)) => return refuse('$', qcol, EXPANSION),
                        Some(('`', qcol)) => return refuse('`', qcol, COMMAND_SUBST),
                        Some((q, _)) => w.push(q),
                    }
                }
            }
            '$' => return refuse(c, col, EXPANSION),
            '`' => return refuse(c, col, COMMAND_SUBST),
            '*' | '?' | '[' => return refuse(c, col, "a glob (pathname expansion)"),
            '{' => return refuse(c, col, "brace expansion"),
            '<' | '>' => return refuse(c, col, "a redirection"),
            '|' | '&' | ';' => return refuse(c, col, "a control operator"),
            '(' | ')' => return refuse(c, col, "a subshell"),
            '\n' => return refuse(c, col, "a command separator"),
            '~' if starting => return refuse(c, col, "tilde expansion"),
            '~' if word.as_ref().is_some_and(Word::tilde_follows_assignment) => {
                return refuse(c, col, "tilde expansion (after = or : in NAME=...)")
            }
            '#' if starting => return refuse(c, col, "the start of a comment"),
            _ => Word::get(&mut word, col).push_plain(c),
        }
    }
    if let Some(w) = word.take() {
        w.finish(&mut words)?;
    }
    if words.is_empty() {
        return Err(SplitError {
            kind: SplitErrorKind::Empty,
            position: 0,
        });
    }
    Ok(words)
}

const EXPANSION: &str = "a parameter expansion or arithmetic";
const COMMAND_SUBST: &str = "a command substitution";

/// Words a shell reads as reserved words in command position (bash(1), "RESERVED WORDS").
const KEYWORDS: &[&str] = &[
    "!", "case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for", "function", "if",
    "in", "select", "then", "until", "while", "}", "time", "[[", "]]",
];

/// True if `plain` starts with `NAME=`, NAME a shell variable name.
fn is_assignment(plain: &str) -> bool {
    let Some((name, _)) = plain.split_once('=') else {
        return false;
    };
    let mut cs = name.chars();
    cs.next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && cs.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// A word being read.
struct Word {
    text: String,
    /// Column of its first character.
    col: usize,
    /// Length of `text` when the first quoted or escaped character was added: the part before
    /// it is what a shell would see unquoted when it looks for keywords and assignments.
    unquoted_len: Option<usize>,
    /// The last character added, if it was unquoted.
    last_plain: Option<char>,
}

impl Word {
    fn get(word: &mut Option<Word>, col: usize) -> &mut Word {
        word.get_or_insert_with(|| Word {
            text: String::new(),
            col,
            unquoted_len: None,
            last_plain: None,
        })
    }

    /// Adds an unquoted character.
    fn push_plain(&mut self, c: char) {
        self.text.push(c);
        self.last_plain = Some(c);
    }

    /// Marks what follows as quoted; returns the text to push it onto.
    fn quoted(&mut self) -> &mut String {
        self.unquoted_len.get_or_insert(self.text.len());
        self.last_plain = None;
        &mut self.text
    }

    /// The part of the word before any quoting.
    fn plain(&self) -> &str {
        &self.text[..self.unquoted_len.unwrap_or(self.text.len())]
    }

    /// True if an unquoted `~` here would be expanded: bash expands a tilde right after the
    /// `=` or a `:` of any word that looks like an assignment (`--x=~` does not, `x=~` does,
    /// even as an argument).
    fn tilde_follows_assignment(&self) -> bool {
        matches!(self.last_plain, Some('=' | ':')) && is_assignment(self.plain())
    }

    /// Ends the word; the first word of a stage must not be a keyword or an assignment.
    fn finish(self, words: &mut Vec<String>) -> Result<(), SplitError> {
        if words.is_empty() {
            let plain = self.plain();
            let refused = |what| {
                Err(SplitError {
                    kind: SplitErrorKind::Refused {
                        ch: self.text.chars().next().unwrap_or(' '),
                        what,
                    },
                    position: self.col,
                })
            };
            if self.unquoted_len.is_none() && KEYWORDS.contains(&plain) {
                return refused("a keyword");
            }
            if is_assignment(plain) {
                return refused("the start of a variable assignment");
            }
        }
        words.push(self.text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> Vec<String> {
        split(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// The refused character and its column.
    fn refused(s: &str) -> (char, usize) {
        match split(s) {
            Err(e) => match e.kind() {
                SplitErrorKind::Refused { ch, .. } => (ch, e.position()),
                k => panic!("{s:?}: not refused but {k:?}"),
            },
            Ok(w) => panic!("{s:?} accepted as {w:?}"),
        }
    }

    fn kind(s: &str) -> (SplitErrorKind, usize) {
        let e = split(s).expect_err(s);
        (e.kind(), e.position())
    }

    #[test]
    fn plain_words() {
        assert_eq!(ok("seq 1 100000"), ["seq", "1", "100000"]);
        assert_eq!(ok(" \tgrep  7\t "), ["grep", "7"]);
        assert_eq!(ok("find . ! -name x=y"), ["find", ".", "!", "-name", "x=y"]);
        assert_eq!(ok("echo a#b ]x} %^!"), ["echo", "a#b", "]x}", "%^!"]);
        assert_eq!(ok("echo a~b"), ["echo", "a~b"]);
        // Tildes a shell leaves alone.
        assert_eq!(
            ok("echo --prefix=~/x 'q'=~ 1a=~ x~ a=\\~ a='~'"),
            ["echo", "--prefix=~/x", "q=~", "1a=~", "x~", "a=~", "a=~"]
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(ok("echo 'a b' \"c d\""), ["echo", "a b", "c d"]);
        assert_eq!(ok("echo '' \"\" x''y"), ["echo", "", "", "xy"]);
        assert_eq!(
            ok(r#"echo 'a\b' '$HOME' '*' '"'"#),
            ["echo", r"a\b", "$HOME", "*", "\""]
        );
        assert_eq!(
            ok(r#"echo "a\$b" "\`" "\"" "\\" "\n" "\'""#),
            ["echo", "a$b", "`", "\"", "\\", r"\n", r"\'"]
        );
        assert_eq!(ok("echo \"a\\\nb\""), ["echo", "ab"]);
        assert_eq!(ok("echo \"a\nb\""), ["echo", "a\nb"]);
        assert_eq!(
            ok(r"echo \$HOME \* a\ b \\ \'"),
            ["echo", "$HOME", "*", "a b", "\\", "'"]
        );
        assert_eq!(ok("echo a\\\nb"), ["echo", "ab"]);
        assert_eq!(ok("echo 'it'\\''s'"), ["echo", "it's"]);
        assert_eq!(ok(r"\~ \#x '#' '~'"), ["~", "#x", "#", "~"]);
    }

    #[test]
    fn shell_features_are_refused_where_they_are() {
        assert_eq!(refused("ls *.rs"), ('*', 4));
        assert_eq!(refused("ls a?"), ('?', 5));
        assert_eq!(refused("ls [ab]"), ('[', 4));
        assert_eq!(refused("echo {a,b}"), ('{', 6));
        assert_eq!(refused("echo $HOME"), ('$', 6));
        assert_eq!(refused("echo \"$HOME\""), ('$', 7));
        assert_eq!(refused("echo \"`id`\""), ('`', 7));
        assert_eq!(refused("echo `id`"), ('`', 6));
        assert_eq!(refused("sort <in"), ('<', 6));
        assert_eq!(refused("sort >out"), ('>', 6));
        assert_eq!(refused("sort 2>&1"), ('>', 7));
        assert_eq!(refused("a | b"), ('|', 3));
        assert_eq!(refused("sleep 1 &"), ('&', 9));
        assert_eq!(refused("a; b"), (';', 2));
        assert_eq!(refused("(ls)"), ('(', 1));
        assert_eq!(refused("ls ~/x"), ('~', 4));
        assert_eq!(refused("ls #x"), ('#', 4));
        assert_eq!(refused("echo foo=~"), ('~', 10));
        assert_eq!(refused("echo a=x:~/y"), ('~', 10));
        assert_eq!(refused("echo a\nb"), ('\n', 7));
        assert_eq!(refused("if true"), ('i', 1));
        assert_eq!(refused("  ! grep x"), ('!', 3));
        assert_eq!(refused("time cat"), ('t', 1));
        assert_eq!(refused("LC_ALL=C sort"), ('L', 1));
        assert_eq!(refused("A='x y' env"), ('A', 1));
        // Quoted, they are plain words again.
        assert_eq!(ok("'if' true"), ["if", "true"]);
        assert_eq!(ok("'A=1' env"), ["A=1", "env"]);
        assert_eq!(ok("env A=1"), ["env", "A=1"]);
        // Columns count characters, not bytes.
        assert_eq!(refused("echo é*"), ('*', 7));
    }

    #[test]
    fn malformed_stages() {
        assert_eq!(kind(""), (SplitErrorKind::Empty, 0));
        assert_eq!(kind(" \t "), (SplitErrorKind::Empty, 0));
        assert_eq!(kind("\\\n"), (SplitErrorKind::Empty, 0));
        assert_eq!(
            kind("echo 'abc"),
            (SplitErrorKind::UnbalancedSingleQuote, 6)
        );
        assert_eq!(
            kind("echo \"abc"),
            (SplitErrorKind::UnbalancedDoubleQuote, 6)
        );
        assert_eq!(
            kind("echo \"abc\\"),
            (SplitErrorKind::UnbalancedDoubleQuote, 6)
        );
        assert_eq!(kind("echo abc\\"), (SplitErrorKind::TrailingBackslash, 9));
    }

    #[test]
    fn messages_name_the_character_and_column() {
        let m = split("ls *.rs").unwrap_err().to_string();
        assert!(m.contains("'*' at column 4") && m.contains("glob"), "{m}");
        let m = split("echo 'x").unwrap_err().to_string();
        assert!(m.contains("column 6") && m.contains("never closed"), "{m}");
        let m = split("echo a\nb").unwrap_err().to_string();
        assert!(!m.contains('\n') && m.contains(r"'\n'"), "{m}");
    }

    /// Quotes a word as a careful script would: with single quotes.
    fn single_quoted(w: &str) -> String {
        format!("'{}'", w.replace('\'', r"'\''"))
    }

    /// Quotes a word with double quotes, escaping the four characters that need it.
    fn double_quoted(w: &str) -> String {
        let mut s = String::from("\"");
        for c in w.chars() {
            if matches!(c, '$' | '`' | '"' | '\\') {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
        s
    }

    /// Quotes a word with a backslash before every character (newlines, which a backslash
    /// would join, go in single quotes).
    fn backslashed(w: &str) -> String {
        if w.is_empty() {
            return "''".into();
        }
        w.chars()
            .map(|c| match c {
                '\n' => "'\n'".to_string(),
                c => format!("\\{c}"),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn quoted_words_come_back(words in prop::collection::vec("(?s).{0,20}", 1..6), how in 0..3u8) {
            let quote = [single_quoted, double_quoted, backslashed][how as usize];
            let line: Vec<String> = words.iter().map(|w| quote(w)).collect();
            prop_assert_eq!(split(&line.join(" \t ")).unwrap(), words);
        }

        #[test]
        fn never_panics_and_errors_point_inside(s in "(?s).{0,40}") {
            if let Err(e) = split(&s) {
                prop_assert!(e.position() <= s.chars().count());
                prop_assert!(!e.to_string().contains('\n'));
            }
        }

        #[test]
        fn plain_words_split_on_blanks(words in prop::collection::vec("[a-zA-Z0-9_./:,+-]+", 0..6)) {
            let mut want = vec!["cmd".to_string()];
            want.extend(words.iter().cloned());
            prop_assert_eq!(split(&want.join(" \t")).unwrap(), want);
        }
    }
}
