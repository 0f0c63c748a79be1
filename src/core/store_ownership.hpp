// The registry's ownership (OwnershipStore, core/agents/ownership_store.hpp) kept in the
// control plane's store instead of the `ownership` file when the store is open: one
// transaction per save, so a crash leaves the old or the new set, never a torn one. Each core
// keeps its own rows (by its id, `<data_dir>/core.id`), so cores sharing a PostgreSQL store do
// not overwrite each other's (docs/adr/0006-store.md).
#pragma once

#include "core/agents/ownership_store.hpp"
#include "core/control/store/store.hpp"

namespace tunnel::core {

// This core's stable id among the cores sharing a store: `<data_dir>/core.id`, made (random)
// on first use and kept.
common::Result<std::string> core_id(const std::string& data_dir);

class StoreOwnershipStore : public OwnershipStore {
 public:
  StoreOwnershipStore(store::Store& store, std::string core_id)
      : store_(store), core_id_(std::move(core_id)) {}
  common::Status load(std::vector<Registry::Owned>& out,
                      std::vector<std::string>& warnings) override;
  common::Status save(const std::vector<Registry::Owned>& owned) override;

 private:
  store::Store& store_;
  std::string core_id_;
};

}  // namespace tunnel::core
