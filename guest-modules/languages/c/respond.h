// Helpers shared by the C modules: answer a wasi:http request with a complete body.
// Needs the wit-bindgen C bindings generated with `--rename-world canto` (canto.h).
#ifndef CANTO_RESPOND_H
#define CANTO_RESPOND_H
#include <stdlib.h>
#include <string.h>
#include "canto.h"

// Takes an owned canto_string_t from an import and returns a NUL-terminated copy in
// place (the bindings' strings are not NUL-terminated). Frees the original.
static char *take_cstr(canto_string_t *s) {
  char *c = malloc(s->len + 1);
  memcpy(c, s->ptr, s->len);
  c[s->len] = 0;
  canto_string_free(s);
  return c;
}

static void respond(wasi_http_types_own_response_outparam_t out, uint16_t status,
                    const char *content_type, const uint8_t *body, size_t len) {
  wasi_http_types_own_fields_t headers = wasi_http_types_constructor_fields();
  wasi_http_types_field_name_t name;
  canto_string_set(&name, "content-type");  // borrows the literal, no free
  wasi_http_types_field_value_t value = {(uint8_t *)content_type, strlen(content_type)};
  wasi_http_types_header_error_t herr;
  wasi_http_types_method_fields_append(wasi_http_types_borrow_fields(headers), &name, &value, &herr);

  // The response takes ownership of the headers.
  wasi_http_types_own_outgoing_response_t response = wasi_http_types_constructor_outgoing_response(headers);
  wasi_http_types_method_outgoing_response_set_status_code(
      wasi_http_types_borrow_outgoing_response(response), status);
  wasi_http_types_own_outgoing_body_t outgoing;
  wasi_http_types_method_outgoing_response_body(wasi_http_types_borrow_outgoing_response(response), &outgoing);

  wasi_http_types_result_own_outgoing_response_error_code_t result = {.is_err = false};
  result.val.ok = response;
  wasi_http_types_static_response_outparam_set(out, &result);

  wasi_http_types_own_output_stream_t stream;
  wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(outgoing), &stream);
  wasi_io_streams_borrow_output_stream_t s = wasi_io_streams_borrow_output_stream(stream);
  wasi_io_streams_stream_error_t serr;
  // blocking-write-and-flush takes at most 4096 bytes per call.
  for (size_t off = 0; off < len; off += 4096) {
    canto_list_u8_t chunk = {(uint8_t *)body + off, len - off < 4096 ? len - off : 4096};
    if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(s, &chunk, &serr)) break;
  }
  // The stream is a child of the body: drop it before finishing the body.
  wasi_io_streams_output_stream_drop_own(stream);
  wasi_http_types_error_code_t ferr;
  wasi_http_types_static_outgoing_body_finish(outgoing, NULL, &ferr);
}
#endif
