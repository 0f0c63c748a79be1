// Where the registry's ownership (which account owns which hostname and which tcp/udp port)
// outlives the process, so a restart never hands a name to another account.
//
// OwnershipStore is the interface; FileOwnershipStore keeps it in one small file in the data
// dir (`ownership`, mode 0600) until the control plane's store replaces it. A save writes a
// temporary file in the same directory, fsyncs it and renames it over the old one, so a crash
// leaves either the old or the new file, never a torn one.
//
// The server restores the file at start (Registry::restore) and then runs keep_ownership(),
// which saves whenever the registry's generation() changed, at most once per interval: a claim
// made less than one interval before a crash can be lost, nothing older.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "core/agents/registry.hpp"

namespace tunnel::core {

class OwnershipStore {
 public:
  virtual ~OwnershipStore() = default;
  // What was saved; empty when nothing was. Lines that cannot be read are skipped, each named
  // in `warnings` ("<path>:3: ..."). An error only when the store cannot be read.
  virtual common::Status load(std::vector<Registry::Owned>& out,
                              std::vector<std::string>& warnings) = 0;
  virtual common::Status save(const std::vector<Registry::Owned>& owned) = 0;
};

class FileOwnershipStore : public OwnershipStore {
 public:
  explicit FileOwnershipStore(std::string path) : path_(std::move(path)) {}
  common::Status load(std::vector<Registry::Owned>& out,
                      std::vector<std::string>& warnings) override;
  common::Status save(const std::vector<Registry::Owned>& owned) override;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Saves `registry` to `store` now if its generation differs from `*saved` (updated on success).
// Logs a failed save (the registry keeps running; the next one retries).
void save_ownership(Registry& registry, OwnershipStore& store, std::uint64_t* saved);

// Runs until its executor stops: every `interval`, save_ownership().
boost::asio::awaitable<void> keep_ownership(Registry& registry,
                                            std::shared_ptr<OwnershipStore> store,
                                            std::chrono::milliseconds interval);

}  // namespace tunnel::core
