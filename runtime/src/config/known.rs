//! The HTTP options canto knows, with their scope, so a misspelt one gets a
//! did-you-mean and a global-only one set on a host gets Prosody's warning.
//!
//! A Prosody config also carries many XMPP options canto has no part in;
//! only names in HTTP's namespaces (see [`is_http_namespace`]) are checked.

/// Where an option may be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Read from the global section only.
    Global,
    /// Per host, falling back to the global value.
    Host,
}

/// Every HTTP-related option of Prosody 0.12 (spec §2) and canto's own.
pub const KNOWN: &[(&str, Scope)] = &[
    ("http_ports", Scope::Global),
    ("http_interfaces", Scope::Global),
    ("http_interface", Scope::Global),
    ("https_ports", Scope::Global),
    ("https_interfaces", Scope::Global),
    ("https_interface", Scope::Global),
    ("https_ssl", Scope::Global),
    ("https_certificate", Scope::Global),
    ("https_host", Scope::Host),
    ("http_host", Scope::Host),
    ("http_default_host", Scope::Global),
    ("http_paths", Scope::Host),
    ("http_external_url", Scope::Host),
    ("trusted_proxies", Scope::Global),
    ("access_control_allow_methods", Scope::Global),
    ("access_control_allow_headers", Scope::Global),
    ("access_control_allow_origins", Scope::Global),
    ("access_control_allow_credentials", Scope::Global),
    ("access_control_max_age", Scope::Global),
    ("http_default_cors_enabled", Scope::Global),
    ("http_cors_override", Scope::Global),
    ("http_max_content_size", Scope::Global),
    ("http_max_buffer_size", Scope::Global),
    ("http_errors_detailed", Scope::Global),
    ("http_errors_always_show", Scope::Global),
    ("http_errors_default_message", Scope::Global),
    ("http_errors_messages", Scope::Global),
    ("http_files_dir", Scope::Host),
    ("http_files_cache_size", Scope::Host),
    ("http_files_cache_max_file_size", Scope::Host),
    ("http_index_files", Scope::Host),
    ("http_dir_listing", Scope::Host),
    ("http_file_share_secret", Scope::Host),
    ("http_file_share_base_url", Scope::Host),
    ("http_file_share_size_limit", Scope::Host),
    ("http_file_share_allowed_file_types", Scope::Host),
    ("http_file_share_safe_file_types", Scope::Host),
    ("http_file_share_expires_after", Scope::Host),
    ("http_file_share_daily_quota", Scope::Host),
    ("http_file_share_global_quota", Scope::Host),
    ("http_file_share_access", Scope::Host),
    ("openmetrics_allow_ips", Scope::Global),
    ("openmetrics_allow_cidr", Scope::Global),
    // canto's own: module sandbox limits.
    ("http_module_memory_limit", Scope::Global),
    ("http_module_timeout", Scope::Global),
    ("http_module_pool_size", Scope::Global),
    ("http_module_wall_timeout", Scope::Global),
    ("http_module_max_concurrency", Scope::Global),
    ("http_module_max_header_size", Scope::Global),
    ("http_module_max_response_size", Scope::Global),
    ("http_module_grants", Scope::Global),
    ("http_stores", Scope::Global),
    ("http_module_instance_reuse", Scope::Global),
    ("http_module_queue_timeout", Scope::Global),
    // canto's own: connection limits.
    ("http_max_connections", Scope::Global),
    ("http_first_byte_timeout", Scope::Global),
    ("http_idle_timeout", Scope::Global),
    ("http_max_header_size", Scope::Global),
    ("http_body_min_rate", Scope::Global),
    ("http_body_min_rate_window", Scope::Global),
    ("websocket_frame_buffer_limit", Scope::Global),
    ("http_websocket_max_connections", Scope::Global),
    ("websocket_frame_fragment_limit", Scope::Global),
    ("http_connect_ca_file", Scope::Global),
    ("http_connect_idle_timeout", Scope::Global),
    ("http_xmpp_server", Scope::Host),
    ("http_xmpp_server_direct_tls", Scope::Host),
    // mod_http_file_share's (those the HTTP side reads), and canto's `_dir`.
    ("http_file_share_secret", Scope::Host),
    ("http_file_share_size_limit", Scope::Host),
    ("http_file_share_safe_file_types", Scope::Host),
    ("http_file_share_expires_after", Scope::Host),
    ("http_file_share_base_url", Scope::Host),
    ("http_file_share_allowed_file_types", Scope::Host),
    ("http_file_share_daily_quota", Scope::Host),
    ("http_file_share_global_quota", Scope::Host),
    ("http_file_share_access", Scope::Host),
    ("http_file_share_dir", Scope::Host),
    ("http_file_share_prune_interval", Scope::Host),
    ("http_upload_external_secret", Scope::Host),
    ("http_upload_external_protocol", Scope::Host),
];

/// Names in HTTP's namespaces, where an unknown name is probably a typo.
pub fn is_http_namespace(name: &str) -> bool {
    ["http_", "https_", "access_control_", "trusted_", "openmetrics_"].iter().any(|prefix| name.starts_with(prefix))
}

pub fn scope_of(name: &str) -> Option<Scope> {
    KNOWN.iter().find(|(known, _)| *known == name).map(|(_, scope)| *scope)
}

/// The known option closest to `name`, if any is close enough to be meant.
pub fn did_you_mean(name: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .map(|(known, _)| (*known, strsim::damerau_levenshtein(name, known)))
        .filter(|(known, distance)| *distance <= 3.max(known.len() / 5))
        .min_by_key(|(_, distance)| *distance)
        .map(|(known, _)| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspellings_find_their_option() {
        assert_eq!(did_you_mean("http_port"), Some("http_ports"));
        assert_eq!(did_you_mean("http_pathz"), Some("http_paths"));
        assert_eq!(did_you_mean("trusted_proxy"), Some("trusted_proxies"));
        assert_eq!(did_you_mean("http_something_else_entirely"), None);
    }
}
