//! Validators (`ETag`, `Last-Modified`) and the conditional requests that
//! use them (RFC 9110 §8.8 and §13).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// HTTP dates end in year 9999; `httpdate` panics past it.
const LAST_HTTP_DATE: u64 = 253_402_300_799;

/// What identifies one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// Strong: `"<size hex>-<mtime nanoseconds hex>"`. Absent without an mtime.
    pub etag: Option<String>,
    /// The mtime as an IMF-fixdate.
    pub last_modified: Option<String>,
    /// The mtime in whole seconds, what date comparisons use.
    modified_secs: Option<u64>,
}

impl Validators {
    pub fn new(size: u64, modified: Option<SystemTime>) -> Self {
        let since_epoch = modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok());
        let etag = since_epoch.map(|d| format!("\"{size:x}-{:x}\"", d.as_nanos()));
        let modified_secs = since_epoch.map(|d| d.as_secs());
        Validators { etag, last_modified: modified_secs.and_then(http_date), modified_secs }
    }
}

/// `secs` since the epoch as an IMF-fixdate, if it has one.
pub fn http_date(secs: u64) -> Option<String> {
    (secs <= LAST_HTTP_DATE).then(|| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs)))
}

/// An HTTP date (IMF-fixdate, RFC 850 or asctime) as seconds since the epoch.
fn parse_date(value: &str) -> Option<u64> {
    let time = httpdate::parse_http_date(value.trim()).ok()?;
    time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// The conditional headers of a request, as sent.
#[derive(Debug, Default)]
pub struct Conditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub if_unmodified_since: Option<String>,
}

/// What the preconditions say to do with a GET or HEAD.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Proceed,
    /// 304.
    NotModified,
    /// 412.
    Failed,
}

/// Evaluates preconditions in RFC 9110 §13.2.2's order for a GET or HEAD of
/// an existing file.
pub fn evaluate(conditions: &Conditions, current: &Validators) -> Outcome {
    let etag = current.etag.as_deref();
    if let Some(if_match) = &conditions.if_match {
        if !matches_any(if_match, etag, strong_match) {
            return Outcome::Failed;
        }
    } else if let (Some(since), Some(modified)) =
        (conditions.if_unmodified_since.as_deref().and_then(parse_date), current.modified_secs)
        && modified > since
    {
        return Outcome::Failed;
    }
    if let Some(if_none_match) = &conditions.if_none_match {
        if matches_any(if_none_match, etag, weak_match) {
            return Outcome::NotModified;
        }
    } else if let (Some(since), Some(modified)) =
        (conditions.if_modified_since.as_deref().and_then(parse_date), current.modified_secs)
        && modified <= since
    {
        return Outcome::NotModified;
    }
    Outcome::Proceed
}

/// Whether an `If-Range` value still names the current file, so the range
/// may be served (RFC 9110 §13.1.5): a strong entity-tag match, or a date
/// equal to `Last-Modified`.
pub fn if_range_holds(value: &str, current: &Validators) -> bool {
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        let tags = entity_tags(value);
        tags.len() == 1 && current.etag.as_deref().is_some_and(|etag| strong_match(&tags[0], etag))
    } else {
        parse_date(value).is_some_and(|date| current.modified_secs == Some(date))
    }
}

/// Whether a `*` or entity-tag list matches `etag` under `compare`. `*`
/// matches any current file; a file without an ETag matches no tag.
fn matches_any(list: &str, etag: Option<&str>, compare: fn(&EntityTag, &str) -> bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    etag.is_some_and(|etag| entity_tags(list).iter().any(|tag| compare(tag, etag)))
}

/// One entity tag from a request; `opaque` keeps its quotes, like our ETag.
#[derive(Debug, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a str,
}

fn strong_match(tag: &EntityTag, etag: &str) -> bool {
    !tag.weak && tag.opaque == etag
}

fn weak_match(tag: &EntityTag, etag: &str) -> bool {
    tag.opaque == etag.strip_prefix("W/").unwrap_or(etag)
}

/// Parses `#entity-tag`. Tags may contain commas, so this walks quotes
/// rather than splitting; it stops at the first malformed element.
fn entity_tags(list: &str) -> Vec<EntityTag<'_>> {
    let mut tags = Vec::new();
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return tags;
        }
        let (weak, body) = match rest.strip_prefix("W/") {
            Some(body) => (true, body),
            None => (false, rest),
        };
        let Some(after_quote) = body.strip_prefix('"') else { return tags };
        let Some(end) = after_quote.find('"') else { return tags };
        tags.push(EntityTag { weak, opaque: &body[..end + 2] });
        rest = &after_quote[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1994-11-06 08:49:37 UTC, RFC 9110's example date.
    const EXAMPLE: u64 = 784_111_777;
    const EXAMPLE_DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn file() -> Validators {
        Validators::new(6, Some(UNIX_EPOCH + Duration::new(EXAMPLE, 5)))
    }

    #[test]
    fn formats_validators() {
        let v = file();
        assert_eq!(v.etag.as_deref(), Some(format!("\"6-{:x}\"", EXAMPLE as u128 * 1_000_000_000 + 5).as_str()));
        assert_eq!(v.last_modified.as_deref(), Some(EXAMPLE_DATE));
        let none = Validators::new(6, None);
        assert_eq!((none.etag, none.last_modified), (None, None));
        let far = Validators::new(1, Some(UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE + 1)));
        assert!(far.etag.is_some() && far.last_modified.is_none());
    }

    #[test]
    fn parses_all_three_date_forms() {
        assert_eq!(parse_date(EXAMPLE_DATE), Some(EXAMPLE));
        assert_eq!(parse_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(EXAMPLE));
        assert_eq!(parse_date("Sun Nov  6 08:49:37 1994"), Some(EXAMPLE));
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn entity_tag_lists() {
        let tags = entity_tags(r#" "a", W/"b,c" ,,"" "#);
        assert_eq!(
            tags,
            [
                EntityTag { weak: false, opaque: "\"a\"" },
                EntityTag { weak: true, opaque: "\"b,c\"" },
                EntityTag { weak: false, opaque: "\"\"" },
            ]
        );
        assert_eq!(entity_tags(r#""a", bare, "b""#).len(), 1);
        assert!(entity_tags(r#""unterminated"#).is_empty());
    }

    fn outcome(set: impl FnOnce(&mut Conditions)) -> Outcome {
        let mut conditions = Conditions::default();
        set(&mut conditions);
        evaluate(&conditions, &file())
    }

    #[test]
    fn if_none_match() {
        let etag = file().etag.expect("has an etag");
        assert_eq!(outcome(|c| c.if_none_match = Some(etag.clone())), Outcome::NotModified);
        assert_eq!(outcome(|c| c.if_none_match = Some(format!("\"x\", W/{etag}"))), Outcome::NotModified);
        assert_eq!(outcome(|c| c.if_none_match = Some("*".into())), Outcome::NotModified);
        assert_eq!(outcome(|c| c.if_none_match = Some("\"other\"".into())), Outcome::Proceed);
        // If-None-Match present: If-Modified-Since is not consulted.
        assert_eq!(
            outcome(|c| {
                c.if_none_match = Some("\"other\"".into());
                c.if_modified_since = Some(EXAMPLE_DATE.into());
            }),
            Outcome::Proceed
        );
    }

    #[test]
    fn if_modified_since() {
        assert_eq!(outcome(|c| c.if_modified_since = Some(EXAMPLE_DATE.into())), Outcome::NotModified);
        let later = "Sun, 06 Nov 1994 08:49:38 GMT";
        assert_eq!(outcome(|c| c.if_modified_since = Some(later.into())), Outcome::NotModified);
        let earlier = "Sun, 06 Nov 1994 08:49:36 GMT";
        assert_eq!(outcome(|c| c.if_modified_since = Some(earlier.into())), Outcome::Proceed);
        assert_eq!(outcome(|c| c.if_modified_since = Some("garbage".into())), Outcome::Proceed);
    }

    #[test]
    fn if_match_and_if_unmodified_since() {
        let etag = file().etag.expect("has an etag");
        assert_eq!(outcome(|c| c.if_match = Some(etag.clone())), Outcome::Proceed);
        assert_eq!(outcome(|c| c.if_match = Some(format!("W/{etag}"))), Outcome::Failed);
        assert_eq!(outcome(|c| c.if_match = Some("*".into())), Outcome::Proceed);
        let earlier = "Sun, 06 Nov 1994 08:49:36 GMT";
        assert_eq!(outcome(|c| c.if_unmodified_since = Some(earlier.into())), Outcome::Failed);
        assert_eq!(outcome(|c| c.if_unmodified_since = Some(EXAMPLE_DATE.into())), Outcome::Proceed);
    }

    #[test]
    fn if_range() {
        let v = file();
        let etag = v.etag.clone().expect("has an etag");
        assert!(if_range_holds(&etag, &v));
        assert!(!if_range_holds(&format!("W/{etag}"), &v));
        assert!(!if_range_holds("\"other\"", &v));
        assert!(if_range_holds(EXAMPLE_DATE, &v));
        assert!(!if_range_holds("Sun, 06 Nov 1994 08:49:38 GMT", &v));
        assert!(!if_range_holds("nonsense", &v));
    }
}
