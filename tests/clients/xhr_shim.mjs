// The XMLHttpRequest that Strophe's BOSH transport needs, over Node's
// fetch: Node has none. `responseXML` is parsed with the DOMParser that
// Strophe's Node build installs (@xmldom/xmldom).
class XMLHttpRequest {
  constructor() {
    this.readyState = 0;
    this.status = 0;
    this.responseText = "";
    this.responseXML = null;
    this.headers = {};
    this.controller = new AbortController();
  }
  open(method, url) {
    this.method = method;
    this.url = url;
    this.readyState = 1;
  }
  setRequestHeader(name, value) {
    this.headers[name] = value;
  }
  overrideMimeType() {}
  getResponseHeader(name) {
    return this.response?.headers.get(name) ?? null;
  }
  getAllResponseHeaders() {
    return [...(this.response?.headers ?? [])].map(([name, value]) => `${name}: ${value}\r\n`).join("");
  }
  send(body) {
    fetch(this.url, { method: this.method, headers: this.headers, body, signal: this.controller.signal })
      .then(async (response) => {
        this.response = response;
        this.status = response.status;
        this.responseText = await response.text();
        try {
          this.responseXML = this.responseText ? new DOMParser().parseFromString(this.responseText, "text/xml") : null;
        } catch {
          this.responseXML = null;
        }
        this.done();
      })
      .catch(() => {
        if (!this.aborted) this.done();
      });
  }
  abort() {
    this.aborted = true;
    this.controller.abort();
  }
  done() {
    this.readyState = 4;
    this.onreadystatechange?.();
  }
}
globalThis.XMLHttpRequest = XMLHttpRequest;
