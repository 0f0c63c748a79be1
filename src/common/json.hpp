// JSON parsing that refuses what nlohmann::json would accept silently.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace tunnel::common {

// A parse by parse_json_unique_keys().
struct UniqueKeysJson {
  // The document; discarded (`value.is_discarded()`) when the text is not valid JSON or an
  // object repeats a key.
  nlohmann::json value;
  // The first key an object repeats; "" when none does.
  std::string duplicate;
};

// Parses `text`, refusing an object (at any depth) that repeats a key: nlohmann::json would
// keep the last one silently, so one text could mean one thing to us and another to a
// different reader (a JWT's claims, an API body). Never throws.
UniqueKeysJson parse_json_unique_keys(std::string_view text);

}  // namespace tunnel::common
