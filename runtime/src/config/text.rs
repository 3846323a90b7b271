//! Config text before the Lua reader sees it: files are read only when
//! they are regular files of a bounded size (an `Include` of `/dev/zero` or
//! a FIFO must not hang or exhaust memory), bytes that are not UTF-8 are
//! read leniently as Prosody does, and nesting is bounded so the recursive
//! parser can never exhaust a thread's stack (a reload would otherwise
//! crash the server it was meant to update).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::ConfigError;
use super::source::Location;

/// Largest config file read (Debian's whole example config is 12 KiB).
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Deepest nesting of `{`, `(` and `[` in one file.
pub const MAX_NESTING: usize = 100;
/// Most operators the parser recurses on (`..`, `^`, `not`, unary `-`,
/// `#`, `~`) in one file; each link of a chain is a level of its recursion.
pub const MAX_OPERATORS: usize = 1000;

/// A config file's text, and a warning when it was not all UTF-8.
#[derive(Debug)]
pub struct ConfigText {
    pub text: String,
    pub warning: Option<String>,
}

/// Reads `path` if it is a regular file no larger than [`MAX_FILE_BYTES`].
pub fn read(path: &Path) -> std::io::Result<ConfigText> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // Opened without blocking (a FIFO would block until a writer came), and
    // checked through the open file, so nothing can be swapped in between.
    let nonblocking = rustix::fs::OFlags::NONBLOCK.bits() as i32;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(nonblocking).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file (a directory, device or FIFO?)"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!("larger than {} MiB", MAX_FILE_BYTES >> 20)));
    }
    Ok(decode(path, bytes))
}

/// UTF-8 text as it is; other bytes (a Latin-1 `é` in a comment, say) are
/// read as U+FFFD, with a warning at the first, as Prosody reads bytes.
fn decode(path: &Path, bytes: Vec<u8>) -> ConfigText {
    match String::from_utf8(bytes) {
        Ok(text) => ConfigText { text, warning: None },
        Err(error) => {
            let bytes = error.into_bytes();
            let valid = std::str::from_utf8(&bytes).map_or_else(|e| e.valid_up_to(), |_| bytes.len());
            let before = String::from_utf8_lossy(&bytes[..valid]);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let warning = format!(
                "{}:{line}:{column}: the file is not UTF-8 text; bytes that are not are read as U+FFFD (save it as UTF-8)",
                path.display()
            );
            ConfigText { text: String::from_utf8_lossy(&bytes).into_owned(), warning: Some(warning) }
        }
    }
}

/// Refuses text nested deeper than [`MAX_NESTING`] (brackets, and blocks:
/// `do`, `if`, `function`, `repeat` against `end`, `until`) or with more
/// than [`MAX_OPERATORS`] operators the parser recurses on, at the place
/// where the limit is passed. A lexical scan: strings and comments are
/// skipped, so what they hold does not count.
pub fn check_bounds(file: &Arc<Path>, text: &str) -> Result<(), ConfigError> {
    let mut scan = Scan { chars: text.chars().collect(), at: 0, line: 1, column: 1 };
    let (mut depth, mut operators) = (0usize, 0usize);
    let too_deep = format!("tables, brackets and blocks nested more than {MAX_NESTING} deep");
    let too_many = format!("more than {MAX_OPERATORS} operators (`..`, `^`, `not`, `-`, `#`, `~`) in one file");
    while let Some(c) = scan.peek(0) {
        let (opens, operator, width) = match c {
            '-' if scan.peek(1) == Some('-') => {
                scan.advance(2);
                match scan.long_bracket_level() {
                    Some(level) => scan.skip_long_bracket(level),
                    None => scan.skip_line(),
                }
                continue;
            }
            '"' | '\'' => {
                scan.skip_quoted(c);
                continue;
            }
            '[' if scan.long_bracket_level().is_some() => {
                let level = scan.long_bracket_level().unwrap_or_default();
                scan.skip_long_bracket(level);
                continue;
            }
            '{' | '(' | '[' => (Some(true), false, 1),
            '}' | ')' | ']' => (Some(false), false, 1),
            '.' if scan.peek(1) == Some('.') => (None, scan.peek(2) != Some('.'), 2),
            '^' | '-' | '#' | '~' => (None, true, 1),
            c if c.is_alphabetic() || c == '_' => {
                let word = scan.word();
                let width = word.chars().count();
                match word.as_str() {
                    "do" | "if" | "function" | "repeat" => (Some(true), false, width),
                    "end" | "until" => (Some(false), false, width),
                    "not" => (None, true, width),
                    _ => (None, false, width),
                }
            }
            _ => (None, false, 1),
        };
        match opens {
            Some(true) => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(scan.error(file, &too_deep));
                }
            }
            Some(false) => depth = depth.saturating_sub(1),
            None => {}
        }
        if operator {
            operators += 1;
            if operators > MAX_OPERATORS {
                return Err(scan.error(file, &too_many));
            }
        }
        scan.advance(width);
    }
    Ok(())
}

/// A cursor over config text that knows its line and column.
struct Scan {
    chars: Vec<char>,
    at: usize,
    line: usize,
    column: usize,
}

impl Scan {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn advance(&mut self, count: usize) {
        for _ in 0..count {
            match self.peek(0) {
                Some('\n') => {
                    self.line += 1;
                    self.column = 1;
                }
                Some(_) => self.column += 1,
                None => return,
            }
            self.at += 1;
        }
    }

    fn error(&self, file: &Arc<Path>, message: &str) -> ConfigError {
        ConfigError::Invalid { at: Location::new(file, self.line, self.column), message: message.into() }
    }

    /// `[[` is level 0, `[==[` level 2; `None` if no long bracket opens here.
    fn long_bracket_level(&self) -> Option<usize> {
        if self.peek(0) != Some('[') {
            return None;
        }
        let mut level = 0;
        while self.peek(1 + level) == Some('=') {
            level += 1;
        }
        (self.peek(1 + level) == Some('[')).then_some(level)
    }

    fn skip_long_bracket(&mut self, level: usize) {
        self.advance(level + 2);
        while let Some(c) = self.peek(0) {
            if c == ']' && (1..=level).all(|i| self.peek(i) == Some('=')) && self.peek(level + 1) == Some(']') {
                self.advance(level + 2);
                return;
            }
            self.advance(1);
        }
    }

    /// The identifier or keyword starting here.
    fn word(&self) -> String {
        self.chars[self.at..].iter().take_while(|c| c.is_alphanumeric() || **c == '_').collect()
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek(0) {
            if c == '\n' {
                return;
            }
            self.advance(1);
        }
    }

    fn skip_quoted(&mut self, quote: char) {
        self.advance(1);
        while let Some(c) = self.peek(0) {
            match c {
                '\\' => self.advance(2),
                '\n' => return,
                _ if c == quote => return self.advance(1),
                _ => self.advance(1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), String> {
        check_bounds(&Arc::from(Path::new("t.lua")), text).map_err(|e| e.to_string())
    }

    #[test]
    fn deep_nesting_and_long_chains_are_located_errors() {
        let deep = format!("x = {}1{}", "{".repeat(300), "}".repeat(300));
        assert_eq!(check(&deep), Err("t.lua:1:105: tables, brackets and blocks nested more than 100 deep".into()));
        let blocks = format!("{}x = 1{}", "do ".repeat(150), " end".repeat(150));
        assert!(check(&blocks).unwrap_err().contains("nested more than 100 deep"));
        let functions = format!("x = {} 1 {}", "function() return ".repeat(150), " end".repeat(150));
        assert!(check(&functions).unwrap_err().contains("nested more than 100 deep"));
        for chain in [
            format!("x = \"a\"{}", " .. \"a\"".repeat(2000)),
            format!("x = {}true", "not ".repeat(2000)),
            format!("x = {}1", "- ".repeat(2000)),
            format!("x = 2{}", " ^ 2".repeat(2000)),
        ] {
            assert!(check(&chain).unwrap_err().contains("more than 1000 operators"), "{chain:.20}");
        }
        let fine = format!(
            "x = {}1{}\ny = \"a\"{}\nnotice = -1\nandroid = {{ ['not'] = \"not\" }}\n",
            "{".repeat(50),
            "}".repeat(50),
            " .. 'b'".repeat(500)
        );
        assert_eq!(check(&fine), Ok(()));
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let text = format!(
            "-- {}\n--[==[ {} ]==]\nx = \"{}\" .. '\\'{}' .. [[{}]]\n",
            "{".repeat(500),
            "(".repeat(500),
            "[".repeat(500),
            "{".repeat(500),
            "{".repeat(500)
        );
        assert_eq!(check(&text), Ok(()));
        assert_eq!(check("x = { ... }"), Ok(()), "`...` is no concatenation");
    }

    #[test]
    fn other_bytes_than_utf8_are_read_with_a_located_warning() {
        let text = decode(Path::new("t.lua"), b"a = 1\n-- caf\xe9\nb = 2\n".to_vec());
        assert_eq!(text.text, "a = 1\n-- caf\u{fffd}\nb = 2\n");
        assert_eq!(
            text.warning.as_deref(),
            Some("t.lua:2:7: the file is not UTF-8 text; bytes that are not are read as U+FFFD (save it as UTF-8)")
        );
    }

    #[test]
    fn only_regular_files_of_a_bounded_size_are_read() {
        assert!(read(Path::new("/dev/zero")).unwrap_err().to_string().contains("not a regular file"));
        assert!(read(Path::new("/")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.lua");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        assert!(read(&fifo).unwrap_err().to_string().contains("not a regular file"), "refused, without blocking");
        let big = dir.path().join("big.lua");
        std::fs::write(&big, vec![b'-'; (MAX_FILE_BYTES + 1) as usize]).unwrap();
        assert!(read(&big).unwrap_err().to_string().contains("larger than"));
    }
}
