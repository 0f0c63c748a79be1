#include "core/agents/ownership_store.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace tunnel::core {
namespace {

constexpr std::string_view kHeader = "# tunnel-core ownership v1";

// Fields are tab-separated, one entry a line: a field with a control character cannot be
// written (it would split the line), so such an entry is not saved.
bool writable(std::string_view field) {
  for (const char c : field) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return true;
}

std::vector<std::string_view> split_tabs(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    const std::size_t tab = line.find('\t', start);
    fields.push_back(line.substr(start, tab == std::string_view::npos ? tab : tab - start));
    if (tab == std::string_view::npos) return fields;
    start = tab + 1;
  }
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

common::Status FileOwnershipStore::load(std::vector<Registry::Owned>& out,
                                        std::vector<std::string>& warnings) {
  std::ifstream in(path_);
  if (!in) {
    if (errno == ENOENT) return common::success();  // first start: nothing owned yet
    return common::fail(path_ + ": " + std::strerror(errno));
  }
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line.starts_with('#')) continue;
    const auto fields = split_tabs(line);
    const auto bad = [&](const std::string& why) {
      warnings.push_back(path_ + ":" + std::to_string(number) + ": " + why + "; line ignored");
    };
    if (fields.size() != 5) {
      bad("expected 5 tab-separated fields, found " + std::to_string(fields.size()));
      continue;
    }
    Registry::Owned o;
    o.key = std::string(fields[0]);
    o.account = std::string(fields[1]);
    o.holder = std::string(fields[4]);
    if (o.key.empty() || o.account.empty()) {
      bad("empty name or account");
      continue;
    }
    if (fields[2] != "0" && fields[2] != "1") {
      bad("the explicit flag must be 0 or 1");
      continue;
    }
    o.explicit_name = fields[2] == "1";
    const auto since = fields[3];
    auto [end, ec] = std::from_chars(since.data(), since.data() + since.size(), o.offline_since);
    if (ec != std::errc{} || end != since.data() + since.size() || o.offline_since < 0) {
      bad("the offline time must be unix seconds (0 = served)");
      continue;
    }
    out.push_back(std::move(o));
  }
  return common::success();
}

common::Status FileOwnershipStore::save(const std::vector<Registry::Owned>& owned) {
  std::ostringstream text;
  text << kHeader << "\n# name\taccount\texplicit\toffline since (unix s, 0 = served)\tholder\n";
  for (const auto& o : owned) {
    if (!writable(o.key) || !writable(o.account)) continue;
    text << o.key << '\t' << o.account << '\t' << (o.explicit_name ? 1 : 0) << '\t'
         << o.offline_since << '\t' << (writable(o.holder) ? o.holder : std::string()) << '\n';
  }
  const std::string temp = path_ + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return common::fail(temp + ": " + std::strerror(errno));
  ::fchmod(fd, 0600);  // a leftover temporary file may have had another mode
  const std::string data = text.str();
  const bool ok = write_all(fd, data) && ::fsync(fd) == 0;
  const int saved_errno = errno;
  ::close(fd);
  if (!ok || ::rename(temp.c_str(), path_.c_str()) != 0) {
    std::string error = (ok ? path_ : temp) + ": " + std::strerror(ok ? errno : saved_errno);
    ::unlink(temp.c_str());
    return common::fail(std::move(error));
  }
  return common::success();
}

void save_ownership(Registry& registry, OwnershipStore& store, std::uint64_t* saved) {
  const std::uint64_t generation = registry.generation();
  if (saved != nullptr && generation == *saved) return;
  if (auto stored = store.save(registry.owned(registry.now_unix())); !stored) {
    spdlog::warn("could not save who owns which name: {}", stored.error().message);
    return;
  }
  if (saved != nullptr) *saved = generation;
}

boost::asio::awaitable<void> keep_ownership(Registry& registry,
                                            std::shared_ptr<OwnershipStore> store,
                                            std::chrono::milliseconds interval) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  std::uint64_t saved = registry.generation();
  while (true) {
    timer.expires_after(interval);
    boost::system::error_code ec;
    co_await timer.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (ec) co_return;
    save_ownership(registry, *store, &saved);
  }
}

}  // namespace tunnel::core
