// Reading YAML config files into structs with errors users can act on.
//
// A ConfigReader walks a parsed document and collects every problem, not just the first, each
// with the line and column of the YAML node at fault and the key path ("accounts[1].tokens").
// Unknown keys are errors with an edit-distance suggestion. Values that failed to parse keep
// their defaults, and later validation errors under such a path are suppressed so one typo
// does not produce a cascade. The core and agent configs are both read with it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace tunnel::common {

struct ConfigError {
  int line = 0;         // 1-based; 0 when the value did not come from the file (env, flags)
  int column = 0;       // 1-based; 0 when unknown
  std::string message;  // starts with the key path, e.g. "listen.http: ..."
};

// "core.yaml:12:5: accounts[0].tokens: ..." one error per line, each ending in '\n'.
// Errors without a position print as "core.yaml: message".
std::string format_errors(const std::vector<ConfigError>& errors, std::string_view file);

// The key of `candidates` closest to `key` by edit distance, or "" if none is close.
std::string closest_key(std::string_view key, std::initializer_list<std::string_view> candidates);

// Key path helpers: child("limits", "idle_timeout") == "limits.idle_timeout",
// child("", "domain") == "domain", element("accounts", 2) == "accounts[2]".
std::string child(std::string_view path, std::string_view key);
std::string element(std::string_view path, std::size_t index);

class ConfigReader {
 public:
  using Fields = std::map<std::string, YAML::Node, std::less<>>;

  // Parses `text`; a syntax error is recorded with its position and yields nullopt.
  // An empty document yields a null node (all defaults).
  std::optional<YAML::Node> parse(const std::string& text);

  // The keys of a mapping (a null node reads as an empty one). Reports a non-mapping, unknown
  // keys (with a suggestion) and duplicate keys; returns nullopt for a non-mapping.
  std::optional<Fields> fields(const YAML::Node& node, std::string_view path,
                               std::initializer_list<std::string_view> allowed);

  // Typed reads of fields[key]; an absent key leaves `out` unchanged. On a type error `out` is
  // unchanged, the error is recorded and the function returns false.
  bool read(const Fields& fields, std::string_view key, std::string_view path, std::string& out);
  bool read(const Fields& fields, std::string_view key, std::string_view path, bool& out);
  bool read(const Fields& fields, std::string_view key, std::string_view path, std::uint64_t& out,
            std::uint64_t max = UINT32_MAX);
  bool read(const Fields& fields, std::string_view key, std::string_view path, std::uint32_t& out);
  bool read(const Fields& fields, std::string_view key, std::string_view path,
            std::chrono::milliseconds& out);
  bool read(const Fields& fields, std::string_view key, std::string_view path,
            std::vector<std::string>& out);

  // The elements of a sequence at fields[key] (empty if absent); reports a non-sequence.
  std::vector<YAML::Node> sequence(const Fields& fields, std::string_view key,
                                   std::string_view path);

  // Records an error at a node, and marks `path` as failed (see class comment).
  void error_at(const YAML::Node& node, std::string_view path, std::string_view message);
  // Records an error for a key path, placed at the node read for it (or its nearest parent).
  // Suppressed when the path or a parent of it already failed to parse.
  void error(std::string_view path, std::string_view message);

  // Remembers where the value of `path` is written in the file.
  void note(std::string_view path, const YAML::Node& node);

  // All errors so far, ordered by position (positionless ones last).
  std::vector<ConfigError> take_errors();

 private:
  struct Position {
    int line = 0;
    int column = 0;
  };
  Position position_of(std::string_view path) const;
  bool failed_under(std::string_view path) const;
  const YAML::Node* scalar(const Fields& fields, std::string_view key, std::string_view path,
                           std::string_view expected);

  std::vector<ConfigError> errors_;
  std::map<std::string, Position, std::less<>> positions_;
  std::set<std::string, std::less<>> failed_;
};

// Parses `text` and, when its root is a mapping (or empty), hands it to
// `read(ConfigReader&, const YAML::Node&)`. Returns every error found, the parser's included.
template <typename Read>
std::vector<ConfigError> read_yaml_document(const std::string& text, std::string_view source_name,
                                            Read read) {
  ConfigReader reader;
  if (auto root = reader.parse(text)) {
    if (!root->IsNull() && !root->IsMap()) {
      reader.error_at(*root, "", std::string(source_name) + ": expected a mapping of keys");
    } else {
      read(reader, *root);
    }
  }
  return reader.take_errors();
}

// The whole file at `path`, or why not ("cannot read \"path\": reason").
Result<std::string> read_text_file(const std::string& path);

// The first line of the file at `path`, without surrounding whitespace: a secret kept out of
// the command line (--token-file). The error names the file when it cannot be read or holds
// no token.
Result<std::string> read_token_file(const std::string& path);

}  // namespace tunnel::common
