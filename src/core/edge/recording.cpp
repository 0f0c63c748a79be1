#include "core/edge/recording.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/base64.hpp"
#include "common/json.hpp"
#include "http/chunked.hpp"
#include "http/head.hpp"

namespace tunnel::core {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr std::string_view kCurrent = "current.jsonl";

// "2026-12-07T21:40:00.123456Z"
std::string iso_time(SystemTime t) {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(micros / 1'000'000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(micros % 1'000'000));
  return buf;
}

bool parse_iso_time(const std::string& text, SystemTime& out) {
  std::tm tm{};
  int micros = 0;
  char z = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%6d%c", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &micros, &z) != 8 ||
      z != 'Z') {
    return false;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const std::time_t seconds = timegm(&tm);
  out = SystemTime(std::chrono::duration_cast<SystemTime::duration>(
      std::chrono::seconds(seconds) + std::chrono::microseconds(micros)));
  return true;
}

// "20261207T214000Z": the name of a file rotated at `t` (sorts by time).
std::string file_stamp(SystemTime t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

bool parse_file_stamp(std::string_view name, SystemTime& out) {
  std::tm tm{};
  if (name.size() < 16 ||
      std::sscanf(std::string(name.substr(0, 16)).c_str(), "%4d%2d%2dT%2d%2d%2dZ", &tm.tm_year,
                  &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) {
    return false;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  out = std::chrono::system_clock::from_time_t(timegm(&tm));
  return true;
}

json headers_json(const HeaderList& headers) {
  json out = json::array();
  for (const auto& [name, value] : headers) out.push_back(json::array({name, value}));
  return out;
}

json body_json(const RecordedBody& body) {
  return {{"data", common::base64_encode(body.data)}, {"size", body.size}, {"cut", body.cut}};
}

// The field `key` of `object` as T, or an error naming it.
template <typename T>
common::Status get(const json& object, const char* key, T& out, const std::string& where = "") {
  const auto it = object.find(key);
  const std::string name = where.empty() ? std::string(key) : where + "." + key;
  if (it == object.end()) return common::fail("\"" + name + "\" is missing");
  try {
    out = it->get<T>();
  } catch (const json::exception&) {
    return common::fail("\"" + name + "\" has the wrong type");
  }
  return common::success();
}

common::Status read_headers(const json& object, const char* key, HeaderList& out,
                            const std::string& where) {
  const auto it = object.find(key);
  const std::string name = where + "." + key;
  if (it == object.end()) return common::fail("\"" + name + "\" is missing");
  if (!it->is_array()) return common::fail("\"" + name + "\" is not a list");
  for (const auto& pair : *it) {
    if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() || !pair[1].is_string()) {
      return common::fail("\"" + name + "\" holds something other than [name, value] pairs");
    }
    out.emplace_back(pair[0].get<std::string>(), pair[1].get<std::string>());
  }
  return common::success();
}

common::Status read_body(const json& object, const char* key, RecordedBody& out,
                         const std::string& where) {
  const auto it = object.find(key);
  const std::string name = where + "." + key;
  if (it == object.end()) return common::fail("\"" + name + "\" is missing");
  if (!it->is_object()) return common::fail("\"" + name + "\" is not an object");
  std::string data;
  if (auto s = get(*it, "data", data, name); !s) return s;
  if (!common::base64_decode(data, out.data)) {
    return common::fail("\"" + name + ".data\" is not base64");
  }
  if (auto s = get(*it, "size", out.size, name); !s) return s;
  if (auto s = get(*it, "cut", out.cut, name); !s) return s;
  return common::success();
}

// Appends up to `cap` bytes of `bytes` to `body`; counts them all.
void add_body(RecordedBody& body, std::span<const char> bytes, std::size_t cap) {
  body.size += bytes.size();
  const std::size_t room = cap > body.data.size() ? cap - body.data.size() : 0;
  const std::size_t take = std::min(room, bytes.size());
  body.data.append(bytes.data(), take);
  if (take < bytes.size()) body.cut = true;
}

// The raw bytes kept of a body: the cap, and room for the framing of a chunked one.
std::size_t raw_cap(std::size_t cap, bool chunked) {
  return chunked ? cap + cap / 4 + 256 : cap;
}

bool is_chunked(const HeaderList& headers) {
  for (const auto& [name, value] : headers) {
    if (http::iequals(name, "Transfer-Encoding") && value.find("chunked") != std::string::npos) {
      return true;
    }
  }
  return false;
}

// The longest response head the filter collects (the core's limit is far below).
constexpr std::size_t kMaxHead = 256 * 1024;

// The recording filter's copy of one exchange.
struct Capture final : FilterState {
  PendingExchange pending;
  std::string head;  // response bytes until the final head is complete
  bool head_done = false;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Reads a serialized response head ("HTTP/1.1 200 OK\r\n...\r\n\r\n") into the record.
void read_response_head(std::string_view head, const std::vector<std::string>& redact,
                        RecordedExchange& record) {
  std::size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  if (line.size() >= 12) {
    int status = 0;
    std::from_chars(line.data() + 9, line.data() + 12, status);
    record.status = status;
    if (line.size() > 13) record.reason = std::string(line.substr(13));
  }
  while (eol != std::string_view::npos) {
    head.remove_prefix(eol + 2);
    eol = head.find("\r\n");
    const std::string_view field = head.substr(0, eol);
    if (field.empty()) break;
    const auto colon = field.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name(trim(field.substr(0, colon)));
    std::string value = redacted(name, redact) ? std::string(kRedacted)
                                               : std::string(trim(field.substr(colon + 1)));
    record.response_headers.emplace_back(std::move(name), std::move(value));
  }
}

}  // namespace

bool redacted(std::string_view name, const std::vector<std::string>& redact) {
  return std::any_of(redact.begin(), redact.end(),
                     [&](const std::string& r) { return http::iequals(r, name); });
}

std::string to_json_line(const RecordedExchange& e) {
  json out = {{"time", iso_time(e.time)},
              {"tunnel", e.tunnel},
              {"id", e.id},
              {"client", e.client},
              {"method", e.method},
              {"target", e.target},
              {"request",
               {{"headers", headers_json(e.request_headers)}, {"body", body_json(e.request_body)}}},
              {"status", e.status},
              {"response",
               {{"reason", e.reason},
                {"headers", headers_json(e.response_headers)},
                {"body", body_json(e.response_body)}}},
              {"duration_ms", e.duration_ms},
              {"complete", e.complete},
              {"upgraded", e.upgraded}};
  std::string line = out.dump(-1, ' ', false, json::error_handler_t::replace);
  line += '\n';
  return line;
}

common::Result<RecordedExchange> parse_record_line(std::string_view line) {
  const auto parsed = common::parse_json_unique_keys(line);
  if (parsed.value.is_discarded()) {
    return common::fail(parsed.duplicate.empty() ? "not a JSON object"
                                                 : "repeats the key \"" + parsed.duplicate + "\"");
  }
  const json& j = parsed.value;
  if (!j.is_object()) return common::fail("not a JSON object");
  RecordedExchange e;
  std::string time;
  if (auto s = get(j, "time", time); !s) return std::move(s).error();
  if (!parse_iso_time(time, e.time)) return common::fail("\"time\" is not a UTC time");
  for (const auto& [key, out] :
       {std::pair{"tunnel", &e.tunnel}, std::pair{"id", &e.id}, std::pair{"client", &e.client},
        std::pair{"method", &e.method}, std::pair{"target", &e.target}}) {
    if (auto s = get(j, key, *out); !s) return std::move(s).error();
  }
  if (e.method.empty()) return common::fail("\"method\" is empty");
  if (e.target.empty()) return common::fail("\"target\" is empty");
  if (auto s = get(j, "status", e.status); !s) return std::move(s).error();
  if (auto s = get(j, "duration_ms", e.duration_ms); !s) return std::move(s).error();
  if (auto s = get(j, "complete", e.complete); !s) return std::move(s).error();
  if (j.contains("upgraded")) {
    if (auto s = get(j, "upgraded", e.upgraded); !s) return std::move(s).error();
  }
  const auto request = j.find("request");
  if (request == j.end() || !request->is_object()) {
    return common::fail("\"request\" is missing or not an object");
  }
  if (auto s = read_headers(*request, "headers", e.request_headers, "request"); !s) {
    return std::move(s).error();
  }
  if (auto s = read_body(*request, "body", e.request_body, "request"); !s) {
    return std::move(s).error();
  }
  const auto response = j.find("response");
  if (response == j.end() || !response->is_object()) {
    return common::fail("\"response\" is missing or not an object");
  }
  if (auto s = get(*response, "reason", e.reason, "response"); !s) return std::move(s).error();
  if (auto s = read_headers(*response, "headers", e.response_headers, "response"); !s) {
    return std::move(s).error();
  }
  if (auto s = read_body(*response, "body", e.response_body, "response"); !s) {
    return std::move(s).error();
  }
  return e;
}

// ---- files

RecordingFiles::RecordingFiles(std::string dir, const RecordingRule& rule, const TimeSource& time)
    : dir_(std::move(dir)), rule_(rule), time_(time) {}

RecordingFiles::~RecordingFiles() {
  if (fd_ >= 0) ::close(fd_);
}

common::Status RecordingFiles::open_current() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return common::fail("cannot create " + dir_ + ": " + ec.message());
  const std::string path = dir_ + "/" + std::string(kCurrent);
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0640);
  if (fd_ < 0) return common::fail("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  size_ =
      ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) ? static_cast<std::uint64_t>(st.st_size) : 0;
  opened_at_ = time_.monotonic_time();
  return common::success();
}

void RecordingFiles::rotate() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  const std::string stamp = file_stamp(time_.system_time());
  std::string target;
  std::error_code ec;
  do {
    char seq[32];
    std::snprintf(seq, sizeof seq, "-%06llu", static_cast<unsigned long long>(++seq_));
    target = dir_ + "/" + stamp + seq + ".jsonl";
  } while (fs::exists(target, ec));
  fs::rename(dir_ + "/" + std::string(kCurrent), target, ec);
  if (ec) spdlog::warn("recording: cannot rotate {}/{}: {}", dir_, kCurrent, ec.message());
  size_ = 0;
  prune();
}

void RecordingFiles::prune() {
  std::error_code ec;
  std::vector<std::string> rotated;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == kCurrent || !name.ends_with(".jsonl")) continue;
    SystemTime t;
    if (parse_file_stamp(name, t)) rotated.push_back(name);
  }
  std::sort(rotated.begin(), rotated.end());  // oldest first
  const SystemTime now = time_.system_time();
  for (std::size_t i = 0; i < rotated.size(); ++i) {
    SystemTime t;
    parse_file_stamp(rotated[i], t);
    const bool too_many = rotated.size() - i > rule_.max_files;
    if (too_many || now - t > rule_.max_age) fs::remove(dir_ + "/" + rotated[i], ec);
  }
}

void RecordingFiles::tick() {
  if (fd_ >= 0 && size_ > 0 && time_.monotonic_time() - opened_at_ >= rule_.max_file_age) {
    rotate();
  } else {
    prune();
  }
}

common::Status RecordingFiles::write(std::string_view line, std::chrono::milliseconds stall) {
  if (fd_ >= 0 && size_ > 0 &&
      (size_ + line.size() > rule_.max_file_size ||
       time_.monotonic_time() - opened_at_ >= rule_.max_file_age)) {
    rotate();
  }
  if (fd_ < 0) {
    if (auto opened = open_current(); !opened) return opened;
  }
  const auto deadline = std::chrono::steady_clock::now() + stall;
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      size_ += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) {
      const std::string why = std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
      return common::fail("cannot write " + dir_ + "/" + std::string(kCurrent) + ": " + why);
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      if (done > 0) {
        // Half a line is in the file: end it so that the next line stands on its own (a reader
        // reports the broken one and goes on).
        static constexpr char kNewline = '\n';
        (void)::write(fd_, &kNewline, 1);
      }
      return common::fail("the file takes no bytes (a full disk, or a pipe nobody reads)");
    }
    pollfd p{fd_, POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
  return common::success();
}

// ---- the recorder

TunnelRecording::TunnelRecording(std::string host, std::string dir, const RecordingRule& rule,
                                 const TimeSource& time, observability::Counter& written_in,
                                 observability::Counter& bytes_in,
                                 observability::Counter& skipped_in)
    : written(written_in),
      bytes(bytes_in),
      skipped(skipped_in),
      host_(std::move(host)),
      rule_(rule),
      files_(std::move(dir), rule, time) {}

Recorder::Recorder(Options options, const TimeSource& time, observability::Registry& metrics,
                   bool start)
    : options_(std::move(options)), time_(time), metrics_(metrics) {
  if (start) thread_ = std::thread([this] { run(); });
}

Recorder::~Recorder() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<TunnelRecording> Recorder::tunnel(const std::string& host,
                                                  const RecordingRule& rule) {
  const std::lock_guard lock(mutex_);
  if (auto it = tunnels_.find(host); it != tunnels_.end()) return it->second;
  const std::string label = tunnels_.size() < options_.max_tunnel_series ? host : "_other";
  const observability::Labels labels{{"tunnel", label}};
  auto recording = std::make_shared<TunnelRecording>(
      host, options_.root + "/" + host, rule, time_,
      metrics_.counter("tunnel_recording_written_total", "Exchanges written to recording files.",
                       labels),
      metrics_.counter("tunnel_recording_bytes_total", "Bytes written to recording files.", labels),
      metrics_.counter("tunnel_recording_skipped_total",
                       "Exchanges not recorded because the writer fell behind (queue full or "
                       "the file took no bytes).",
                       labels));
  tunnels_.emplace(host, recording);
  return recording;
}

bool Recorder::submit(const std::shared_ptr<TunnelRecording>& tunnel, PendingExchange&& exchange) {
  const std::size_t bytes = exchange.bytes();
  {
    const std::lock_guard lock(mutex_);
    if (!stopping_ && queue_.size() < options_.queue_entries &&
        queued_bytes_ + bytes <= options_.queue_bytes) {
      queued_bytes_ += bytes;
      queue_.push_back(Item{tunnel, std::move(exchange)});
      if (queue_.size() == 1) wake_.notify_one();
      return true;
    }
  }
  tunnel->skipped.inc();
  return false;
}

std::string encode_pending(PendingExchange& p) {
  for (auto [body, chunked] : {std::pair{&p.record.request_body, p.request_chunked},
                               std::pair{&p.record.response_body, p.response_chunked}}) {
    if (chunked) body->data = http::dechunk(body->data);
    if (body->data.size() > p.body_cap) {
      body->data.resize(p.body_cap);
      body->cut = true;
    }
  }
  return to_json_line(p.record);
}

void Recorder::write_one(Item& item) {
  TunnelRecording& t = *item.tunnel;
  const std::string line = encode_pending(item.exchange);
  std::chrono::milliseconds stall = options_.stall;
  {
    const std::lock_guard lock(mutex_);
    if (stopping_) stall = std::chrono::milliseconds(0);
  }
  if (auto written = t.files_.write(line, stall); !written) {
    t.skipped.inc();
    spdlog::warn("recording {}: {}", t.host(), written.error().message);
    return;
  }
  t.written.inc();
  t.bytes.inc(line.size());
}

std::size_t Recorder::write_pending() {
  std::deque<Item> batch;
  {
    const std::lock_guard lock(mutex_);
    batch.swap(queue_);
    queued_bytes_ = 0;
  }
  for (Item& item : batch) write_one(item);
  return batch.size();
}

void Recorder::run() {
  for (;;) {
    bool stop = false;
    {
      std::unique_lock lock(mutex_);
      wake_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_ || !queue_.empty(); });
      stop = stopping_;
    }
    if (write_pending() == 0) {
      if (stop) return;
      std::vector<std::shared_ptr<TunnelRecording>> all;
      {
        const std::lock_guard lock(mutex_);
        for (const auto& [host, t] : tunnels_) all.push_back(t);
      }
      for (const auto& t : all) t->files_.tick();
    }
  }
}

// ---- the filter

FilterVerdict RecordingFilter::on_request_head(FilterRequest& request) {
  const RecordingRule& rule = tunnel_->rule();
  auto capture = std::make_unique<Capture>();
  PendingExchange& p = capture->pending;
  RecordedExchange& r = p.record;
  r.time = recorder_->time().system_time();
  r.tunnel = tunnel_->host();
  if (request.request_id != nullptr) r.id = *request.request_id;
  r.client = std::string(request.client_peer);
  r.method = request.head.method;
  r.target = request.head.target;
  r.request_headers.reserve(request.head.headers.size());
  for (const http::Header& h : request.head.headers) {
    r.request_headers.emplace_back(
        h.name, redacted(h.name, rule.redact_headers) ? std::string(kRedacted) : h.value);
  }
  p.request_chunked = is_chunked(r.request_headers);
  p.body_cap = rule.body_cap;
  request.state = std::move(capture);
  return FilterVerdict::next();
}

FilterVerdict RecordingFilter::on_request_body(FilterRequest& request,
                                               std::span<const char> bytes) {
  if (auto* c = dynamic_cast<Capture*>(request.state.get())) {
    add_body(c->pending.record.request_body, bytes,
             raw_cap(c->pending.body_cap, c->pending.request_chunked));
  }
  return FilterVerdict::next();
}

void RecordingFilter::on_response_body(FilterRequest& request, std::span<const char> bytes) {
  auto* c = dynamic_cast<Capture*>(request.state.get());
  if (c == nullptr) return;
  PendingExchange& p = c->pending;
  if (c->head_done) {
    add_body(p.record.response_body, bytes, raw_cap(p.body_cap, p.response_chunked));
    return;
  }
  // The bytes start with the heads the client is sent: interim ones (100, 103) first.
  c->head.append(bytes.data(), bytes.size());
  for (;;) {
    const std::size_t end = c->head.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (c->head.size() > kMaxHead) {
        c->head_done = true;  // not a head we can read: keep the rest out
        c->head.clear();
      }
      return;
    }
    const std::string_view head(c->head.data(), end + 4);
    const bool interim = head.size() > 12 && head[9] == '1' && head.substr(9, 3) != "101";
    if (interim) {
      c->head.erase(0, end + 4);
      continue;
    }
    read_response_head(head, tunnel_->rule().redact_headers, p.record);
    p.response_chunked = is_chunked(p.record.response_headers);
    p.record.upgraded = p.record.status == 101;
    c->head_done = true;
    const std::string rest = c->head.substr(end + 4);
    c->head.clear();
    c->head.shrink_to_fit();
    add_body(p.record.response_body, rest, raw_cap(p.body_cap, p.response_chunked));
    return;
  }
}

void RecordingFilter::on_complete(const FilterRequest& request, const ExchangeSummary& summary) {
  auto* c = dynamic_cast<Capture*>(request.state.get());
  if (c == nullptr) return;  // refused before this filter saw the head
  RecordedExchange& r = c->pending.record;
  r.status = summary.status;
  r.duration_ms = summary.seconds * 1000;
  r.complete = summary.complete;
  recorder_->submit(tunnel_, std::move(c->pending));
}

}  // namespace tunnel::core
