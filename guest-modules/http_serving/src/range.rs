//! Byte ranges (RFC 9110 §14): parsing `Range`, and laying out a
//! `multipart/byteranges` body.

/// More ranges than this in one request are ignored (the whole file is
/// sent): many tiny or overlapping ranges cost far more than they save.
pub const MAX_RANGES: usize = 16;

/// An inclusive range of byte offsets, within the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    /// Bytes in the range: at least one (`first <= last`).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// What to do with a `Range` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranges {
    /// Not a range request we serve (bad syntax, another unit, too many
    /// ranges): send the whole file with 200.
    Ignore,
    /// No range overlaps the file: 416.
    Unsatisfiable,
    /// 206 with these ranges, sorted and with overlaps merged.
    Serve(Vec<ByteRange>),
}

/// Parses a `Range` header value against a file of `size` bytes.
pub fn parse(header: &str, size: u64) -> Ranges {
    let Some((unit, set)) = header.split_once('=') else { return Ranges::Ignore };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranges::Ignore;
    }
    let specs: Vec<&str> = set.split(',').map(|s| s.trim_matches([' ', '\t'])).filter(|s| !s.is_empty()).collect();
    if specs.is_empty() || specs.len() > MAX_RANGES {
        return Ranges::Ignore;
    }
    let mut ranges = Vec::with_capacity(specs.len());
    let mut any_suffix = false;
    for spec in specs {
        let Some((first, last)) = spec.split_once('-') else { return Ranges::Ignore };
        if first.is_empty() {
            // `-N`: the last N bytes.
            let Some(suffix) = number(last) else { return Ranges::Ignore };
            any_suffix = true;
            if suffix > 0 && size > 0 {
                ranges.push(ByteRange { first: size.saturating_sub(suffix), last: size - 1 });
            }
            continue;
        }
        let Some(first) = number(first) else { return Ranges::Ignore };
        let last = match last {
            "" => u64::MAX,
            digits => match number(digits) {
                Some(last) if last >= first => last,
                _ => return Ranges::Ignore,
            },
        };
        if first < size {
            ranges.push(ByteRange { first, last: last.min(size - 1) });
        }
    }
    if ranges.is_empty() {
        // An empty file has no bytes to range over; a suffix request for
        // it is answered with the (empty) whole, as other servers do.
        return if size == 0 && any_suffix { Ranges::Ignore } else { Ranges::Unsatisfiable };
    }
    Ranges::Serve(coalesce(ranges))
}

/// A run of ASCII digits as a number, saturating: `99999999999999999999-`
/// is valid syntax, just beyond any file.
fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// Sorts ranges and merges those that overlap or touch, so no byte is sent twice.
fn coalesce(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    ranges.sort_by_key(|r| r.first);
    let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(previous) if range.first <= previous.last.saturating_add(1) => {
                previous.last = previous.last.max(range.last);
            }
            _ => merged.push(range),
        }
    }
    merged
}

/// The `Content-Range` value for a range of a file of `size` bytes.
pub fn content_range(range: ByteRange, size: u64) -> String {
    format!("bytes {}-{}/{size}", range.first, range.last)
}

/// A `multipart/byteranges` body: each part's header text is followed by
/// its bytes of the file, and `trailer` closes the body.
#[derive(Debug)]
pub struct Multipart {
    pub parts: Vec<(String, ByteRange)>,
    pub trailer: String,
}

impl Multipart {
    pub fn new(ranges: &[ByteRange], size: u64, content_type: Option<&str>, boundary: &str) -> Self {
        let parts = ranges
            .iter()
            .enumerate()
            .map(|(i, &range)| {
                let separator = if i == 0 { "" } else { "\r\n" };
                let content_type = content_type.map(|t| format!("Content-Type: {t}\r\n")).unwrap_or_default();
                let content_range = content_range(range, size);
                (format!("{separator}--{boundary}\r\n{content_type}Content-Range: {content_range}\r\n\r\n"), range)
            })
            .collect();
        Multipart { parts, trailer: format!("\r\n--{boundary}--\r\n") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(header: &str, size: u64) -> Vec<(u64, u64)> {
        match parse(header, size) {
            Ranges::Serve(ranges) => ranges.iter().map(|r| (r.first, r.last)).collect(),
            other => panic!("{header}: expected ranges, got {other:?}"),
        }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(serve("bytes=0-499", 1000), [(0, 499)]);
        assert_eq!(serve("bytes=500-", 1000), [(500, 999)]);
        assert_eq!(serve("bytes=-300", 1000), [(700, 999)]);
        assert_eq!(serve("bytes=-3000", 1000), [(0, 999)]);
        assert_eq!(serve("bytes=900-5000", 1000), [(900, 999)]);
        assert_eq!(serve("Bytes = 1-1", 1000), [(1, 1)]);
        assert_eq!(serve("bytes=0-99999999999999999999999", 10), [(0, 9)]);
    }

    #[test]
    fn multiple_ranges_sorted_and_merged() {
        assert_eq!(serve("bytes=0-1, 5-6", 10), [(0, 1), (5, 6)]);
        assert_eq!(serve("bytes=5-6,0-1", 10), [(0, 1), (5, 6)]);
        assert_eq!(serve("bytes=0-4,3-6,7-7", 10), [(0, 7)]);
        assert_eq!(serve("bytes=0-1,,20-30, 8-", 10), [(0, 1), (8, 9)]);
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse("bytes=1000-", 1000), Ranges::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 1000), Ranges::Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Ranges::Unsatisfiable);
        assert_eq!(parse("bytes=-5", 0), Ranges::Ignore);
    }

    #[test]
    fn ignored() {
        for header in ["bytes", "bytes=", "items=0-1", "bytes=5-1", "bytes=a-b", "bytes=+1-2", "bytes=1", "bytes=--1"] {
            assert_eq!(parse(header, 1000), Ranges::Ignore, "{header}");
        }
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(parse(&many, 1000), Ranges::Ignore);
    }

    #[test]
    fn multipart_layout() {
        let ranges = [ByteRange { first: 0, last: 1 }, ByteRange { first: 5, last: 9 }];
        let body = Multipart::new(&ranges, 10, Some("text/plain"), "B");
        assert_eq!(body.parts[0].0, "--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n");
        assert_eq!(body.parts[1].0, "\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-9/10\r\n\r\n");
        assert_eq!(body.trailer, "\r\n--B--\r\n");
        let untyped = Multipart::new(&ranges[..1], 10, None, "B");
        assert_eq!(untyped.parts[0].0, "--B\r\nContent-Range: bytes 0-1/10\r\n\r\n");
    }
}
