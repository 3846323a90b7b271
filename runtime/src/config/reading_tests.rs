//! Reading Prosody configs: the seed document's snippets, every supported
//! construct, the config Debian ships, errors, and arbitrary input.

use std::net::SocketAddr;
use std::path::Path;

use super::{Config, ConfigError, SectionKind};

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_text(Path::new("/etc/prosody/prosody.cfg.lua"), text, &crate::builtin::names())
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn the_seed_documents_snippets_mean_what_the_document_says() {
    let config = load(
        r#"
    modules_enabled = {
        "http";
    }
    http_ports = { 5280 }
    http_interfaces = { "127.0.0.1", "::1" }
    https_ports = { 5281 }
    https_interfaces = { "*", "::" }
    https_ssl = {
        certificate = "/path/to/http.crt";
        key = "/path/to/http.key";
    }
    http_default_host = "example.com"
    http_cors_override = {
        bosh = {
            enabled = false;
        };
        websocket = {
            enabled = false;
        };
    }
trusted_proxies = { "127.0.0.1", "::1", "192.168.1.1", }
    VirtualHost "example.com"
    http_host = "www.example.com"
    http_external_url = "https://www.example.com/"
    http_paths = {
        bosh = "/http-bind"; -- Serve BOSH at /http-bind
        files = "/"; -- Serve files from the base URL
    }
    Component "www.example.org" "http"
        modules_enabled = { "bosh" }
"#,
    )
    .unwrap();
    assert_eq!(config.http_listeners, addrs(&["127.0.0.1:5280", "[::1]:5280"]));
    assert_eq!(config.https_listeners, addrs(&["0.0.0.0:5281", "[::]:5281"]));
    assert_eq!(config.default_host.as_ref().map(|(h, _)| h.as_str()), Some("example.com"));
    let proxies: Vec<String> = config.trusted_proxies.iter().map(ToString::to_string).collect();
    assert_eq!(proxies, ["127.0.0.1/32", "::1/128", "192.168.1.1/32"]);
    let example = &config.hosts[0];
    assert_eq!((example.name.as_str(), example.http_host.as_str()), ("example.com", "www.example.com"));
    assert_eq!(example.external_url.as_ref().unwrap().join("/files"), "https://www.example.com/files/");
    let www = &config.hosts[1];
    assert_eq!(www.kind, SectionKind::Component { module: Some("http".into()) });
    // The seed's BOSH component: canto's built-in `bosh` serves it.
    let names: Vec<&str> = www.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["bosh"]);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn prosodys_defaults_apply_when_nothing_is_set() {
    let config = load("").unwrap();
    assert_eq!(config.http_listeners, addrs(&["127.0.0.1:5280", "[::1]:5280"]));
    assert_eq!(config.https_listeners, addrs(&["0.0.0.0:5281", "[::]:5281"]));
    assert_eq!(config.cors.methods, ["GET", "OPTIONS"]);
    assert_eq!(config.cors.headers, ["Content-Type"]);
    assert_eq!(config.cors.origins, ["*"]);
    assert!(!config.cors.credentials);
    assert_eq!(config.cors.max_age, 7200);
    assert!(config.cors.enabled);
    assert_eq!(config.max_content_size, 10 * 1024 * 1024);
    assert_eq!(config.trusted_proxies.len(), 2);
    assert!(config.hosts.is_empty());
}

#[test]
fn every_supported_construct_reads_as_expected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(dir.path().join("conf.d/b.cfg.lua"), "VirtualHost \"b.test\"\nhttp_host = 'b-www.test'\n").unwrap();
    std::fs::write(dir.path().join("conf.d/a.cfg.lua"), "VirtualHost \"a.test\"\n").unwrap();
    std::fs::write(dir.path().join("conf.d/.hidden.cfg.lua"), "this is not lua").unwrap();
    std::fs::write(dir.path().join("extra.lua"), "access_control_max_age = 60\n").unwrap();
    let main = dir.path().join("prosody.cfg.lua");
    let text = r#"
        --[==[ a long
        comment ]==]
        http_ports = { 8080; 8081, }   -- both separators, trailing separator
        http_interfaces = "127.0.0.1"  -- a scalar is a one-item list
        access_control_allow_methods = { "GET", 'POST', [[PUT]] }
        access_control_allow_headers = { "X-" .. "Custom", "Content-Type" }
        access_control_allow_credentials = true
        access_control_allow_origins = { "https://a.example", "https://b.example" }
        http_max_content_size = 0x100000
        http_errors_detailed = ENV_CANTO_TEST_UNSET_VARIABLE == nil
        http_module_timeout = 5
        Include "extra.lua"
        Include "conf.d/*.cfg.lua"
        VirtualHost "c.test" { http_host = "c-www.test" }
        Component "d.test" "http" { modules_enabled = { "http_hello" } }
        "#;
    std::fs::write(&main, text).unwrap();
    let config = Config::load(&main, &crate::builtin::names()).unwrap();
    assert_eq!(config.http_listeners, addrs(&["127.0.0.1:8080", "127.0.0.1:8081"]));
    assert_eq!(config.cors.methods, ["GET", "POST", "PUT"]);
    assert_eq!(config.cors.headers, ["X-Custom", "Content-Type"]);
    assert!(config.cors.credentials);
    assert_eq!(config.cors.origins, ["https://a.example", "https://b.example"]);
    assert_eq!(config.cors.max_age, 60);
    assert_eq!(config.max_content_size, 1 << 20);
    assert!(config.errors_detailed);
    assert_eq!(config.limits.timeout.as_secs(), 5);
    let hosts: Vec<(&str, &str)> = config.hosts.iter().map(|h| (h.name.as_str(), h.http_host.as_str())).collect();
    // Includes in sorted order, dot files skipped; table forms.
    assert_eq!(hosts, [("a.test", "a.test"), ("b.test", "b-www.test"), ("c.test", "c-www.test"), ("d.test", "d.test")]);
    assert_eq!(config.hosts[3].modules[0].name, "http_hello");
}

#[test]
fn stores_read_with_their_defaults_and_grants_name_them() {
    let config = load(
        r#"
    data_path = "/var/lib/prosody"
    http_stores = {
        counters = { backend = "sqlite"; path = "counters.sqlite"; per_host = false };
        shared = { backend = "redis"; url = "redis://:secret@127.0.0.1:6379/0"; timeout = 0.5; max_value_size = 4096 };
    }
    http_module_grants = { counter = { stores = { "counters", "shared", "default" } } }
    "#,
    )
    .unwrap();
    let names: Vec<&str> = config.stores.keys().map(String::as_str).collect();
    assert_eq!(names, ["counters", "default", "shared"]);
    let default = &config.stores["default"];
    assert_eq!(
        default.backend,
        super::StoreBackend::Sqlite { path: "/var/lib/prosody/http_stores.sqlite".into() },
        "the default store is SQLite under data_path"
    );
    assert!(default.per_host);
    assert!(!config.stores["counters"].per_host);
    let shared = &config.stores["shared"];
    assert_eq!(shared.timeout, std::time::Duration::from_millis(500));
    assert_eq!(shared.max_value_size, 4096);
    assert_eq!(shared.backend.describe(), "redis redis://:***@127.0.0.1:6379/0", "no password in logs");
    assert_eq!(&*config.grants["counter"].stores, ["counters", "shared", "default"]);
    assert_eq!(
        super::stores::redacted_url("redis+unix:///run/redis.sock?db=1&pass=secret"),
        "redis+unix:///run/redis.sock?db=1&pass=***"
    );
}

#[test]
fn misspelt_and_misplaced_options_warn() {
    let config = load(
            "http_port = { 5280 }\ntrusted_proxy = { \"10.0.0.1\" }\nroster_versioning = true\nVirtualHost \"a\"\nhttp_ports = { 1 }\nhttp_pathz = {}\n",
        )
        .unwrap();
    let warnings = config.warnings.join("\n");
    assert!(
        warnings.contains("prosody.cfg.lua:1:13: unknown option 'http_port' (did you mean 'http_ports'?)"),
        "{warnings}"
    );
    assert!(warnings.contains("unknown option 'trusted_proxy' (did you mean 'trusted_proxies'?)"), "{warnings}");
    assert!(warnings.contains("unknown option 'http_pathz' (did you mean 'http_paths'?)"), "{warnings}");
    assert!(
        warnings.contains(
            "a: Option 'http_ports' has no effect for virtual hosts - put it in the server-wide section instead"
        ),
        "{warnings}"
    );
    assert!(!warnings.contains("roster_versioning"), "XMPP options are accepted quietly");
}

#[test]
fn duplicate_options_warn_with_file_and_line() {
    let config = load("http_ports = { 1 }\nhttp_ports = { 2 }\n").unwrap();
    assert_eq!(config.warnings, ["/etc/prosody/prosody.cfg.lua:2: Duplicate option 'http_ports'"]);
}

#[test]
fn each_unsupported_construct_and_bad_value_is_an_error_at_its_place() {
    let cases: &[(&str, &str)] = &[
        ("local x = 1", "1:1: `local` variables are not supported in a config"),
        ("function f() end", "1:1: functions are not supported in a config"),
        ("if true then end", "1:1: `if` is not supported in a config"),
        ("while true do end", "1:1: loops are not supported in a config"),
        ("x = print('a')", "1:5: function calls are not supported in a config value"),
        ("x = 1 + 2", "1:5: only `..`, `==` and `~=` are supported in a config"),
        ("x = y", "1:5: `y` is not a value canto knows"),
        ("a, b = 1, 2", "1:1: expected `name = value` (one option per line)"),
        ("Foo \"x\"", "1:1: unknown directive `Foo`"),
        ("RunScript \"x.lua\"", "1:1: `RunScript` runs Lua code; canto does not"),
        ("x = 'unterminated", "syntax error"),
        ("x = \"\\q\"", "1:5: `\\q` is not a Lua escape"),
        ("http_ports = { \"80\" }", "1:16: http_ports: expected a port number, found a string"),
        ("http_ports = 65536", "1:14: http_ports: 65536 is not a port number (0-65535)"),
        ("http_interfaces = { \"localhost\" }", "1:21: http_interfaces: \"localhost\" is not an IP address or \"*\""),
        (
            "trusted_proxies = { \"10.0.0.0/33\" }",
            "1:21: trusted_proxies: \"10.0.0.0/33\" is not an IP address or CIDR range",
        ),
        (
            "access_control_allow_credentials = \"yes\"",
            "1:36: access_control_allow_credentials: expected true or false, found a string",
        ),
        (
            "http_max_content_size = -1",
            "1:25: http_max_content_size: expected a whole number of at least 0, found a number",
        ),
        (
            "VirtualHost \"a\"\nComponent \"a\" \"http\"",
            "2:1: Component \"a\" clashes with previously defined VirtualHost \"a\"",
        ),
        ("Include \"missing.cfg.lua\"", "1:1: cannot read included file /etc/prosody/missing.cfg.lua"),
        (
            "http_module_instance_reuse = 0",
            "1:30: http_module_instance_reuse: expected a positive integer, found a number",
        ),
        (
            "http_module_instance_reuse = { hello = \"many\" }",
            "1:40: http_module_instance_reuse.hello: expected a positive integer, found a string",
        ),
        (
            "http_module_instance_reuse = { 1000 }",
            "1:32: http_module_instance_reuse: expected `app = requests` entries, like { hello = 1000 }",
        ),
        (
            "http_module_grants = { bosh = { connect = { \"localhost:5222\", \"localhost\" } } }",
            "1:63: http_module_grants.bosh.connect: 'localhost' is not host:port",
        ),
        (
            "http_connect_ca_file = \"/nonexistent/ca.pem\"",
            "1:24: http_connect_ca_file: cannot read /nonexistent/ca.pem",
        ),
        ("websocket_frame_fragment_limit = 0", "1:34: websocket_frame_fragment_limit: expected a positive integer"),
        (
            "http_stores = { kv = { backend = \"memcached\" } }",
            "1:34: http_stores.kv.backend: unknown backend 'memcached' (expected \"sqlite\" or \"redis\")",
        ),
        ("http_stores = { kv = { backend = \"redis\" } }", "1:22: http_stores.kv: missing url"),
        (
            "http_stores = { kv = { backend = \"redis\"; url = \"http://x\" } }",
            "1:49: http_stores.kv.url: expected a redis:// or unix:// URL (rediss:// is not supported)",
        ),
        (
            "http_stores = { kv = { backend = \"sqlite\"; timeout = 0 } }",
            "1:54: http_stores.kv.timeout: expected a positive number of seconds",
        ),
        ("http_stores = { kv = { backend = \"sqlite\"; size = 1 } }", "1:51: http_stores.kv: unknown field 'size'"),
        (
            "http_module_grants = { counter = { stores = { \"default\", \"nope\" } } }",
            "1:58: http_module_grants.counter.stores: no store 'nope' in http_stores (declared: default)",
        ),
    ];
    for (text, expected) in cases {
        let error = load(text).expect_err(text).to_string();
        assert!(error.contains(expected), "{text:?} gave {error:?}, expected it to contain {expected:?}");
        assert!(error.starts_with("/etc/prosody/prosody.cfg.lua:"), "{error}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// Arbitrary text never panics the reader: it loads or it errors.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,120}") {
        let _ = load(&text);
    }

    /// Nor does a soup of Lua tokens, which gets much further into it.
    #[test]
    fn lua_token_soup_never_panics(tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 0..40)) {
        let _ = load(&tokens.join(" "));
    }
}

const TOKENS: &[&str] = &[
    "VirtualHost",
    "Component",
    "Include",
    "\"a.test\"",
    "\"http\"",
    "'x'",
    "[[y]]",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "=",
    "==",
    "~=",
    "..",
    ",",
    ";",
    "1",
    "-2",
    "0x1F",
    "1.5",
    "true",
    "false",
    "nil",
    "not",
    "-",
    "http_ports",
    "http_paths",
    "trusted_proxies",
    "modules_enabled",
    "ENV_HOME",
    "local",
    "function",
    "end",
    "\"\\z  \"",
    "\"\\300\"",
    "\"\\u{110000}\"",
    "--",
    "--[[",
    "]]",
    "http_host",
];

/// The config Debian's `prosody` package installs (scripts/test installs
/// the package). This fails rather than skips when it is missing.
#[test]
fn debians_prosody_config_loads() {
    let path = Path::new("/etc/prosody/prosody.cfg.lua");
    assert!(path.exists(), "{} is missing: install Debian's prosody package (scripts/test does)", path.display());
    let config = Config::load(path, &crate::builtin::names()).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.hosts.iter().any(|h| h.name == "localhost"));
    assert_eq!(config.http_listeners, addrs(&["127.0.0.1:5280", "[::1]:5280"]));
}

/// Prosody reads bytes; a Latin-1 byte in a comment must not make the
/// config unreadable, and the operator is told where it is.
#[test]
fn a_latin1_byte_is_read_with_a_located_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.cfg.lua");
    std::fs::write(&path, b"http_ports = { 5280 }\n-- Caf\xe9 config\nVirtualHost \"a.test\"\n").unwrap();
    let config = Config::load(&path, &crate::builtin::names()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.hosts[0].name, "a.test");
    let warning = config.warnings.iter().find(|w| w.contains("not UTF-8")).expect("a warning");
    assert!(warning.contains("latin1.cfg.lua:2:7: "), "{warning}");
}
