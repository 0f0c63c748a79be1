#include "core/reload.hpp"

#include <yaml-cpp/yaml.h>

#include <set>

namespace tunnel::core {
namespace {

// The top-level mapping's keys and each one's value as YAML text; empty when not a mapping.
std::map<std::string, std::string> sections(const std::string& text) {
  std::map<std::string, std::string> out;
  try {
    const YAML::Node root = YAML::Load(text);
    if (!root.IsMap()) return out;
    for (const auto& item : root) {
      YAML::Emitter emitter;
      emitter << item.second;
      out[item.first.as<std::string>()] = emitter.c_str();
    }
  } catch (const YAML::Exception&) {
    out.clear();
  }
  return out;
}

}  // namespace

ConfigChanges compare_config_files(const std::string& before, const std::string& after) {
  const auto a = sections(before);
  const auto b = sections(after);
  std::set<std::string> keys;
  for (const auto& [key, value] : a) keys.insert(key);
  for (const auto& [key, value] : b) keys.insert(key);
  ConfigChanges changes;
  const auto value_of = [](const std::map<std::string, std::string>& m, const std::string& key) {
    const auto it = m.find(key);
    return it == m.end() ? std::string() : it->second;
  };
  for (const std::string& key : keys) {
    const std::string x = value_of(a, key);
    const std::string y = value_of(b, key);
    if (x == y) continue;
    (key == "tls" ? changes.live : changes.restart).push_back(key);
  }
  return changes;
}

}  // namespace tunnel::core
