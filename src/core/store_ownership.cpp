#include "core/store_ownership.hpp"

namespace tunnel::core {

bool StoreOwnershipStore::load(std::vector<Registry::Owned>& out, std::vector<std::string>&,
                               std::string& error) {
  auto rows = store_.load_ownership();
  if (!rows) {
    error = rows.error().message;
    return false;
  }
  out.clear();
  for (auto& e : rows.value()) {
    out.push_back({std::move(e.key), std::move(e.account), std::move(e.holder), e.explicit_name,
                   e.offline_since});
  }
  return true;
}

bool StoreOwnershipStore::save(const std::vector<Registry::Owned>& owned, std::string& error) {
  std::vector<store::OwnershipEntry> entries;
  entries.reserve(owned.size());
  for (const auto& o : owned) {
    entries.push_back({o.key, o.account, o.holder, o.explicit_name, o.offline_since});
  }
  if (auto saved = store_.save_ownership(entries); !saved) {
    error = saved.error().message;
    return false;
  }
  return true;
}

}  // namespace tunnel::core
