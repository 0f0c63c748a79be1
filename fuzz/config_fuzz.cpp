// Feeds arbitrary text to the core and agent YAML loaders: they must report errors, never
// throw or crash, and every error they report must carry a message.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "agent/config.hpp"
#include "core/control/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto core = tunnel::core::load_config_string(text, "fuzz");
  for (const auto& error : core.errors) {
    if (error.message.empty()) std::abort();
  }
  const auto agent = tunnel::agent::load_config_string(text, "fuzz");
  for (const auto& error : agent.errors) {
    if (error.message.empty()) std::abort();
  }
  return 0;
}
