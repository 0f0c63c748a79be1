#include "core/store_ownership.hpp"

#include <fstream>

#include "core/control/data_dir.hpp"

namespace tunnel::core {

common::Result<std::string> core_id(const std::string& data_dir) {
  const std::string path = data_dir + "/core.id";
  const auto read = [&]() -> std::string {
    std::ifstream in(path);
    std::string id;
    std::getline(in, id);
    return id;
  };
  if (std::string id = read(); !id.empty()) return id;
  const std::string made = store::new_secret("core_").substr(0, 21);
  if (auto written = write_private_file(path, made + "\n"); !written) {
    // Another core starting from the same data dir made it first: use that one.
    if (std::string id = read(); !id.empty()) return id;
    return written.error();
  }
  return made;
}

common::Status StoreOwnershipStore::load(std::vector<Registry::Owned>& out,
                                         std::vector<std::string>& /*warnings*/) {
  auto rows = store_.load_ownership(core_id_);
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
  return store_.save_ownership(core_id_, entries);
}

}  // namespace tunnel::core
