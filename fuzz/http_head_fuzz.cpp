// Feeds arbitrary bytes, split at a fuzz-chosen point, to a request parser and to a response
// parser. Checks the parse() contract on every step, and that every head that parses
// serializes (after the rewrites a proxy does) to a head that parses again to the same thing.
// Aborts on a broken invariant.
//
// Input layout: byte 0 picks the split point, byte 1 the request method the response answers
// (GET, HEAD, CONNECT), the rest is the stream.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <type_traits>

#include "http/error_page.hpp"
#include "http/host.hpp"
#include "http/message_parser.hpp"

namespace {

using tunnel::http::MessageParser;
using Step = MessageParser::Step;

void check(bool ok) {
  if (!ok) std::abort();
}

template <typename Head>
void check_head_round_trip(MessageParser::Kind kind, const Head& head) {
  const std::string text = head.serialize();
  MessageParser again(kind, {.max_head_bytes = 1 << 20, .max_headers = 100000});
  const Step step = again.parse(text);
  check(step.type == Step::kHead && step.consumed == text.size());
  if constexpr (std::is_same_v<Head, tunnel::http::RequestHead>) {
    check(again.request().serialize() == text);
  } else {
    check(again.response().serialize() == text);
  }
}

void on_head(MessageParser& p, MessageParser::Kind kind) {
  if (kind == MessageParser::Kind::kRequest) {
    tunnel::http::RequestHead head = p.request();
    check(!head.method.empty());
    if (const std::string* host = head.find("Host")) {
      if (auto normalized = tunnel::http::normalize_host(*host)) {
        check(!normalized->empty());
        check(tunnel::http::normalize_host(*normalized) == normalized);
      }
    }
    check_head_round_trip(kind, head);
    head.remove_hop_by_hop(p.is_upgrade());
    head.set("X-Forwarded-For", "192.0.2.1");
    check_head_round_trip(kind, head);
  } else {
    tunnel::http::ResponseHead head = p.response();
    check(head.status >= 100 && head.status <= 999);
    check(!p.is_interim() || head.status / 100 == 1);
    check_head_round_trip(kind, head);
    head.remove_hop_by_hop(p.is_upgrade());
    check_head_round_trip(kind, head);
  }
}

void run(MessageParser::Kind kind, std::string_view input, size_t split, std::string_view method) {
  MessageParser p(kind, {.max_head_bytes = 4096, .max_headers = 32});
  for (int i = 0; i < 4; ++i) p.expect_response_to(method);
  std::string_view pieces[2] = {input.substr(0, split), input.substr(split)};
  for (std::string_view piece : pieces) {
    for (;;) {
      const Step step = p.parse(piece);
      check(step.consumed <= piece.size());
      piece.remove_prefix(step.consumed);
      if (step.type == Step::kHead) {
        on_head(p, kind);
        continue;
      }
      if (step.type == Step::kBody) check(step.consumed > 0);
      if (step.type == Step::kNeedMore) check(piece.empty());
      if (step.type == Step::kError) {
        check(step.consumed == 0 && !p.error().empty());
        check(p.error_status() >= 400 && p.error_status() <= 599);
        const std::string page =
            tunnel::http::error_response(p.error_status(), p.error(), "id", true);
        check(!page.empty());
        return;
      }
      if (step.type == Step::kUpgrade) {
        check(step.consumed == 0);
        return;
      }
      if (step.type == Step::kNeedMore) break;
    }
  }
  const Step end = p.finish();
  check(end.consumed == 0);
  if (end.type == Step::kError) check(!p.error().empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);
  const size_t split = input.empty() ? 0 : data[0] % (input.size() + 1);
  static constexpr std::string_view kMethods[] = {"GET", "HEAD", "CONNECT"};
  const std::string_view method = kMethods[data[1] % 3];
  run(MessageParser::Kind::kRequest, input, split, method);
  run(MessageParser::Kind::kResponse, input, split, method);
  return 0;
}
