// MessageParser: finds HTTP/1.1 heads and message boundaries in one direction of one
// connection (client->server requests or server->client responses). It never copies or
// rewrites body bytes: the caller forwards them raw (chunked framing included) and only
// needs to know where each message ends. See docs/adr/0001-llhttp-message-boundaries.md.
//
// Contract of parse(data):
//   It consumes a prefix of data and returns one Step; the caller drops `consumed` bytes and
//   calls parse() again with the rest (possibly empty) until it gets kNeedMore, kUpgrade or
//   kError. Each message yields, in order:
//     kHead        the head is complete; `consumed` is the tail of the head that was in data.
//                  Head bytes are never handed back for forwarding: the caller serializes
//                  request()/response() (after any rewrite) instead.
//     kBody        `consumed` raw body bytes (chunk framing included) to forward as they are.
//     kMessageEnd  the message is complete after `consumed` further raw body bytes to forward
//                  (0 for a message without a body or with an empty remainder). The parser is
//                  ready for the next message (pipelining) unless keep_alive() is false.
//   kNeedMore      always consumed == data.size(): every byte was taken (a partial head is kept
//                  inside the parser), call again when more arrives.
//   kUpgrade       after the kMessageEnd of a message that switches protocols (request with
//                  Upgrade + Connection: upgrade, CONNECT, 101 response, 2xx to CONNECT):
//                  consumed == 0 and every later byte is raw, in both directions. Sticky.
//   kError         consumed == 0; error_status() and error() say what and where. Sticky.
//   A request parser reports kUpgrade after an upgrade request; when the response is not a
//   101 (the server declined), close the connection after forwarding that response.
//   After a message whose keep_alive() is false, parse() discards further bytes (kNeedMore):
//   the connection is to be closed once that message has been forwarded.
//
// Beyond llhttp (see the ADR): requests with two Host fields, or with an absolute-form target
// that names no usable host (see absolute_form_of() in head.hpp), are errors; chunk data must
// be followed by CRLF; a chunked message's Transfer-Encoding fields are reported as one
// normalised field ("identity, chunked" -> "chunked"), so a serialized head says what we read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/head.hpp"

namespace tunnel::http {

class MessageParser {
 public:
  enum class Kind { kRequest, kResponse };
  struct Limits {
    size_t max_head_bytes = 64 * 1024;  // counted across parse() calls, from the message start
    size_t max_headers = 100;
  };
  struct Step {
    enum Type { kNeedMore, kHead, kBody, kMessageEnd, kUpgrade, kError } type;
    size_t consumed;
  };

  // Two overloads rather than `Limits limits = {}`: GCC cannot use a nested struct's default
  // member initializers in a default argument inside the enclosing class.
  explicit MessageParser(Kind kind);
  MessageParser(Kind kind, Limits limits);
  ~MessageParser();
  MessageParser(MessageParser&&) noexcept;
  MessageParser& operator=(MessageParser&&) noexcept;

  // Starts over as a new parser of the same kind, limits and kept headers, for the next
  // connection or exchange, whatever state this one was in (mid-message, failed, upgraded).
  // Keeps the memory of its buffers: a relay reuses one parser rather than allocate one per
  // message.
  void reset();

  // Response parsers: queues the method of a request forwarded on this connection, in order
  // (call once per request, pipelined ones included). Each final (non-1xx) response takes the
  // oldest: HEAD means no body whatever the head says; CONNECT with 2xx means raw bytes follow.
  // `upgrade`: the request asked to switch protocols (Upgrade + Connection: upgrade); a 101
  // answering a request that did not is an error (502). With nothing queued a response is read
  // as the answer to a GET, and a 101 is taken as it comes.
  void expect_response_to(std::string_view method, bool upgrade = false);

  // From the next message on, request()/response() keep only the header fields named here
  // (case-insensitive); the others are still checked and counted against the limits, but not
  // copied. {} keeps none. Framing (keep_alive(), content_length(), chunked(), is_upgrade())
  // does not depend on what is kept; expects_continue() needs "Expect" in the list. For a relay
  // that only needs a status or a field or two of a head it forwards as bytes.
  void keep_only_headers(std::vector<std::string> names);

  Step parse(std::span<const char> data);
  Step parse(std::string_view data) {
    return parse(std::span<const char>(data.data(), data.size()));
  }
  Step parse(const std::string& data) { return parse(std::string_view(data)); }
  // At EOF from the peer: kMessageEnd (consumed 0) ends a close-delimited response body;
  // kNeedMore when no message was in progress (a clean close, or after kUpgrade); kError when
  // the connection closed in the middle of a head or a body. Afterwards parse() reports kError
  // (kUpgrade if the connection had been upgraded).
  Step finish();

  // The last head; valid from kHead until the next message begins.
  const RequestHead& request() const;
  const ResponseHead& response() const;
  // The same, for a proxy that rewrites the head in place before forwarding it (no copy).
  RequestHead& request();
  ResponseHead& response();

  // About the current message, valid from its kHead:
  bool keep_alive() const;  // HTTP/1.1 unless Connection: close; HTTP/1.0 only with keep-alive
  bool body_is_close_delimited() const;  // response body ends at EOF (see finish())
  // Body bytes that follow the head when known in advance: the Content-Length, or 0 for a
  // message without a body (request without framing headers, 1xx/204/304, response to HEAD,
  // upgrade without body). nullopt for chunked and close-delimited bodies.
  std::optional<uint64_t> content_length() const;
  bool chunked() const;
  // Body bytes follow the head: chunked, or a Content-Length above 0. (A close-delimited
  // response body is not counted here: see body_is_close_delimited().)
  bool has_body() const { return chunked() || content_length().value_or(0) > 0; }
  bool expects_continue() const;  // request with Expect: 100-continue
  bool is_interim() const;        // 1xx response other than 101: a final response follows
  bool is_upgrade() const;        // the connection becomes raw after this message

  // After kError: the status to answer with (requests: 400, 431 head or header count over the
  // limit, 501 unsupported Transfer-Encoding, 505 HTTP version; responses: always 502) and a
  // message naming the problem and where, e.g.
  // "invalid header token at byte 57: Invalid header value char" (bytes counted from the
  // start of the message).
  int error_status() const;
  const std::string& error() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tunnel::http
