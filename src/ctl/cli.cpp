#include "ctl/cli.hpp"

#include <algorithm>
#include <iostream>

#include "ctl/render.hpp"

namespace tunnel::ctl {
namespace {

using nlohmann::json;

std::string percent_encode(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : s) {
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~' || c == ':') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string target(const std::string& base_path, const Request& r,
                   const std::vector<std::pair<std::string, std::string>>& extra) {
  std::string t = base_path + "/api/v1" + r.path;
  char sep = '?';
  for (const auto* list : {&r.query, &extra}) {
    for (const auto& [name, value] : *list) {
      t += sep + percent_encode(name) + "=" + percent_encode(value);
      sep = '&';
    }
  }
  return t;
}

}  // namespace

int execute(const Invocation& inv, const Send& send, std::string& out, std::string& err) {
  const auto url = parse_url(inv.server);
  if (!url) {
    err += "tunnelctl: " + url.error().message + "\n";
    return kExitUsage;
  }
  const Request& r = inv.request;
  HttpRequest req;
  req.method = r.method;
  if (!inv.key.empty()) req.headers.emplace_back("Authorization", "Bearer " + inv.key);
  if (!r.if_match.empty()) req.headers.emplace_back("If-Match", r.if_match);
  if (r.body) req.body = r.body->dump();

  json items = json::array();
  json next_cursor = nullptr;
  std::optional<std::string> cursor;
  HttpResponse last;
  for (;;) {
    std::vector<std::pair<std::string, std::string>> extra;
    if (r.paginate) {
      std::int64_t page = 1000;
      if (r.limit) page = std::min<std::int64_t>(page, *r.limit - std::ssize(items));
      extra.emplace_back("limit", std::to_string(page));
      if (cursor) extra.emplace_back("cursor", *cursor);
    }
    req.target = target(url.value().base_path, r, extra);
    auto res = send(req);
    if (!res) {
      err += "tunnelctl: cannot reach " + inv.server + ": " + res.error().message + "\n";
      return kExitFailed;
    }
    last = std::move(res.value());
    if (last.status < 200 || last.status > 299) {
      err += render_problem(last.status, last.body, inv.key_source);
      return kExitFailed;
    }
    if (!r.paginate) break;
    json page = json::parse(last.body, nullptr, false);
    if (!page.is_object() || !page.contains("items") || !page.at("items").is_array()) {
      err += "tunnelctl: " + inv.server + " answered " + req.target + " with no list\n";
      return kExitFailed;
    }
    for (auto& item : page.at("items")) items.push_back(std::move(item));
    next_cursor = page.value("next_cursor", json(nullptr));
    if (next_cursor.is_number_integer())
      next_cursor = std::to_string(next_cursor.get<std::int64_t>());
    if (!next_cursor.is_string() || (r.limit && std::ssize(items) >= *r.limit)) break;
    cursor = next_cursor.get<std::string>();
  }

  if (last.status == 204 || last.body.empty()) {
    if (inv.output == Output::table) out += "done (" + std::to_string(last.status) + ")\n";
    return kExitOk;
  }
  json doc;
  if (r.paginate) {
    doc = {{"items", std::move(items)}, {"next_cursor", next_cursor}};
  } else {
    doc = json::parse(last.body, nullptr, false);
    if (doc.is_discarded()) {
      err += "tunnelctl: " + inv.server + " answered with a body that is not JSON\n";
      return kExitFailed;
    }
  }
  if (inv.agent_create) {
    const std::string hint = render_agent_created(doc, inv.agent_server, inv.agent_server_guess);
    if (inv.output == Output::table) {
      out += hint;
      return kExitOk;
    }
    err += hint;  // scripts read the JSON on stdout; people see how to run the agent
  }
  if (inv.output == Output::json) {
    out += r.paginate ? doc.dump(2) + "\n" : last.body + (last.body.ends_with('\n') ? "" : "\n");
  } else {
    out += render_table(inv.kind, doc);
  }
  return kExitOk;
}

int run_cli(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);  // NOLINT: argv is argc long
  auto parsed = parse_command_line(args, process_environment());
  std::cout << parsed.out;
  std::cerr << parsed.err;
  if (!parsed.invocation) return parsed.exit_code;
  const Invocation& inv = *parsed.invocation;
  const auto url = parse_url(inv.server);
  if (url && url.value().tls && inv.insecure) {
    std::cerr << "tunnelctl: warning: --insecure: " << inv.server
              << "'s certificate is not verified; anyone on the path can read the API key\n";
  }
  ClientOptions options;
  options.ca = inv.ca;
  options.insecure = inv.insecure;
  options.timeout =
      std::chrono::milliseconds(static_cast<std::int64_t>(inv.timeout_seconds * 1000));
  HttpClient client(url ? url.value() : Url{}, options);
  std::string out, err;
  const int code = execute(
      inv, [&](const HttpRequest& req) { return client.send(req); }, out, err);
  std::cout << out << std::flush;
  std::cerr << err << std::flush;
  return code;
}

}  // namespace tunnel::ctl
