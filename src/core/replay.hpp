// `tunnel-core replay FILE... --to URL`: plays recorded exchanges (core/edge/recording.hpp)
// against a target and reports status, body and header differences and latency percentiles,
// recorded against replayed (docs/inspector.md#replaying-a-recording).
//
// Exit codes: 0 every replayed exchange matched its recording; 1 some differed or failed;
// 2 bad flags, unreadable files, or nothing to replay.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "core/edge/recording.hpp"

namespace tunnel::core {

inline constexpr int kReplayUsage = 2;

// Which recorded exchanges to replay: every condition must hold.
struct ReplayFilter {
  std::string method;               // "" = any; case-insensitive
  std::string path;                 // "" = any; a glob (* ?) if it has one, else a prefix
  std::optional<int> status;        // exact status
  std::optional<int> status_class;  // "5xx" -> 5
  bool matches(const RecordedExchange& e) const;
};

// "method=GET", "path=/api/*", "path=/api", "status=200", "status=5xx"; several --filter
// flags add up (all must hold).
common::Status parse_filter(std::string_view expr, ReplayFilter& into);

// --rate: "original" (the recorded gaps), "N/s" (N a second, 0 < N <= 10000), "max".
struct ReplayRate {
  enum class Kind { kMax, kOriginal, kPerSecond } kind = Kind::kMax;
  double per_second = 0;
};
common::Result<ReplayRate> parse_rate(std::string_view text);

// The recorded exchanges of files and directories (a directory: its rotated files oldest
// first, then current.jsonl). Lines that do not parse are skipped and reported in `bad` as
// "FILE:LINE: what is wrong".
struct LoadedRecording {
  std::vector<RecordedExchange> exchanges;
  std::vector<std::string> bad;
};
common::Result<LoadedRecording> load_recordings(const std::vector<std::string>& paths);

// What came back from the target.
struct ReplayedResponse {
  int status = 0;
  HeaderList headers;
  std::string body;
  double ms = 0;
  std::string error{};  // set: no response (connect, timeout...)
};

// How a replayed exchange differs from its recording ("" = the same). Bodies are compared on
// the recorded bytes (a cut recording compares its prefix); `headers`: fields compared too.
std::vector<std::string> differences(const RecordedExchange& recorded,
                                     const ReplayedResponse& replayed,
                                     const std::vector<std::string>& headers);

// The request to send for a recorded exchange: its method, target, fields (without the ones
// that frame the old body or the old connection, and without redacted ones) and body; Host is
// the target's unless keep_host.
struct ReplayRequest {
  std::string method, target;
  HeaderList headers;
  std::string body;
};
ReplayRequest replay_request(const RecordedExchange& e, bool keep_host);

// The p-th percentile (0..100) of `values` (nearest rank); 0 when empty.
double percentile(std::vector<double> values, double p);

struct ReplayOptions {
  std::vector<std::string> files;
  std::string to;
  std::string rate = "max";
  std::vector<std::string> filters;
  unsigned concurrency = 1;
  std::chrono::milliseconds timeout{10'000};
  std::vector<std::string> compare_headers = {"Content-Type"};
  bool keep_host = false;
  bool json = false;
  bool insecure = false;
  std::string ca;
};

// Runs a replay; the report goes to `out`, problems with the input to `err`.
int run_replay(const ReplayOptions& options, std::ostream& out, std::ostream& err);

}  // namespace tunnel::core
