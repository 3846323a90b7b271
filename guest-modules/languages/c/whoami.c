// http_whoami in C: what the server established about this request, as JSON.
#include "respond.h"

// A growable byte buffer for building the JSON answer.
typedef struct { char *p; size_t len, cap; } buf_t;

static void put(buf_t *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}
static void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }

// Appends "key":"value" with the value escaped as a JSON string.
static void put_field(buf_t *b, const char *key, const uint8_t *v, size_t n) {
  if (b->len > 1) puts_(b, ",");
  puts_(b, "\""); puts_(b, key); puts_(b, "\":\"");
  for (size_t i = 0; i < n; i++) {
    uint8_t c = v[i];
    if (c == '"') puts_(b, "\\\"");
    else if (c == '\\') puts_(b, "\\\\");
    else if (c == '\n') puts_(b, "\\n");
    else if (c == '\r') puts_(b, "\\r");
    else if (c == '\t') puts_(b, "\\t");
    else if (c < 0x20) {
      char esc[6] = {'\\', 'u', '0', '0', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]};
      put(b, esc, 6);
    }
    else put(b, (const char *)&c, 1);
  }
  puts_(b, "\"");
}
// Takes ownership of s.
static void put_string_field(buf_t *b, const char *key, canto_string_t *s) {
  put_field(b, key, s->ptr, s->len);
  canto_string_free(s);
}

static const char *const METHODS[] = {"GET", "HEAD", "POST", "PUT", "DELETE",
                                      "CONNECT", "OPTIONS", "TRACE", "PATCH"};

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
  wasi_http_types_borrow_incoming_request_t req = wasi_http_types_borrow_incoming_request(request);
  canto_string_t s;
  buf_t b = {0};
  puts_(&b, "{");
  // Keys in sorted order, as serde_json (the Rust whoami) writes them.
  canto_http_context_base_path(&s);
  put_string_field(&b, "base_path", &s);
  canto_http_context_base_url(&s);
  put_string_field(&b, "base_url", &s);
  canto_http_context_host(&s);
  put_string_field(&b, "host", &s);
  canto_http_context_client_ip(&s);
  put_string_field(&b, "ip", &s);

  wasi_http_types_method_t method;
  wasi_http_types_method_incoming_request_method(req, &method);
  if (method.tag == WASI_HTTP_TYPES_METHOD_OTHER) {
    put_string_field(&b, "method", &method.val.other);
  } else {
    put_field(&b, "method", (const uint8_t *)METHODS[method.tag], strlen(METHODS[method.tag]));
  }

  // The path without its query string; `/` when the request has none.
  if (wasi_http_types_method_incoming_request_path_with_query(req, &s)) {
    size_t n = 0;
    while (n < s.len && s.ptr[n] != '?') n++;
    put_field(&b, "path", s.ptr, n);
    canto_string_free(&s);
  } else {
    put_field(&b, "path", (const uint8_t *)"/", 1);
  }
  puts_(&b, canto_http_context_secure() ? ",\"secure\":true}" : ",\"secure\":false}");

  wasi_http_types_incoming_request_drop_own(request);
  respond(response_out, 200, "application/json", (const uint8_t *)b.p, b.len);
  free(b.p);
}
