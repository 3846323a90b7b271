//! Outgoing HTTP from modules: refused with `HttpRequestDenied` before any
//! connection, unless the operator granted the module the destination host
//! (`http_module_grants = { app = { outgoing = { "api.example.com" } } }`).

use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

pub struct OutboundPolicy {
    /// Host names (lowercase) the module may send requests to.
    allowed: Arc<[String]>,
}

impl OutboundPolicy {
    pub fn new(allowed: Arc<[String]>) -> Self {
        Self { allowed }
    }
}

type SendResult = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let host = request.uri().host().map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase());
        let granted = host.is_some_and(|host| self.allowed.contains(&host));
        Box::new(async move {
            if !granted {
                return Err(Error::HttpRequestDenied);
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}
