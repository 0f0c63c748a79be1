#include "core/store_ownership.hpp"

namespace tunnel::core {

common::Status StoreOwnershipStore::load(std::vector<Registry::Owned>& out,
                                         std::vector<std::string>& /*warnings*/) {
  auto rows = store_.load_ownership();
  if (!rows) return rows.error();
  out.clear();
  for (auto& e : rows.value()) {
    out.push_back({std::move(e.key), std::move(e.account), std::move(e.holder), e.explicit_name,
                   e.offline_since});
  }
  return common::success();
}

common::Status StoreOwnershipStore::save(const std::vector<Registry::Owned>& owned) {
  std::vector<store::OwnershipEntry> entries;
  entries.reserve(owned.size());
  for (const auto& o : owned) {
    entries.push_back({o.key, o.account, o.holder, o.explicit_name, o.offline_since});
  }
  return store_.save_ownership(entries);
}

}  // namespace tunnel::core
