// Recording of a tunnel's HTTP exchanges to files (issue 20;
// docs/inspector.md#recording-on-the-core).
//
// RecordingFilter (last in a recorded tunnel's chain) copies what it sees of an exchange: the
// request head as the client sent it (redacted fields masked at once), the bodies up to the
// rule's body_cap (raw, chunk framing included), the final response head as the client got it.
// At completion it hands the copy to the Recorder's bounded queue and returns: the writer
// thread removes the framing, encodes the line (JSON, bodies base64) and appends it to
// <data_dir>/recordings/<host>/current.jsonl, rotating and pruning files. When the queue is
// full the exchange is skipped and counted: the data path never waits for the disk. Tunnels
// without a rule have no filter and pay nothing.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/time_source.hpp"
#include "core/control/config.hpp"
#include "core/edge/http_pipeline.hpp"
#include "observability/metrics.hpp"

namespace tunnel::core {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// One recorded body.
struct RecordedBody {
  std::string data;        // at most body_cap bytes, chunk framing removed
  std::uint64_t size = 0;  // bytes relayed (framing included)
  bool cut = false;        // data holds less than the body
};

// One line of a recording file.
struct RecordedExchange {
  SystemTime time{};   // when the request head was complete
  std::string tunnel;  // the tunnel's hostname
  std::string id;      // X-Request-Id
  std::string client;  // "ip:port"
  std::string method;
  std::string target;
  HeaderList request_headers;  // as the client sent them, redacted ones masked
  RecordedBody request_body;
  int status = 0;  // what the client got (499: it left first)
  std::string reason;
  HeaderList response_headers;  // empty when the core answered itself
  RecordedBody response_body;
  double duration_ms = 0;  // request head to the end of the exchange
  bool complete = false;   // the response reached its end
  bool upgraded = false;   // 101: body holds the first bytes the app sent after the head
};

// The line (JSON, one object, ending with '\n').
std::string to_json_line(const RecordedExchange& exchange);
// One line back (without its '\n'); the error names the field that is wrong.
common::Result<RecordedExchange> parse_record_line(std::string_view line);

// The value recorded for header `name` under a redaction list: "[redacted]" or the value.
inline constexpr std::string_view kRedacted = "[redacted]";
bool redacted(std::string_view name, const std::vector<std::string>& redact);

// The files of one tunnel: current.jsonl, rotated to <UTC time>-<seq>.jsonl at the rule's
// size or age; rotated files past max_files or older than max_age are deleted. Used by the
// writer thread only (and by tests, synchronously). Files open with O_NONBLOCK: a FIFO or a
// stuck device makes write() return EAGAIN, and the writer waits at most `stall` per line
// (then drops the line and counts it), so the thread can always be stopped.
class RecordingFiles {
 public:
  RecordingFiles(std::string dir, const RecordingRule& rule, const TimeSource& time);
  ~RecordingFiles();
  RecordingFiles(const RecordingFiles&) = delete;
  RecordingFiles& operator=(const RecordingFiles&) = delete;

  // Appends one line (rotating first when due). The error says what failed (then the line is
  // lost; the next write tries again).
  common::Status write(std::string_view line, std::chrono::milliseconds stall);
  // Rotates when the current file is due by age, and prunes old files (the writer calls it
  // when idle too, so a quiet tunnel's files still age out).
  void tick();
  const std::string& dir() const { return dir_; }

 private:
  common::Status open_current();
  void rotate();
  void prune();

  std::string dir_;
  RecordingRule rule_;
  const TimeSource& time_;
  int fd_ = -1;
  std::uint64_t size_ = 0;     // bytes in current.jsonl
  MonotonicTime opened_at_{};  // when current.jsonl got its first line from us
  std::uint64_t seq_ = 0;      // makes rotated names unique within one second
};

// What the filter hands to the Recorder: the exchange, bodies still raw.
struct PendingExchange {
  RecordedExchange record;
  bool request_chunked = false;
  bool response_chunked = false;
  std::size_t body_cap = 0;
  std::size_t bytes() const {
    return record.request_body.data.size() + record.response_body.data.size() + 1024;
  }
};

class Recorder;

// One recorded tunnel (hostname): its files and its counters. Shared by the tunnel's filters
// (several agents may serve one hostname) and the Recorder.
class TunnelRecording {
 public:
  TunnelRecording(std::string host, std::string dir, const RecordingRule& rule,
                  const TimeSource& time, observability::Counter& written,
                  observability::Counter& bytes, observability::Counter& skipped);
  const std::string& host() const { return host_; }
  const RecordingRule& rule() const { return rule_; }

  observability::Counter& written;
  observability::Counter& bytes;
  observability::Counter& skipped;

 private:
  friend class Recorder;
  std::string host_;
  RecordingRule rule_;
  RecordingFiles files_;  // the writer thread's
};

// The queue and the writer thread of every recorded tunnel of a core.
class Recorder {
 public:
  struct Options {
    std::string root;  // <data_dir>/recordings
    std::size_t queue_entries = 1024;
    std::size_t queue_bytes = 64ull * 1024 * 1024;
    std::size_t max_tunnel_series = 100;   // tunnels with their own metric series
    std::chrono::milliseconds stall{200};  // longest wait for one line on a stuck file
  };
  // `start`: run the writer thread (tests drive write_pending() by hand instead).
  Recorder(Options options, const TimeSource& time, observability::Registry& metrics,
           bool start = true);
  ~Recorder();  // writes what is queued (each line waits at most `stall`), then stops
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // The recording of `host` under `rule` (one per host for the Recorder's life).
  std::shared_ptr<TunnelRecording> tunnel(const std::string& host, const RecordingRule& rule);

  // Queues one exchange; false (and counted as skipped) when the queue is full. Never waits
  // for the writer beyond a short lock.
  bool submit(const std::shared_ptr<TunnelRecording>& tunnel, PendingExchange&& exchange);

  const TimeSource& time() const { return time_; }

  // Writes everything queued now, on the calling thread (tests; the writer thread's body).
  std::size_t write_pending();

 private:
  struct Item {
    std::shared_ptr<TunnelRecording> tunnel;
    PendingExchange exchange;
  };
  void run();
  void write_one(Item& item);

  Options options_;
  const TimeSource& time_;
  observability::Registry& metrics_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Item> queue_;
  std::size_t queued_bytes_ = 0;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<TunnelRecording>, std::less<>> tunnels_;
  std::thread thread_;
};

// Dechunks, cuts and encodes one exchange (the writer's work, pure).
std::string encode_pending(PendingExchange& exchange);

// The filter of a recorded tunnel (last in its chain).
class RecordingFilter final : public HttpFilter {
 public:
  RecordingFilter(std::shared_ptr<Recorder> recorder, std::shared_ptr<TunnelRecording> tunnel)
      : recorder_(std::move(recorder)), tunnel_(std::move(tunnel)) {}
  std::string_view name() const override { return "recording"; }
  unsigned hooks() const override {
    return hook::kRequestHead | hook::kRequestBody | hook::kResponseBody | hook::kComplete;
  }
  FilterVerdict on_request_head(FilterRequest& request) override;
  FilterVerdict on_request_body(FilterRequest& request, std::span<const char> bytes) override;
  void on_response_body(FilterRequest& request, std::span<const char> bytes) override;
  void on_complete(const FilterRequest& request, const ExchangeSummary& summary) override;

 private:
  std::shared_ptr<Recorder> recorder_;
  std::shared_ptr<TunnelRecording> tunnel_;
};

}  // namespace tunnel::core
