//! The HTML page listing a directory (`http_dir_listing = true`).

use std::fmt::Write;

use html_escape::encode_quoted_attribute as html_escape;

use crate::path::percent_encode;
use http_serving::validators::http_date;

/// One name in a directory.
#[derive(Debug)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    /// Bytes, for files.
    pub size: u64,
    /// Seconds since the epoch.
    pub modified: Option<u64>,
}

/// Renders the listing of the directory shown as `shown_path` (decoded, with
/// its trailing slash). `parent` adds a `../` link (not at the mount's
/// root); `truncated` says entries were left out.
pub fn render(shown_path: &str, parent: bool, mut entries: Vec<Entry>, truncated: bool) -> String {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let title = html_escape(shown_path);
    let mut page = format!(
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body>\n<h1>Index of {title}</h1>\n<table>\n\
         <tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n"
    );
    if parent {
        page.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for entry in &entries {
        let slash = if entry.is_dir { "/" } else { "" };
        let href = percent_encode(&entry.name);
        let name = html_escape(&entry.name);
        let size = if entry.is_dir { "-".to_string() } else { entry.size.to_string() };
        let modified = entry.modified.and_then(http_date).unwrap_or_default();
        // Writing to a String cannot fail.
        let _ = writeln!(
            page,
            "<tr><td><a href=\"{href}{slash}\">{name}{slash}</a></td><td>{size}</td><td>{modified}</td></tr>"
        );
    }
    page.push_str("</table>\n");
    if truncated {
        page.push_str("<p>Only the first entries are listed.</p>\n");
    }
    page.push_str("</body>\n</html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_sorted_escaped_entries() {
        let entries = vec![
            Entry { name: "b <x>.txt".into(), is_dir: false, size: 12, modified: Some(784_111_777) },
            Entry { name: "a&dir".into(), is_dir: true, size: 0, modified: None },
        ];
        let page = render("/files/<sub>/", true, entries, false);
        assert!(page.contains("<title>Index of /files/&lt;sub&gt;/</title>"));
        assert!(page.contains("<a href=\"../\">../</a>"));
        let dir = page.find("<a href=\"a%26dir/\">a&amp;dir/</a></td><td>-</td><td></td>").expect("dir row");
        let file = page
            .find(
                "<a href=\"b%20%3Cx%3E.txt\">b &lt;x&gt;.txt</a></td><td>12</td><td>Sun, 06 Nov 1994 08:49:37 GMT</td>",
            )
            .expect("file row");
        assert!(dir < file);
        assert!(!page.contains("Only the first"));
    }

    #[test]
    fn root_has_no_parent_link() {
        let page = render("/", false, Vec::new(), true);
        assert!(!page.contains("../"));
        assert!(page.contains("Only the first"));
    }
}
