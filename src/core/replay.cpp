#include "core/replay.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>
#include <thread>

#include "ctl/http_client.hpp"
#include "http/head.hpp"

namespace tunnel::core {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Printable: bytes as they are when printable ASCII, else \xNN.
std::string shown(std::string_view bytes) {
  std::string out;
  for (const char c : bytes) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\' && c != '"') {
      out += c;
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

const std::string* find_header(const HeaderList& headers, std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (http::iequals(n, name)) return &v;
  }
  return nullptr;
}

// Fields not sent again: they framed the recorded body or belonged to the recorded connection.
bool not_replayed(std::string_view name) {
  for (const std::string_view skip :
       {"Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection", "TE",
        "Trailer", "Upgrade", "Expect"}) {
    if (http::iequals(name, skip)) return true;
  }
  return false;
}

bool read_int(std::string_view text, int& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

bool ReplayFilter::matches(const RecordedExchange& e) const {
  if (!method.empty() && !http::iequals(method, e.method)) return false;
  if (status && e.status != *status) return false;
  if (status_class && e.status / 100 != *status_class) return false;
  if (!path.empty()) {
    const std::string p = e.target.substr(0, e.target.find('?'));
    if (path.find_first_of("*?[") != std::string::npos) {
      if (::fnmatch(path.c_str(), p.c_str(), 0) != 0) return false;
    } else if (!p.starts_with(path)) {
      return false;
    }
  }
  return true;
}

common::Status parse_filter(std::string_view expr, ReplayFilter& into) {
  const auto eq = expr.find('=');
  if (eq == std::string_view::npos || eq + 1 == expr.size()) {
    return common::fail("--filter \"" + std::string(expr) +
                        "\": expected method=GET, path=/api/*, status=200 or status=5xx");
  }
  const std::string_view key = expr.substr(0, eq);
  const std::string_view value = expr.substr(eq + 1);
  if (key == "method") {
    into.method = std::string(value);
  } else if (key == "path") {
    if (!value.starts_with('/') && !value.starts_with('*')) {
      return common::fail("--filter \"" + std::string(expr) + "\": a path starts with /");
    }
    into.path = std::string(value);
  } else if (key == "status") {
    int n = 0;
    if (value.size() == 3 && value.substr(1) == "xx" && value[0] >= '1' && value[0] <= '5') {
      into.status_class = value[0] - '0';
    } else if (read_int(value, n) && n >= 100 && n <= 599) {
      into.status = n;
    } else {
      return common::fail("--filter \"" + std::string(expr) +
                          "\": a status is 100 to 599, or 1xx to 5xx");
    }
  } else {
    return common::fail("--filter \"" + std::string(expr) + "\": filter by method, path or status");
  }
  return common::success();
}

common::Result<ReplayRate> parse_rate(std::string_view text) {
  ReplayRate rate;
  if (text == "max") return rate;
  if (text == "original") {
    rate.kind = ReplayRate::Kind::kOriginal;
    return rate;
  }
  if (text.ends_with("/s")) {
    const std::string number(text.substr(0, text.size() - 2));
    char* end = nullptr;
    const double n = std::strtod(number.c_str(), &end);
    if (!number.empty() && end == number.c_str() + number.size() && n > 0 && n <= 10000) {
      rate.kind = ReplayRate::Kind::kPerSecond;
      rate.per_second = n;
      return rate;
    }
  }
  return common::fail("--rate \"" + std::string(text) +
                      "\": expected original, max, or N/s with 0 < N <= 10000");
}

common::Result<LoadedRecording> load_recordings(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<std::string> rotated;
      bool current = false;
      for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name == "current.jsonl") {
          current = true;
        } else if (name.ends_with(".jsonl")) {
          rotated.push_back(name);
        }
      }
      if (ec) return common::fail(path + ": " + ec.message());
      std::sort(rotated.begin(), rotated.end());
      for (const auto& name : rotated) files.push_back((fs::path(path) / name).string());
      if (current) files.push_back(path + "/current.jsonl");
    } else {
      files.push_back(path);
    }
  }
  LoadedRecording out;
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return common::fail(file + ": cannot read it");
    std::size_t number = 0;
    for (std::string line; std::getline(in, line);) {
      ++number;
      if (line.empty()) continue;
      auto parsed = parse_record_line(line);
      if (!parsed) {
        out.bad.push_back(file + ":" + std::to_string(number) + ": " + parsed.error().message);
        continue;
      }
      out.exchanges.push_back(std::move(parsed).value());
    }
  }
  return out;
}

ReplayRequest replay_request(const RecordedExchange& e, bool keep_host) {
  ReplayRequest r{e.method, e.target, {}, e.request_body.data};
  for (const auto& [name, value] : e.request_headers) {
    if (not_replayed(name) || value == kRedacted) continue;
    if (!keep_host && http::iequals(name, "Host")) continue;
    r.headers.emplace_back(name, value);
  }
  if (!r.body.empty() || find_header(e.request_headers, "Content-Length") != nullptr ||
      find_header(e.request_headers, "Transfer-Encoding") != nullptr) {
    r.headers.emplace_back("Content-Length", std::to_string(r.body.size()));
  }
  return r;
}

std::vector<std::string> differences(const RecordedExchange& recorded,
                                     const ReplayedResponse& replayed,
                                     const std::vector<std::string>& headers) {
  std::vector<std::string> out;
  if (!replayed.error.empty()) {
    out.push_back("no response: " + replayed.error);
    return out;
  }
  if (recorded.status != replayed.status) {
    out.push_back("status " + std::to_string(recorded.status) + " -> " +
                  std::to_string(replayed.status));
  }
  const std::string& a = recorded.response_body.data;
  const std::string& b = replayed.body;
  // A cut recording holds a prefix of the body: compare that much.
  const std::string_view other =
      recorded.response_body.cut ? std::string_view(b).substr(0, a.size()) : std::string_view(b);
  if (a != other) {
    std::size_t at = 0;
    while (at < a.size() && at < other.size() && a[at] == other[at]) ++at;
    const std::size_t from = at > 8 ? at - 8 : 0;
    out.push_back("body differs at byte " + std::to_string(at) + ": recorded \"" +
                  shown(std::string_view(a).substr(from, 24)) + "\" (" + std::to_string(a.size()) +
                  " bytes), replayed \"" + shown(other.substr(from, 24)) + "\" (" +
                  std::to_string(b.size()) + " bytes)");
  }
  for (const std::string& name : headers) {
    const std::string* x = find_header(recorded.response_headers, name);
    const std::string* y = find_header(replayed.headers, name);
    if ((x == nullptr) != (y == nullptr) || (x != nullptr && *x != *y)) {
      out.push_back(name + " \"" + (x ? shown(*x) : "(none)") + "\" -> \"" +
                    (y ? shown(*y) : "(none)") + "\"");
    }
  }
  if (!out.empty() && recorded.request_body.cut) {
    out.push_back(
        "(the recorded request body was cut: " + std::to_string(recorded.request_body.data.size()) +
        " of its " + std::to_string(recorded.request_body.size) + " bytes were sent)");
  }
  return out;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto rank =
      static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::clamp<std::size_t>(rank, 1, values.size()) - 1];
}

int run_replay(const ReplayOptions& options, std::ostream& out, std::ostream& err) {
  ReplayFilter filter;
  for (const std::string& expr : options.filters) {
    if (auto parsed = parse_filter(expr, filter); !parsed) {
      err << "tunnel-core replay: " << parsed.error().message << "\n";
      return kReplayUsage;
    }
  }
  const auto rate = parse_rate(options.rate);
  if (!rate) {
    err << "tunnel-core replay: " << rate.error().message << "\n";
    return kReplayUsage;
  }
  auto url = ctl::parse_url(options.to);
  if (!url) {
    err << "tunnel-core replay: --to " << url.error().message << "\n";
    return kReplayUsage;
  }
  if (options.concurrency == 0 || options.concurrency > 256) {
    err << "tunnel-core replay: --concurrency is 1 to 256\n";
    return kReplayUsage;
  }
  auto loaded = load_recordings(options.files);
  if (!loaded) {
    err << "tunnel-core replay: " << loaded.error().message << "\n";
    return kReplayUsage;
  }
  for (const std::string& bad : loaded.value().bad) err << "skipped " << bad << "\n";
  std::vector<const RecordedExchange*> chosen;
  for (const RecordedExchange& e : loaded.value().exchanges) {
    if (filter.matches(e) && !e.upgraded) chosen.push_back(&e);
  }
  if (chosen.empty()) {
    err << "tunnel-core replay: no recorded exchange to replay (" << loaded.value().exchanges.size()
        << " read, none passed the filters)\n";
    return kReplayUsage;
  }

  std::vector<ReplayedResponse> results(chosen.size());
  std::atomic<std::size_t> next{0};
  const auto start = std::chrono::steady_clock::now();
  const SystemTime first = chosen.front()->time;
  const auto due = [&](std::size_t i) {
    switch (rate.value().kind) {
      case ReplayRate::Kind::kOriginal:
        return start + std::max<std::chrono::steady_clock::duration>(
                           std::chrono::steady_clock::duration::zero(),
                           std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               chosen[i]->time - first));
      case ReplayRate::Kind::kPerSecond:
        return start +
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                   std::chrono::duration<double>(static_cast<double>(i) / rate.value().per_second));
      case ReplayRate::Kind::kMax:
        break;
    }
    return start;
  };
  const auto work = [&] {
    ctl::ClientOptions client_options;
    client_options.timeout = options.timeout;
    client_options.insecure = options.insecure;
    client_options.ca = options.ca;
    ctl::HttpClient client(url.value(), client_options);
    for (std::size_t i = next++; i < chosen.size(); i = next++) {
      std::this_thread::sleep_until(due(i));
      ReplayRequest r = replay_request(*chosen[i], options.keep_host);
      ctl::HttpRequest request;
      request.method = std::move(r.method);
      request.target = url.value().base_path + r.target;
      request.headers = std::move(r.headers);
      request.body = std::move(r.body);
      request.raw = true;
      const auto sent = std::chrono::steady_clock::now();
      auto response = client.send(request);
      ReplayedResponse& result = results[i];
      result.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - sent)
                      .count();
      if (!response) {
        result.error = response.error().message;
        continue;
      }
      result.status = response.value().status;
      result.headers = std::move(response.value().headers);
      result.body = std::move(response.value().body);
    }
  };
  std::vector<std::thread> threads;
  const std::size_t n = std::min<std::size_t>(options.concurrency, chosen.size());
  for (std::size_t t = 0; t < n; ++t) threads.emplace_back(work);
  for (auto& t : threads) t.join();

  std::vector<double> recorded_ms, replayed_ms;
  std::size_t matched = 0, failed = 0;
  json mismatches = json::array();
  std::string text_mismatches;
  for (std::size_t i = 0; i < chosen.size(); ++i) {
    const RecordedExchange& e = *chosen[i];
    const ReplayedResponse& r = results[i];
    recorded_ms.push_back(e.duration_ms);
    if (r.error.empty()) replayed_ms.push_back(r.ms);
    const auto diff = differences(e, r, options.compare_headers);
    if (diff.empty()) {
      ++matched;
      continue;
    }
    if (!r.error.empty()) ++failed;
    mismatches.push_back({{"index", i + 1},
                          {"id", e.id},
                          {"method", e.method},
                          {"target", e.target},
                          {"recorded_status", e.status},
                          {"replayed_status", r.status},
                          {"differences", diff}});
    text_mismatches.append("  #").append(std::to_string(i + 1)).append(" ").append(e.method);
    text_mismatches.append(" ").append(shown(e.target)).append(" (id ").append(e.id).append(")\n");
    for (const auto& d : diff) text_mismatches.append("      ").append(d).append("\n");
  }
  const std::size_t differing = chosen.size() - matched;
  if (options.json) {
    json report = {{"replayed", chosen.size()},
                   {"matched", matched},
                   {"differing", differing},
                   {"failed", failed},
                   {"skipped_lines", loaded.value().bad.size()},
                   {"mismatches", mismatches}};
    for (const auto& [name, values] :
         {std::pair{"recorded_ms", &recorded_ms}, std::pair{"replayed_ms", &replayed_ms}}) {
      report[name] = {{"p50", percentile(*values, 50)},
                      {"p95", percentile(*values, 95)},
                      {"p99", percentile(*values, 99)}};
    }
    out << report.dump(2) << "\n";
  } else {
    out << "replayed " << chosen.size() << " exchanges to " << options.to << ": " << matched
        << " matched, " << differing << " differed (" << failed << " without a response)";
    if (!loaded.value().bad.empty()) out << ", " << loaded.value().bad.size() << " lines skipped";
    out << "\n";
    if (!text_mismatches.empty()) out << "differences:\n" << text_mismatches;
    char line[160];
    out << "latency (ms)   recorded   replayed\n";
    for (const double p : {50.0, 95.0, 99.0}) {
      std::snprintf(line, sizeof line, "  p%-10.0f %10.2f %10.2f\n", p, percentile(recorded_ms, p),
                    percentile(replayed_ms, p));
      out << line;
    }
  }
  return differing == 0 ? 0 : 1;
}

}  // namespace tunnel::core
