// HTTP/1.1 message heads: the request line or status line plus the header fields.
//
// A head is what the proxy may rewrite (Host, X-Forwarded-*, hop-by-hop fields) before it
// forwards it; bodies are never parsed into these structures (see message_parser.hpp).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tunnel::http {

struct Header {
  std::string name, value;
};

// Header fields in arrival order. Names compare case-insensitively; values keep their case.
// Values set through set()/append() must not contain CR, LF or NUL: serialize() replaces them
// with spaces so that a careless caller can never inject a header line.
class HeaderFields {
 public:
  std::vector<Header> headers;

  // The first field with this name, or nullptr.
  const std::string* find(std::string_view name) const;
  // Replaces every field with this name by one field (at the place of the first), or appends.
  void set(std::string_view name, std::string_view value);
  void append(std::string_view name, std::string_view value);
  void remove(std::string_view name);
  // True when any field with this name lists `token` in its comma-separated value
  // (case-insensitive), e.g. has_token("Connection", "close").
  bool has_token(std::string_view name, std::string_view token) const;

  // Removes the hop-by-hop fields a proxy must not forward: Connection, Keep-Alive,
  // Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE, Trailer, Upgrade and every
  // field named in Connection. Fields that frame the message (Content-Length,
  // Transfer-Encoding) and Host are never removed, even when Connection names them: the proxy
  // forwards the body bytes raw, so dropping them would desynchronise the next hop.
  // With keep_upgrade and an Upgrade field present, Upgrade is kept and Connection becomes
  // "upgrade" (for forwarding a WebSocket or other upgrade request or a 101 response).
  void remove_hop_by_hop(bool keep_upgrade = false);

 protected:
  void serialize_fields(std::string& out) const;
};

// The parts of a request target in absolute-form (RFC 9112 3.2.2), which a client sends to a
// proxy and a server must accept: "http://a.example:8080/x?y" has the authority
// "a.example:8080" and the path "/x?y". A proxy routes such a request by this authority and
// replaces Host with it, whatever Host said.
struct AbsoluteForm {
  bool absolute = false;       // the target starts with a scheme and ':' (not "/x" nor "*")
  std::string_view authority;  // host[:port] as sent, a valid host (see normalize_host())
  std::string_view path;       // path and query; empty when the target has none ("/" then)
  // Set when the target is absolute-form but names nothing to route to, so the request is a
  // 400: a scheme other than http or https, no "//", an empty or invalid host, or userinfo
  // (RFC 9110 4.2.1 and 4.2.4). Then authority and path are empty.
  std::string_view error;
};

// Splits `target`; views into it. Pure. Not for the authority-form target of CONNECT
// ("a.example:443" would read as scheme "a.example"): see RequestHead::absolute_form().
AbsoluteForm absolute_form_of(std::string_view target);

struct RequestHead : HeaderFields {
  std::string method, target;
  int version_major = 1, version_minor = 1;

  // absolute_form_of(target), except that a CONNECT target is never absolute-form.
  AbsoluteForm absolute_form() const;

  // "METHOD target HTTP/x.y\r\n" + fields + "\r\n".
  std::string serialize() const;
  void serialize_to(std::string& out) const;  // appends the same to `out`
};

struct ResponseHead : HeaderFields {
  int status = 200;
  std::string reason;  // empty: serialize() uses the standard reason phrase
  int version_major = 1, version_minor = 1;

  // "HTTP/x.y status reason\r\n" + fields + "\r\n".
  std::string serialize() const;
  void serialize_to(std::string& out) const;  // appends the same to `out`
};

// Case-insensitive ASCII comparison, as header names and tokens need.
bool iequals(std::string_view a, std::string_view b);

}  // namespace tunnel::http
