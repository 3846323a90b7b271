//! The OpenMetrics 1.0.0 text exposition of the server's metric families.

use std::fmt::Write;

use canto_sdk::bindings::canto::http::metrics::{MetricFamily, MetricKind};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every family as `# TYPE`, `# HELP`, `# UNIT` (if it has one), then its
/// samples, ending with `# EOF`.
pub fn render(families: &[MetricFamily]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, so the `fmt::Result`s are ignored.
    for family in families {
        let name = &family.name;
        let _ = writeln!(out, "# TYPE {name} {}", kind(family.kind));
        let _ = writeln!(out, "# HELP {name} {}", escape(&family.help));
        if !family.unit.is_empty() {
            let _ = writeln!(out, "# UNIT {name} {}", family.unit);
        }
        for sample in &family.samples {
            let _ = write!(out, "{name}{}", sample.suffix);
            for (i, (label, value)) in sample.labels.iter().enumerate() {
                let open = if i == 0 { '{' } else { ',' };
                let _ = write!(out, "{open}{label}=\"{}\"", escape(value));
            }
            if !sample.labels.is_empty() {
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(sample.value));
        }
    }
    out.push_str("# EOF\n");
    out
}

fn kind(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
    }
}

/// Escapes a label value or help text: OpenMetrics' `escaped-string` allows
/// neither a raw newline nor a raw `"` or `\`.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// A value as OpenMetrics spells it: the shortest text that reads back as
/// the same float, or `+Inf`, `-Inf`, `NaN`.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use canto_sdk::bindings::canto::http::metrics::Sample;

    use super::*;

    fn sample(suffix: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            suffix: suffix.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            value,
        }
    }

    fn family(name: &str, help: &str, kind: MetricKind, unit: &str, samples: Vec<Sample>) -> MetricFamily {
        MetricFamily { name: name.into(), help: help.into(), kind, unit: unit.into(), samples }
    }

    #[test]
    fn nothing_is_just_eof() {
        assert_eq!(render(&[]), "# EOF\n");
    }

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let families = [
            family(
                "canto_http_requests",
                "HTTP requests answered.",
                MetricKind::Counter,
                "",
                vec![
                    sample("_total", &[("vhost", "example.com"), ("status", "200")], 3.0),
                    sample("_total", &[("vhost", "example.com"), ("status", "404")], 1.0),
                ],
            ),
            family("canto_connections", "Open connections.", MetricKind::Gauge, "", vec![sample("", &[], 2.0)]),
            family(
                "canto_http_request_duration_seconds",
                "Time to answer.",
                MetricKind::Histogram,
                "seconds",
                vec![
                    sample("_bucket", &[("le", "0.25")], 4.0),
                    sample("_bucket", &[("le", "+Inf")], 5.0),
                    sample("_count", &[], 5.0),
                    sample("_sum", &[], 0.75),
                ],
            ),
        ];
        assert_eq!(
            render(&families),
            "# TYPE canto_http_requests counter\n\
             # HELP canto_http_requests HTTP requests answered.\n\
             canto_http_requests_total{vhost=\"example.com\",status=\"200\"} 3\n\
             canto_http_requests_total{vhost=\"example.com\",status=\"404\"} 1\n\
             # TYPE canto_connections gauge\n\
             # HELP canto_connections Open connections.\n\
             canto_connections 2\n\
             # TYPE canto_http_request_duration_seconds histogram\n\
             # HELP canto_http_request_duration_seconds Time to answer.\n\
             # UNIT canto_http_request_duration_seconds seconds\n\
             canto_http_request_duration_seconds_bucket{le=\"0.25\"} 4\n\
             canto_http_request_duration_seconds_bucket{le=\"+Inf\"} 5\n\
             canto_http_request_duration_seconds_count 5\n\
             canto_http_request_duration_seconds_sum 0.75\n\
             # EOF\n"
        );
    }

    #[test]
    fn escapes_help_and_label_values() {
        let families =
            [family("m", "a \\ b\nc \"d\"", MetricKind::Gauge, "", vec![sample("", &[("path", "C:\\x\n\"y\"")], 1.0)])];
        assert_eq!(
            render(&families),
            "# TYPE m gauge\n# HELP m a \\\\ b\\nc \\\"d\\\"\nm{path=\"C:\\\\x\\n\\\"y\\\"\"} 1\n# EOF\n"
        );
    }

    #[test]
    fn spells_values_as_openmetrics_does() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(-1.5), "-1.5");
        assert_eq!(number(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1e-7).parse::<f64>(), Ok(1e-7));
    }
}
