//! Cross-origin resource sharing: which headers a module's responses carry
//! and how preflight requests are answered, per app, as Prosody 0.12 does
//! it, with the origin list enforced and `Vary: Origin` where the answer
//! depends on it (see ../shared/spec/README.md).
//!
//! Settings: the `access_control_*` options, a module's declared defaults,
//! and `http_cors_override[app]`, which replaces the module's own defaults.

use http::{HeaderMap, HeaderValue, Method, header};

use crate::config::{CorsOverride, CorsSettings};
use crate::wasm::CorsDefaults;

/// The CORS answer for one mounted app; absent when CORS is off for it.
#[derive(Debug)]
pub struct CorsPolicy {
    methods: HeaderValue,
    headers: HeaderValue,
    max_age: HeaderValue,
    /// `None`: any origin.
    origins: Option<Vec<String>>,
    credentials: bool,
}

/// Builds the policy for `app`; `None` when CORS is off for it.
pub fn policy_for(app: &str, declared: Option<&CorsDefaults>, settings: &CorsSettings) -> Option<CorsPolicy> {
    let mut methods = settings.methods.clone();
    let mut headers = settings.headers.clone();
    let mut credentials = settings.credentials;
    let mut origins = settings.origins.clone();
    match (settings.overrides.get(app), declared) {
        (Some(CorsOverride { enabled: Some(false), .. }), _) => return None,
        (Some(over), _) => {
            // The override replaces the module's own defaults wholesale.
            credentials = over.credentials.unwrap_or(credentials);
            switch(&mut methods, &over.methods);
            switch(&mut headers, &over.headers);
            if let Some(list) = &over.origins {
                origins = list.clone();
            }
        }
        (None, Some(declared)) => {
            credentials |= declared.credentials;
            add_all(&mut methods, &declared.methods);
            add_all(&mut headers, &declared.headers);
        }
        (None, None) if !settings.enabled => return None,
        (None, None) => {}
    }
    let any_origin = origins.first().is_none_or(|first| first == "*");
    Some(CorsPolicy {
        methods: joined(&methods),
        headers: joined(&headers),
        max_age: HeaderValue::from(settings.max_age),
        origins: (!any_origin).then_some(origins),
        credentials,
    })
}

fn add_all(list: &mut Vec<String>, names: &[String]) {
    for name in names {
        if !list.contains(name) {
            list.push(name.clone());
        }
    }
}

fn switch(list: &mut Vec<String>, switches: &[(String, bool)]) {
    for (name, on) in switches {
        if *on {
            add_all(list, std::slice::from_ref(name));
        } else {
            list.retain(|existing| existing != name);
        }
    }
}

fn joined(names: &[String]) -> HeaderValue {
    HeaderValue::from_str(&names.join(", ")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A browser's preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`. The server answers it; the module never runs.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl CorsPolicy {
    /// Whether a request from `origin` is allowed (a WebSocket upgrade
    /// from another origin is refused with 403).
    pub fn allows_origin(&self, origin: &HeaderValue) -> bool {
        self.origins.as_ref().is_none_or(|allowed| origin.to_str().is_ok_and(|o| allowed.iter().any(|a| a == o)))
    }

    /// Adds the CORS headers for a request from `origin` to `response`.
    /// A disallowed (or, with an origin list, missing) origin gets none.
    pub fn apply(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        let echo_origin = self.origins.is_some() || self.credentials;
        if echo_origin {
            // The answer differs by Origin, so caches must keep them apart.
            response.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(allowed) = &self.origins {
            let permitted = origin.and_then(|o| o.to_str().ok()).is_some_and(|o| allowed.iter().any(|a| a == o));
            if !permitted {
                return;
            }
        }
        // Credentials are never combined with `*`: without an Origin to
        // echo there is no cross-origin caller to answer.
        if self.credentials && origin.is_none() {
            return;
        }
        let allow_origin = match origin {
            Some(origin) if echo_origin => origin.clone(),
            _ => HeaderValue::from_static("*"),
        };
        let wildcard = allow_origin == "*";
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        response.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        response.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        response.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        // Browsers reject credentials with a wildcard origin; never send both.
        if self.credentials && !wildcard {
            response.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CorsSettings {
        CorsSettings {
            enabled: true,
            methods: vec!["GET".into(), "OPTIONS".into()],
            headers: vec!["Content-Type".into()],
            origins: vec!["*".into()],
            credentials: false,
            max_age: 7200,
            overrides: Default::default(),
        }
    }

    fn headers_for(policy: &CorsPolicy, origin: Option<&str>) -> HeaderMap {
        let origin = origin.map(|o| HeaderValue::from_str(o).unwrap());
        let mut headers = HeaderMap::new();
        policy.apply(origin.as_ref(), &mut headers);
        headers
    }

    #[test]
    fn defaults_allow_any_origin_without_vary() {
        let policy = policy_for("files", None, &settings()).unwrap();
        let headers = headers_for(&policy, Some("https://a.example"));
        assert_eq!(headers["access-control-allow-origin"], "*");
        assert_eq!(headers["access-control-allow-methods"], "GET, OPTIONS");
        assert_eq!(headers["access-control-allow-headers"], "Content-Type");
        assert_eq!(headers["access-control-max-age"], "7200");
        assert!(!headers.contains_key("vary"));
        assert!(!headers.contains_key("access-control-allow-credentials"));
    }

    #[test]
    fn an_origin_list_is_enforced_and_varies() {
        let mut settings = settings();
        settings.origins = vec!["https://a.example".into()];
        let policy = policy_for("files", None, &settings).unwrap();
        let allowed = headers_for(&policy, Some("https://a.example"));
        assert_eq!(allowed["access-control-allow-origin"], "https://a.example");
        assert_eq!(allowed["vary"], "Origin");
        let refused = headers_for(&policy, Some("https://evil.example"));
        assert!(!refused.contains_key("access-control-allow-origin"));
        assert_eq!(refused["vary"], "Origin");
    }

    #[test]
    fn credentials_echo_the_origin_never_a_wildcard() {
        let declared =
            CorsDefaults { methods: vec!["POST".into()], headers: vec!["Authorization".into()], credentials: true };
        let policy = policy_for("bosh", Some(&declared), &settings()).unwrap();
        let headers = headers_for(&policy, Some("https://a.example"));
        assert_eq!(headers["access-control-allow-origin"], "https://a.example");
        assert_eq!(headers["access-control-allow-credentials"], "true");
        assert_eq!(headers["access-control-allow-methods"], "GET, OPTIONS, POST");
        assert_eq!(headers["access-control-allow-headers"], "Content-Type, Authorization");
        let no_origin = headers_for(&policy, None);
        assert!(!no_origin.contains_key("access-control-allow-credentials"));
        assert!(!no_origin.contains_key("access-control-allow-origin"), "never `*` with credentials on");
        assert_eq!(no_origin["vary"], "Origin");
    }

    #[test]
    fn overrides_replace_module_defaults_and_can_disable() {
        let mut settings = settings();
        let declared = CorsDefaults { methods: vec!["PUT".into()], headers: vec![], credentials: true };
        settings.overrides.insert(
            "share".into(),
            CorsOverride {
                enabled: Some(true),
                headers: vec![("X-Custom".into(), true), ("Content-Type".into(), false)],
                ..Default::default()
            },
        );
        settings.overrides.insert("bosh".into(), CorsOverride { enabled: Some(false), ..Default::default() });
        let policy = policy_for("share", Some(&declared), &settings).unwrap();
        let headers = headers_for(&policy, Some("https://a.example"));
        assert_eq!(headers["access-control-allow-headers"], "X-Custom");
        assert_eq!(headers["access-control-allow-methods"], "GET, OPTIONS");
        assert!(!headers.contains_key("access-control-allow-credentials"));
        assert!(policy_for("bosh", None, &settings).is_none());
        settings.enabled = false;
        assert!(policy_for("files", None, &settings).is_none());
    }
}
