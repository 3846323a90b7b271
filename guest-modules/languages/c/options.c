// http_options in C: declares metadata (default path /opts, served without a trailing
// slash, one config option `greeting`) and answers with the options it can see:
// `greeting` as declared, and `secret`, undeclared, so it reads as unset.
#include "respond.h"

// The option's JSON text as a malloc'd C string, or "unset".
static char *option(const char *name) {
  canto_string_t key, value;
  canto_string_set(&key, name);
  if (canto_http_context_config_option(&key, &value)) return take_cstr(&value);
  char *unset = malloc(6);
  memcpy(unset, "unset", 6);
  return unset;
}

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
  wasi_http_types_incoming_request_drop_own(request);
  canto_string_t msg;
  canto_string_set(&msg, "options requested");
  canto_http_log_log(CANTO_HTTP_LOG_LEVEL_INFO, &msg);

  char *greeting = option("greeting"), *secret = option("secret");
  // No printf: stdio would pull in WASI preview-1 imports (fd_write, ...).
  size_t len = strlen(greeting) + strlen(secret) + 18;
  char *body = malloc(len + 1);
  strcpy(body, "greeting=");
  strcat(body, greeting);
  strcat(body, "\nsecret=");
  strcat(body, secret);
  strcat(body, "\n");
  respond(response_out, 200, "text/plain", (const uint8_t *)body, strlen(body));
  free(body);
  free(greeting);
  free(secret);
}

// The bindings free what this returns after the call (post-return): allocate it all.
void exports_canto_http_metadata_describe(exports_canto_http_metadata_module_info_t *ret) {
  ret->default_path.is_some = true;
  canto_string_dup(&ret->default_path.val, "/opts");
  ret->cors.is_some = false;
  ret->options.len = 1;
  ret->options.ptr = malloc(sizeof(canto_string_t));
  canto_string_dup(&ret->options.ptr[0], "greeting");
  ret->serve_bare_path = true;
  ret->streaming_uploads = false;
}
