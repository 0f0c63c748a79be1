#include "common/config_loader.hpp"

namespace tunnel::common {

Status parse_env_bool(std::string_view value, bool& out) {
  if (value == "true" || value == "1") {
    out = true;
  } else if (value == "false" || value == "0") {
    out = false;
  } else {
    return fail("expected true, false, 1 or 0, got \"" + std::string(value) + "\"");
  }
  return success();
}

}  // namespace tunnel::common
