#include "http/message_parser.hpp"

#include <llhttp.h>

#include <algorithm>
#include <array>
#include <string_view>

namespace tunnel::http {
namespace {

// RFC 9110 token characters, the only ones allowed in a field name (a table: this runs for every
// character of every header name).
constexpr std::array<bool, 256> kTokenChars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (const char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

bool is_token_char(char c) {
  return kTokenChars[static_cast<unsigned char>(c)];
}

// What the request that a response answers allows: kUpgrade = it asked to switch protocols.
enum class Expected : uint8_t { kOther, kHead, kConnect, kUpgrade };

enum class Phase {
  kIdle,      // between messages: nothing of the next message seen yet
  kHead,      // inside a head
  kBody,      // head reported; body (possibly empty) until kMessageEnd
  kDiscard,   // after a message that closes the connection
  kUpgraded,  // after a message that switched protocols
  kFailed,
  kFinished,  // after finish()
};

enum class Pause { kNone, kHeadersComplete, kMessageComplete };

// "HPE_INVALID_HEADER_TOKEN" -> "invalid header token".
std::string describe_errno(llhttp_errno_t err) {
  std::string_view name = llhttp_errno_name(err);
  if (name.starts_with("HPE_")) name.remove_prefix(4);
  std::string out;
  for (char c : name) {
    out.push_back(c == '_' ? ' ' : (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c);
  }
  return out;
}

// Trims optional whitespace around a field value.
void trim_value(std::string& v) {
  const auto blank = [](char c) { return c == ' ' || c == '\t'; };
  std::size_t end = v.size();
  while (end > 0 && blank(v[end - 1])) --end;
  v.resize(end);
  std::size_t begin = 0;
  while (begin < v.size() && blank(v[begin])) ++begin;
  if (begin > 0) v.erase(0, begin);
}

// Servers that turn header names into variable names (CGI, WSGI, Rack: HTTP_CONTENT_LENGTH)
// make "Content_Length" and "Content-Length" one field. If such an app framed the body by a
// field we do not read as framing, it would see other message boundaries than we do: returns
// the framing field `name` would become there, or "".
std::string_view framing_field_spelled_with_underscores(std::string_view name) {
  char dashed[17];  // the longer of the two names
  if (name.size() > sizeof dashed || name.find('_') == std::string_view::npos) return {};
  std::replace_copy(name.begin(), name.end(), dashed, '_', '-');
  for (const std::string_view framing : {"Content-Length", "Transfer-Encoding"}) {
    if (iequals(std::string_view(dashed, name.size()), framing)) return framing;
  }
  return {};
}

// One byte as a message can show it: "X", "\\n", "\\x01".
std::string quote_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (c == '\r') return "\"\\r\"";
  if (c == '\n') return "\"\\n\"";
  if (c == '\t') return "\"\\t\"";
  if (u >= 0x20 && u < 0x7f && c != '"' && c != '\\') return std::string("\"") + c + '"';
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string("\"\\x") + kHex[u >> 4] + kHex[u & 0xf] + '"';
}

// A chunked message's Transfer-Encoding as one field with its codings in order, "identity"
// dropped (it means none) and "chunked" spelled in lower case: llhttp reads "identity,
// chunked", "CHUNKED" or two fields as chunked, and a next hop that reads them another way
// would see other message boundaries. Other codings stay, since the body is forwarded coded.
// Only runs for heads that say chunked; the common spelling costs one compare.
void normalize_transfer_encoding(std::vector<Header>& headers) {
  const auto is_te = [](const Header& h) {
    return h.name.size() == 17 && iequals(h.name, "Transfer-Encoding");
  };
  auto first = std::find_if(headers.begin(), headers.end(), is_te);
  if (first == headers.end()) return;  // not kept (keep_only_headers)
  if (first->value == "chunked" && std::find_if(first + 1, headers.end(), is_te) == headers.end()) {
    return;
  }
  std::string codings;
  for (auto it = first; it != headers.end(); ++it) {
    if (!is_te(*it)) continue;
    std::string_view value = it->value;
    while (!value.empty()) {
      const size_t comma = std::min(value.find(','), value.size());
      std::string_view coding = value.substr(0, comma);
      value.remove_prefix(comma == value.size() ? comma : comma + 1);
      while (!coding.empty() && (coding.front() == ' ' || coding.front() == '\t')) {
        coding.remove_prefix(1);
      }
      while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t')) {
        coding.remove_suffix(1);
      }
      if (coding.empty() || iequals(coding, "identity")) continue;
      if (!codings.empty()) codings += ", ";
      codings += iequals(coding, "chunked") ? std::string_view("chunked") : coding;
    }
  }
  first->value = std::move(codings);
  headers.erase(std::remove_if(first + 1, headers.end(), is_te), headers.end());
}

// The target as an error message shows it: at most 100 bytes.
std::string shown_target(std::string_view target) {
  constexpr size_t kShown = 100;
  if (target.size() <= kShown) return std::string(target);
  return std::string(target.substr(0, kShown)) + "...";
}

}  // namespace

struct MessageParser::Impl {
  Kind kind;
  Limits limits;
  llhttp_t p{};
  Phase phase = Phase::kIdle;
  Pause pause = Pause::kNone;

  RequestHead req;
  ResponseHead resp;
  bool in_field = false;
  // keep_only_headers(): the field being read is kept only if its name is in `wanted`.
  bool filter = false;
  std::vector<std::string> wanted;
  bool keeping = true;
  std::string field_name;  // the name of the field being read, when filtering
  size_t header_count = 0;
  size_t head_bytes = 0;     // bytes fed since the last message end while reading a head
  size_t message_bytes = 0;  // bytes of the current message before the current parse() call
  // Responses still expected, oldest at `expected_next` (pipelined requests). A vector and a
  // read index: std::deque allocates when constructed.
  std::vector<Expected> expected;
  size_t expected_next = 0;

  // What the last head or framing byte checked leaves open (see find_bad_line_end()).
  // kDataEnd: chunk data ended, CRLF must follow.
  enum class LineEnd : uint8_t { kNone, kCr, kCrLf, kDataEnd } open_line_end = LineEnd::kNone;
  // While a body is parsed: the buffer given to parse(), and where the chunk framing not yet
  // checked begins in it.
  const char* body_base = nullptr;
  const char* framing_from = nullptr;
  std::string line_error;  // set when line_ends_ok() returns false

  bool keep_alive = true;
  bool close_delimited = false;
  std::optional<uint64_t> content_length;
  bool chunked = false;
  bool expects_continue = false;
  bool interim = false;
  bool upgrade = false;
  bool host_seen = false;  // requests: a Host field was read

  int error_status = 0;
  std::string error;
  // Set by a callback that rejects the message; takes precedence over llhttp's errno.
  int callback_status = 0;
  std::string callback_error;

  Impl(Kind k, Limits l) : kind(k), limits(l) { restart(); }

  // Back to the state of a new parser; strings and vectors keep their room.
  void restart() {
    llhttp_init(&p, kind == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, &settings());
    p.data = this;
    phase = Phase::kIdle;
    pause = Pause::kNone;
    open_line_end = LineEnd::kNone;
    keeping = true;
    head_bytes = 0;
    message_bytes = 0;
    expected.clear();
    expected_next = 0;
    clear_message_flags();
    error_status = 0;
    error.clear();
    callback_status = 0;
    callback_error.clear();
  }

  // What is known about the current message: nothing yet.
  void clear_message_flags() {
    in_field = false;
    header_count = 0;
    keep_alive = true;
    close_delimited = chunked = expects_continue = interim = upgrade = host_seen = false;
    content_length.reset();
  }

  static Impl& self(llhttp_t* parser) { return *static_cast<Impl*>(parser->data); }
  static const llhttp_settings_t& settings();

  int bad_status(int request_status) const { return kind == Kind::kRequest ? request_status : 502; }

  int reject(int request_status, std::string message) {
    callback_status = bad_status(request_status);
    callback_error = std::move(message);
    return -1;
  }

  Step fail(int status, std::string message) {
    phase = Phase::kFailed;
    error_status = status;
    error = std::move(message);
    return {Step::kError, 0};
  }

  // Line ends that llhttp 8.1 lets through and a proxy must not, in head and chunk-framing
  // bytes that llhttp has accepted (it runs in loose mode, the only one that accepts raw UTF-8
  // in a target, as nginx does):
  // - CR followed by anything but LF. llhttp takes CR + any byte as a line end after the status
  //   line, an empty field value, the head, a chunk-size line and chunk data; a next hop that
  //   reads those bytes another way sees other message boundaries.
  // - CRLF followed by a space or tab: obs-fold. llhttp reads framing fields such as
  //   Transfer-Encoding before it undoes the fold, so a next hop could read the unfolded value
  //   another way. Refused, as nginx does (RFC 9112 5.2 allows 400, or 502 for responses).
  //   (llhttp refuses a field line that ends in a bare LF, so a fold always follows a CRLF.)
  // - In chunk framing, which is forwarded raw, an LF without a CR before it (llhttp accepts
  //   one after the last chunk). A head is re-serialized, so a bare LF there does no harm.
  // - After chunk data, anything but CRLF: llhttp skips any two bytes there.
  // Returns the offset in `bytes` of the first wrong byte (what is wrong goes to `problem`), or
  // npos. What the last bytes leave open (a CR, a CRLF) is settled by the next call.
  size_t find_bad_line_end(std::string_view bytes, bool framing, const char*& problem) {
    static constexpr const char* kBareCr = "CR not followed by LF";
    static constexpr const char* kNoCrlfAfterData = "chunk data not followed by CRLF";
    static constexpr const char* kFold =
        "obsolete line folding (a line starting with a space or tab)";
    constexpr size_t kNone = std::string_view::npos;
    const auto blank = [](char c) { return c == ' ' || c == '\t'; };
    const auto bad = [&](const char* what, size_t at) {
      problem = what;
      return at;
    };
    if (bytes.empty()) return kNone;
    LineEnd before = open_line_end;
    open_line_end = LineEnd::kNone;
    if (before == LineEnd::kDataEnd) {
      if (bytes[0] != '\r') return bad(kNoCrlfAfterData, 0);
      before = LineEnd::kNone;  // the CR is checked below like any other
    }
    if (framing) {
      for (size_t lf = bytes.find('\n'); lf != kNone; lf = bytes.find('\n', lf + 1)) {
        if (lf > 0 ? bytes[lf - 1] != '\r' : before != LineEnd::kCr) {
          return bad("LF without CR before it", lf);
        }
      }
    }
    size_t from = 0;  // where the next CR is looked for
    if (before == LineEnd::kCr) {
      if (bytes[0] != '\n') return bad(kBareCr, 0);
      if (bytes.size() == 1) {
        open_line_end = LineEnd::kCrLf;
        return kNone;
      }
      if (blank(bytes[1])) return bad(kFold, 1);
      from = 1;
    } else if (before == LineEnd::kCrLf && blank(bytes[0])) {
      return bad(kFold, 0);
    }
    for (size_t cr = bytes.find('\r', from); cr != kNone; cr = bytes.find('\r', cr + 2)) {
      if (cr + 1 == bytes.size()) {
        open_line_end = LineEnd::kCr;
      } else if (bytes[cr + 1] != '\n') {
        return bad(kBareCr, cr + 1);
      } else if (cr + 2 == bytes.size()) {
        open_line_end = LineEnd::kCrLf;
      } else if (blank(bytes[cr + 2])) {
        return bad(kFold, cr + 2);
      }
    }
    return kNone;
  }

  // Checks bytes [from, to) of the buffer given to parse(), which starts at `base`; when one is
  // wrong, sets line_error and returns false.
  bool line_ends_ok(const char* base, const char* from, const char* to, bool framing) {
    const char* problem = nullptr;
    const size_t bad =
        find_bad_line_end(std::string_view(from, static_cast<size_t>(to - from)), framing, problem);
    if (bad == std::string_view::npos) return true;
    line_error = problem;
    if (line_error.starts_with("chunk data"))
      line_error += " (found " + quote_byte(from[bad]) + ")";
    line_error +=
        " at byte " + std::to_string(message_bytes + static_cast<size_t>(from - base) + bad);
    return false;
  }

  Step fail_line_end() { return fail(bad_status(400), std::move(line_error)); }

  Step fail_from_llhttp(llhttp_errno_t err, const char* base) {
    const char* pos = llhttp_get_error_pos(&p);
    const size_t offset = message_bytes + (pos != nullptr && pos >= base ? pos - base : 0);
    if (callback_status != 0) {
      return fail(callback_status, callback_error + " at byte " + std::to_string(offset));
    }
    if (err == HPE_PAUSED_H2_UPGRADE) {
      return fail(bad_status(505), "HTTP/2 connection preface received; only HTTP/1.x is served");
    }
    const int status = err == HPE_INVALID_TRANSFER_ENCODING ? 501 : 400;
    const char* reason = llhttp_get_error_reason(&p);
    return fail(bad_status(status), describe_errno(err) + " at byte " + std::to_string(offset) +
                                        ": " + (reason != nullptr ? reason : "?"));
  }

  // Called with the parser paused in on_message_complete.
  Step end_message(size_t consumed) {
    llhttp_resume(&p);
    open_line_end = LineEnd::kNone;
    head_bytes = 0;
    message_bytes = 0;
    if (upgrade) {
      phase = Phase::kUpgraded;
    } else if (!keep_alive) {
      phase = Phase::kDiscard;
    } else {
      phase = Phase::kIdle;
    }
    return {Step::kMessageEnd, consumed};
  }

  // Where llhttp stopped in a buffer: its end, or where it paused or failed.
  const char* stop_of(llhttp_errno_t err, std::span<const char> fed) const {
    const char* pos = err == HPE_OK ? nullptr : llhttp_get_error_pos(&p);
    return pos != nullptr ? pos : fed.data() + fed.size();
  }

  Step parse_head(std::span<const char> data) {
    const size_t allowance = limits.max_head_bytes - head_bytes;
    const std::span<const char> fed = data.first(std::min(data.size(), allowance));
    pause = Pause::kNone;
    const llhttp_errno_t err = llhttp_execute(&p, fed.data(), fed.size());
    // Checked first: a bad line end before whatever else went wrong is the first problem.
    const char* stop = stop_of(err, fed);
    if (!line_ends_ok(data.data(), data.data(), stop, false)) return fail_line_end();
    if (err == HPE_PAUSED && pause == Pause::kHeadersComplete) {
      const auto consumed = static_cast<size_t>(stop - data.data());
      llhttp_resume(&p);
      open_line_end = LineEnd::kNone;  // the head's last CRLF: body bytes follow
      head_bytes += consumed;
      message_bytes += consumed;
      phase = Phase::kBody;
      return {Step::kHead, consumed};
    }
    if (err != HPE_OK) return fail_from_llhttp(err, data.data());
    head_bytes += fed.size();
    message_bytes += fed.size();
    if (head_bytes >= limits.max_head_bytes) {
      return fail(bad_status(431), "head larger than " + std::to_string(limits.max_head_bytes) +
                                       " bytes at byte " + std::to_string(message_bytes));
    }
    return {Step::kNeedMore, data.size()};
  }

  Step parse_body(std::span<const char> data) {
    pause = Pause::kNone;
    body_base = framing_from = data.data();  // on_body moves framing_from past chunk data
    line_error.clear();
    const llhttp_errno_t err = llhttp_execute(&p, data.data(), data.size());
    if (!line_error.empty()) return fail_line_end();  // found by on_body
    const char* stop = stop_of(err, data);
    if (chunked && !line_ends_ok(data.data(), framing_from, stop, true)) return fail_line_end();
    if (err == HPE_PAUSED && pause == Pause::kMessageComplete) {
      return end_message(static_cast<size_t>(stop - data.data()));
    }
    if (err != HPE_OK) return fail_from_llhttp(err, data.data());
    message_bytes += data.size();
    if (data.empty()) return {Step::kNeedMore, 0};
    return {Step::kBody, data.size()};
  }

  // --- llhttp callbacks -------------------------------------------------------------------

  template <typename Head>
  static void reset_head(Head& head) {
    constexpr std::size_t kTypicalHeaders = 16;
    head.headers.clear();
    if (head.headers.capacity() < kTypicalHeaders) head.headers.reserve(kTypicalHeaders);
    head.version_major = 1;
    head.version_minor = 1;
  }

  static int on_message_begin(llhttp_t* parser) {
    Impl& s = self(parser);
    s.phase = Phase::kHead;
    // Cleared, not replaced: the header vector keeps its room from one message to the next.
    if (s.kind == Kind::kRequest) {
      reset_head(s.req);
      s.req.method.clear();
      s.req.target.clear();
    } else {
      reset_head(s.resp);
      s.resp.status = 200;
      s.resp.reason.clear();
    }
    s.clear_message_flags();
    return 0;
  }

  static int on_method(llhttp_t* parser, const char* at, size_t len) {
    self(parser).req.method.append(at, len);
    return 0;
  }

  static int on_url(llhttp_t* parser, const char* at, size_t len) {
    self(parser).req.target.append(at, len);
    return 0;
  }

  // A target in absolute-form is routed by its authority (RFC 9112 3.2.2): one that names none
  // is refused here, where the target ends.
  static int on_url_complete(llhttp_t* parser) {
    Impl& s = self(parser);
    const std::string& target = s.req.target;
    if (target.empty() || target[0] == '/' || target == "*") return 0;
    const AbsoluteForm form = s.req.absolute_form();
    if (form.error.empty()) return 0;
    return s.reject(400,
                    "request target \"" + shown_target(target) + "\": " + std::string(form.error));
  }

  static int on_status(llhttp_t* parser, const char* at, size_t len) {
    self(parser).resp.reason.append(at, len);
    return 0;
  }

  std::vector<Header>& headers() { return kind == Kind::kRequest ? req.headers : resp.headers; }

  static int on_header_field(llhttp_t* parser, const char* at, size_t len) {
    Impl& s = self(parser);
    if (!s.in_field) {
      if (s.filter) {
        s.field_name.clear();
      } else {
        s.headers().emplace_back();
      }
      s.in_field = true;
    }
    (s.filter ? s.field_name : s.headers().back().name).append(at, len);
    return 0;
  }

  static int on_header_field_complete(llhttp_t* parser) {
    Impl& s = self(parser);
    // llhttp 8.1 accepts ": value" with an empty name; a proxy must not forward that.
    if (!s.in_field) return s.reject(400, "empty header name");
    const std::string& name = s.filter ? s.field_name : s.headers().back().name;
    if (name.empty()) return s.reject(400, "empty header name");
    // Loose llhttp also lets spaces and other separators into names ("Bad Name: x").
    for (const char c : name) {
      if (!is_token_char(c)) {
        return s.reject(400, "invalid character in header name \"" + name + "\"");
      }
    }
    // RFC 9112 3.2: a request with two Host fields is a 400 (routed by one, the app could
    // read the other).
    if (s.kind == Kind::kRequest && name.size() == 4 && iequals(name, "Host")) {
      if (s.host_seen) return s.reject(400, "two Host fields");
      s.host_seen = true;
    }
    // The lengths of "Content-Length" and "Transfer-Encoding": other names cost one compare.
    if (s.kind == Kind::kRequest && (name.size() == 14 || name.size() == 17)) {
      if (const std::string_view framing = framing_field_spelled_with_underscores(name);
          !framing.empty()) {
        return s.reject(400, "header field \"" + name + "\" could be read as " +
                                 std::string(framing) + " by the app; refused");
      }
    }
    if (s.filter) {
      s.keeping = std::any_of(s.wanted.begin(), s.wanted.end(),
                              [&](const std::string& w) { return iequals(w, name); });
      if (s.keeping) s.headers().push_back(Header{name, {}});
    }
    s.in_field = false;
    if (++s.header_count > s.limits.max_headers) {
      return s.reject(431, "more than " + std::to_string(s.limits.max_headers) + " header fields");
    }
    return 0;
  }

  static int on_header_value(llhttp_t* parser, const char* at, size_t len) {
    Impl& s = self(parser);
    if (s.filter && !s.keeping) return 0;
    if (!s.headers().empty()) s.headers().back().value.append(at, len);
    return 0;
  }

  static int on_header_value_complete(llhttp_t* parser) {
    Impl& s = self(parser);
    if (s.filter && !s.keeping) return 0;
    if (!s.headers().empty()) trim_value(s.headers().back().value);
    return 0;
  }

  static int on_headers_complete(llhttp_t* parser) {
    Impl& s = self(parser);
    if (parser->http_major != 1) {
      return s.reject(505, "unsupported HTTP version " + std::to_string(parser->http_major) + "." +
                               std::to_string(parser->http_minor));
    }
    if (s.kind == Kind::kRequest) {
      s.req.version_major = parser->http_major;
      s.req.version_minor = parser->http_minor;
      s.expects_continue = s.req.has_token("Expect", "100-continue");
      // llhttp would only fail on the first body byte; refuse before the head is reported.
      if ((parser->flags & F_TRANSFER_ENCODING) != 0 && (parser->flags & F_CHUNKED) == 0) {
        return s.reject(501, "unsupported Transfer-Encoding (chunked must be the final coding)");
      }
    } else {
      s.resp.version_major = parser->http_major;
      s.resp.version_minor = parser->http_minor;
      s.resp.status = parser->status_code;
      const int status = parser->status_code;
      if (status < 100) return s.reject(502, "invalid status code " + std::to_string(status));
      s.interim = status / 100 == 1 && status != 101;
      if (status / 100 != 1) {
        Expected to = Expected::kOther;
        if (s.expected_next < s.expected.size()) {
          to = s.expected[s.expected_next++];
          if (s.expected_next == s.expected.size()) {
            s.expected.clear();
            s.expected_next = 0;
          }
        }
        // Mirrors what returning 1 (no body) or 2 (upgrade) from this callback would do;
        // pausing here makes llhttp ignore the return value, so the flags are set directly.
        if (to == Expected::kHead) parser->flags |= F_SKIPBODY;
        if (to == Expected::kConnect && status / 100 == 2) {
          parser->upgrade = 1;
          parser->flags |= F_SKIPBODY;
        }
      } else if (status == 101) {
        // RFC 9110 15.2.2: a server switches only to a protocol the request's Upgrade named. A
        // 101 to any other request would make the response side raw while the request side
        // still reads HTTP, so it is an invalid response (only checked when the request is
        // known: expect_response_to() was called).
        if (s.expected_next < s.expected.size() &&
            s.expected[s.expected_next] != Expected::kUpgrade) {
          return s.reject(502,
                          "101 Switching Protocols answers a request that did not ask to upgrade");
        }
        parser->upgrade = 1;
      }
      // RFC 9112 6.3: never a body, whatever Content-Length or Transfer-Encoding say (llhttp
      // 8.1 would read a body of Content-Length bytes after a 304).
      if (status / 100 == 1 || status == 204 || status == 304) parser->flags |= F_SKIPBODY;
    }
    const bool skip_body = (parser->flags & F_SKIPBODY) != 0;
    s.upgrade = parser->upgrade != 0;
    s.keep_alive = llhttp_should_keep_alive(parser) != 0;
    s.chunked = !skip_body && (parser->flags & F_CHUNKED) != 0;
    // Whether or not a body follows (a 204 or the answer to HEAD may say chunked too): what
    // the head says must not depend on the request it answers.
    if ((parser->flags & F_CHUNKED) != 0) normalize_transfer_encoding(s.headers());
    s.close_delimited = !s.upgrade && llhttp_message_needs_eof(parser) != 0;
    if (s.close_delimited) s.keep_alive = false;
    // Known length: 0 without a body, Content-Length; none for chunked or close-delimited.
    if (!skip_body && (s.chunked || (parser->flags & F_TRANSFER_ENCODING) != 0)) {
      s.content_length.reset();
    } else if (!skip_body && (parser->flags & F_CONTENT_LENGTH) != 0) {
      s.content_length = parser->content_length;
    } else if (skip_body || !s.close_delimited) {
      s.content_length = 0;
    }
    s.pause = Pause::kHeadersComplete;
    return HPE_PAUSED;
  }

  // Only chunked bodies: the bytes between two runs of chunk data are framing, checked here.
  static int on_body(llhttp_t* parser, const char* at, size_t len) {
    Impl& s = self(parser);
    if (!s.chunked) return 0;
    if (!s.line_ends_ok(s.body_base, s.framing_from, at, true)) return -1;
    // After a chunk-size line: data, which may start blank. Once llhttp has counted the
    // chunk's last data byte, the CRLF that must follow is framing again.
    s.open_line_end = parser->content_length == 0 ? LineEnd::kDataEnd : LineEnd::kNone;
    s.framing_from = at + len;
    return 0;
  }

  static int on_message_complete(llhttp_t* parser) {
    self(parser).pause = Pause::kMessageComplete;
    return HPE_PAUSED;
  }
};

const llhttp_settings_t& MessageParser::Impl::settings() {
  static const llhttp_settings_t kSettings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = &Impl::on_message_begin;
    s.on_method = &Impl::on_method;
    s.on_url = &Impl::on_url;
    s.on_url_complete = &Impl::on_url_complete;
    s.on_status = &Impl::on_status;
    s.on_header_field = &Impl::on_header_field;
    s.on_header_field_complete = &Impl::on_header_field_complete;
    s.on_header_value = &Impl::on_header_value;
    s.on_header_value_complete = &Impl::on_header_value_complete;
    s.on_headers_complete = &Impl::on_headers_complete;
    s.on_body = &Impl::on_body;
    s.on_message_complete = &Impl::on_message_complete;
    return s;
  }();
  return kSettings;
}

MessageParser::MessageParser(Kind kind) : MessageParser(kind, Limits{}) {}
MessageParser::MessageParser(Kind kind, Limits limits)
    : impl_(std::make_unique<Impl>(kind, limits)) {}
MessageParser::~MessageParser() = default;
MessageParser::MessageParser(MessageParser&&) noexcept = default;
MessageParser& MessageParser::operator=(MessageParser&&) noexcept = default;

void MessageParser::reset() {
  impl_->restart();
}

void MessageParser::keep_only_headers(std::vector<std::string> names) {
  impl_->filter = true;
  impl_->wanted = std::move(names);
}

void MessageParser::expect_response_to(std::string_view method, bool upgrade) {
  Expected e = upgrade ? Expected::kUpgrade : Expected::kOther;
  if (method == "HEAD") e = Expected::kHead;
  if (method == "CONNECT") e = Expected::kConnect;
  impl_->expected.push_back(e);
}

MessageParser::Step MessageParser::parse(std::span<const char> data) {
  Impl& s = *impl_;
  // llhttp computes positions from the data pointer; never hand it a null one.
  static const char kEmpty[1] = {0};
  if (data.data() == nullptr) data = std::span<const char>(kEmpty, 0);
  switch (s.phase) {
    case Phase::kIdle:
    case Phase::kHead:
      if (data.empty()) return {Step::kNeedMore, 0};
      return s.parse_head(data);
    case Phase::kBody:
      return s.parse_body(data);
    case Phase::kDiscard:
      return {Step::kNeedMore, data.size()};
    case Phase::kUpgraded:
      return {Step::kUpgrade, 0};
    case Phase::kFailed:
      return {Step::kError, 0};
    case Phase::kFinished:
      return s.fail(s.bad_status(400), "data after the end of the stream");
  }
  return {Step::kError, 0};
}

MessageParser::Step MessageParser::finish() {
  Impl& s = *impl_;
  switch (s.phase) {
    case Phase::kIdle:
    case Phase::kDiscard:
    case Phase::kUpgraded:
    case Phase::kFinished:
      s.phase = s.phase == Phase::kUpgraded ? Phase::kUpgraded : Phase::kFinished;
      return {Step::kNeedMore, 0};
    case Phase::kHead:
      return s.fail(s.bad_status(400), "connection closed in the middle of the head after " +
                                           std::to_string(s.message_bytes) + " bytes");
    case Phase::kBody: {
      // A message without a body whose end the caller has not asked for yet ends here too.
      Step step = parse(std::span<const char>());
      if (step.type == Step::kMessageEnd || step.type == Step::kError) {
        if (step.type == Step::kMessageEnd && s.phase != Phase::kUpgraded)
          s.phase = Phase::kFinished;
        return step;
      }
      if (s.close_delimited) {
        s.phase = Phase::kFinished;
        return {Step::kMessageEnd, 0};
      }
      return s.fail(s.bad_status(400), "connection closed in the middle of the body after " +
                                           std::to_string(s.message_bytes) + " bytes");
    }
    case Phase::kFailed:
      return {Step::kError, 0};
  }
  return {Step::kError, 0};
}

const RequestHead& MessageParser::request() const {
  return impl_->req;
}
const ResponseHead& MessageParser::response() const {
  return impl_->resp;
}
RequestHead& MessageParser::request() {
  return impl_->req;
}
ResponseHead& MessageParser::response() {
  return impl_->resp;
}
bool MessageParser::keep_alive() const {
  return impl_->keep_alive;
}
bool MessageParser::body_is_close_delimited() const {
  return impl_->close_delimited;
}
std::optional<uint64_t> MessageParser::content_length() const {
  return impl_->content_length;
}
bool MessageParser::chunked() const {
  return impl_->chunked;
}
bool MessageParser::expects_continue() const {
  return impl_->expects_continue;
}
bool MessageParser::is_interim() const {
  return impl_->interim;
}
bool MessageParser::is_upgrade() const {
  return impl_->upgrade;
}
int MessageParser::error_status() const {
  return impl_->error_status;
}
const std::string& MessageParser::error() const {
  return impl_->error;
}

}  // namespace tunnel::http
