#include "observability/metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace tunnel::observability {

struct Registry::Series {
  Labels labels;
  std::string label_text;  // `a="1",b="2"`, escaped, without braces
  std::unique_ptr<Counter> counter;
  std::unique_ptr<Gauge> gauge;
  std::unique_ptr<Histogram> histogram;
  std::function<double()> read;
};

struct Registry::Family {
  std::string name;
  std::string help;
  std::string_view type;  // "counter", "gauge" or "histogram"
  std::vector<std::unique_ptr<Series>> series;
};

namespace {

bool valid_name(std::string_view name, bool allow_colon) {
  if (name.empty()) {
    return false;
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                    (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) {
      return false;
    }
  }
  return true;
}

void append_escaped(std::string& out, std::string_view text, bool escape_quote) {
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && escape_quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

std::string render_labels(const Labels& labels) {
  std::string text;
  for (const auto& [name, value] : labels) {
    if (!text.empty()) {
      text += ',';
    }
    text += name;
    text += "=\"";
    append_escaped(text, value, true);
    text += '"';
  }
  return text;
}

// `name{labels,extra} value\n`, leaving out the braces when there are no labels.
void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   std::string_view labels, std::string_view extra, std::string_view value) {
  out += name;
  out += suffix;
  if (!labels.empty() || !extra.empty()) {
    out += '{';
    out += labels;
    if (!labels.empty() && !extra.empty()) {
      out += ',';
    }
    out += extra;
    out += '}';
  }
  out += ' ';
  out += value;
  out += '\n';
}

}  // namespace

namespace {

std::string format_bound(double v) {
  // Fixed notation, shortest round trip: le="0.0001", not le="1e-04", so that a query can name
  // the bucket as it is written in the docs.
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  return ec == std::errc{} ? std::string(buf, end) : format_value(v);
}

}  // namespace

std::string format_value(double v) {
  if (std::isnan(v)) {
    return "NaN";
  }
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string(buf, end) : "NaN";
}

Histogram::Histogram(std::span<const double> upper_bounds)
    : bounds_(upper_bounds.begin(), upper_bounds.end()),
      counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1])) {
      throw std::invalid_argument("histogram buckets must be finite and strictly increasing");
    }
  }
}

void Histogram::observe(double v) {
  // Bucket i counts bounds_[i-1] < v <= bounds_[i]; NaN lands in +Inf only.
  const std::size_t i =
      std::isnan(v) ? bounds_.size()
                    : static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                               bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::uint64_t Histogram::count() const {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    total += bucket_count(i);
  }
  return total;
}

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Series& Registry::series(std::string_view name, std::string_view help,
                                   std::string_view type, const Labels& labels, bool& created) {
  if (!valid_name(name, true)) {
    throw std::invalid_argument("invalid metric name \"" + std::string(name) + "\"");
  }
  for (const auto& [label, value] : labels) {
    if (!valid_name(label, false) || label.starts_with("__") ||
        (type == "histogram" && label == "le")) {
      throw std::invalid_argument("invalid label name \"" + label + "\" for metric " +
                                  std::string(name));
    }
  }
  Family* family = nullptr;
  for (const auto& f : families_) {
    if (f->name == name) {
      family = f.get();
      break;
    }
  }
  if (family == nullptr) {
    families_.push_back(std::make_unique<Family>());
    family = families_.back().get();
    family->name = std::string(name);
    family->help = std::string(help);
    family->type = type;
  } else if (family->type != type) {
    throw std::invalid_argument("metric " + std::string(name) + " is already a " +
                                std::string(family->type));
  }
  for (const auto& s : family->series) {
    if (s->labels == labels) {
      created = false;
      return *s;
    }
  }
  family->series.push_back(std::make_unique<Series>());
  Series& s = *family->series.back();
  s.labels = labels;
  s.label_text = render_labels(labels);
  created = true;
  return s;
}

Counter& Registry::counter(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  bool created = false;
  Series& s = series(name, help, "counter", labels, created);
  if (created) {
    s.counter = std::make_unique<Counter>();
  } else if (!s.counter) {
    throw std::invalid_argument("metric " + std::string(name) + " is computed by a function");
  }
  return *s.counter;
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  bool created = false;
  Series& s = series(name, help, "gauge", labels, created);
  if (created) {
    s.gauge = std::make_unique<Gauge>();
  } else if (!s.gauge) {
    throw std::invalid_argument("metric " + std::string(name) + " is computed by a function");
  }
  return *s.gauge;
}

Histogram& Registry::histogram(std::string_view name, std::string_view help,
                               std::span<const double> upper_bounds, const Labels& labels) {
  std::lock_guard lock(mutex_);
  bool created = false;
  Series& s = series(name, help, "histogram", labels, created);
  if (created) {
    s.histogram = std::make_unique<Histogram>(upper_bounds);
  }
  return *s.histogram;
}

void Registry::counter_fn(std::string_view name, std::string_view help,
                          std::function<double()> read, const Labels& labels) {
  std::lock_guard lock(mutex_);
  bool created = false;
  Series& s = series(name, help, "counter", labels, created);
  if (s.counter) {
    throw std::invalid_argument("metric " + std::string(name) + " already has a value");
  }
  s.read = std::move(read);
}

void Registry::gauge_fn(std::string_view name, std::string_view help, std::function<double()> read,
                        const Labels& labels) {
  std::lock_guard lock(mutex_);
  bool created = false;
  Series& s = series(name, help, "gauge", labels, created);
  if (s.gauge) {
    throw std::invalid_argument("metric " + std::string(name) + " already has a value");
  }
  s.read = std::move(read);
}

std::string Registry::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  out.reserve(families_.size() * 128);
  for (const auto& f : families_) {
    out += "# HELP ";
    out += f->name;
    out += ' ';
    append_escaped(out, f->help, false);
    out += "\n# TYPE ";
    out += f->name;
    out += ' ';
    out += f->type;
    out += '\n';
    for (const auto& s : f->series) {
      if (s->counter) {
        append_sample(out, f->name, "", s->label_text, "", std::to_string(s->counter->value()));
      } else if (s->gauge) {
        append_sample(out, f->name, "", s->label_text, "", format_value(s->gauge->value()));
      } else if (s->read) {
        append_sample(out, f->name, "", s->label_text, "", format_value(s->read()));
      } else if (s->histogram) {
        const Histogram& h = *s->histogram;
        // Read each bucket once so that the cumulative counts, +Inf and _count agree.
        std::uint64_t cumulative = 0;
        const auto bounds = h.upper_bounds();
        for (std::size_t i = 0; i <= bounds.size(); ++i) {
          cumulative += h.bucket_count(i);
          const std::string le =
              "le=\"" + (i < bounds.size() ? format_bound(bounds[i]) : std::string("+Inf")) + "\"";
          append_sample(out, f->name, "_bucket", s->label_text, le, std::to_string(cumulative));
        }
        append_sample(out, f->name, "_sum", s->label_text, "", format_value(h.sum()));
        append_sample(out, f->name, "_count", s->label_text, "", std::to_string(cumulative));
      }
    }
  }
  return out;
}

namespace {

// Fields of /proc/self/stat after the command name, which may itself hold spaces and ')'.
std::vector<std::string> proc_self_stat_fields() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  std::getline(in, line);
  std::vector<std::string> fields;
  const auto close = line.rfind(')');
  if (close == std::string::npos) {
    return fields;
  }
  std::istringstream rest(line.substr(close + 1));
  for (std::string f; rest >> f;) {
    fields.push_back(std::move(f));
  }
  return fields;
}

double statm_bytes(int index) {
  std::ifstream in("/proc/self/statm");
  double pages = 0;
  for (int i = 0; i <= index && in >> pages; ++i) {
  }
  return in ? pages * static_cast<double>(sysconf(_SC_PAGESIZE)) : 0;
}

double process_start_time_seconds() {
  // Field 22 of /proc/self/stat (index 19 after the name) is the start in ticks since boot.
  const auto fields = proc_self_stat_fields();
  std::ifstream in("/proc/stat");
  double boot_time = 0;
  for (std::string key; in >> key;) {
    if (key == "btime") {
      in >> boot_time;
      break;
    }
  }
  if (fields.size() < 20 || boot_time == 0) {
    return 0;
  }
  return boot_time +
         std::strtod(fields[19].c_str(), nullptr) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

void register_process_metrics(Registry& registry) {
  registry.counter_fn(
      "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", [] {
        rusage usage{};
        getrusage(RUSAGE_SELF, &usage);
        const auto seconds = [](const timeval& tv) {
          return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
        };
        return seconds(usage.ru_utime) + seconds(usage.ru_stime);
      });
  registry.gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes.",
                    [] { return statm_bytes(1); });
  registry.gauge_fn("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                    [] { return statm_bytes(0); });
  registry.gauge_fn("process_open_fds", "Number of open file descriptors.", [] {
    std::error_code ec;
    double n = 0;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
         it.increment(ec)) {
      ++n;
    }
    return n;
  });
  registry.gauge_fn("process_max_fds", "Maximum number of open file descriptors.", [] {
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    return limit.rlim_cur == RLIM_INFINITY ? INFINITY : static_cast<double>(limit.rlim_cur);
  });
  const double start = process_start_time_seconds();
  registry.gauge_fn("process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    [start] { return start; });
}

Registry& default_registry() {
  static Registry* registry = [] {
    auto* r = new Registry();  // never destroyed: metrics may be touched during static teardown
    register_process_metrics(*r);
    return r;
  }();
  return *registry;
}

}  // namespace tunnel::observability
