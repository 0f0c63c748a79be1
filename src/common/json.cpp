#include "common/json.hpp"

#include <algorithm>
#include <utility>
#include <vector>

namespace tunnel::common {

UniqueKeysJson parse_json_unique_keys(std::string_view text) {
  UniqueKeysJson out;
  std::vector<std::vector<std::string>> keys;  // the keys seen, per open object
  auto callback = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      keys.emplace_back();
    } else if (event == E::object_end && !keys.empty()) {
      keys.pop_back();
    } else if (event == E::key && !keys.empty()) {
      auto key = parsed.get<std::string>();
      auto& seen = keys.back();
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
        if (out.duplicate.empty()) out.duplicate = key;
      } else {
        seen.push_back(std::move(key));
      }
    }
    return true;
  };
  out.value = nlohmann::json::parse(text, callback, false);
  if (!out.duplicate.empty()) out.value = nlohmann::json(nlohmann::json::value_t::discarded);
  return out;
}

}  // namespace tunnel::common
