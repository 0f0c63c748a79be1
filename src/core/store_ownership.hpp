// The registry's ownership (OwnershipStore, core/agents/ownership_store.hpp) kept in the
// control plane's store instead of the `ownership` file: one transaction per save, so a crash
// leaves the old or the new set, never a torn one. Not wired into the server yet: the API
// piece of issue 17 keeps the store open and switches to it (docs/adr/0006-store.md).
#pragma once

#include "core/agents/ownership_store.hpp"
#include "core/control/store/store.hpp"

namespace tunnel::core {

class StoreOwnershipStore : public OwnershipStore {
 public:
  explicit StoreOwnershipStore(store::Store& store) : store_(store) {}
  common::Status load(std::vector<Registry::Owned>& out,
                      std::vector<std::string>& warnings) override;
  common::Status save(const std::vector<Registry::Owned>& owned) override;

 private:
  store::Store& store_;
};

}  // namespace tunnel::core
