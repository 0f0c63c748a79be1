#include "config_reader.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "duration.hpp"

namespace tunnel::common {
namespace {

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Null:
      return "nothing";
    default:
      return quoted(node.Scalar());
  }
}

}  // namespace

std::string format_errors(const std::vector<ConfigError>& errors, std::string_view file) {
  std::string out;
  for (const auto& error : errors) {
    out += file;
    if (error.line > 0) {
      out += ":" + std::to_string(error.line);
      if (error.column > 0) out += ":" + std::to_string(error.column);
    }
    if (!file.empty() || error.line > 0) out += ": ";
    out += error.message;
    out += '\n';
  }
  return out;
}

std::string closest_key(std::string_view key, std::initializer_list<std::string_view> candidates) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, key.size() / 3) + 1;
  for (auto candidate : candidates) {
    const auto distance = edit_distance(key, candidate);
    if (distance < best_distance && distance < std::max(key.size(), candidate.size())) {
      best_distance = distance;
      best = std::string(candidate);
    }
  }
  return best;
}

std::string child(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return std::string(path) + "." + std::string(key);
}

std::string element(std::string_view path, std::size_t index) {
  return std::string(path) + "[" + std::to_string(index) + "]";
}

std::optional<YAML::Node> ConfigReader::parse(const std::string& text) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    errors_.push_back({e.mark.line + 1, e.mark.column + 1, "YAML syntax error: " + e.msg});
  } catch (const YAML::Exception& e) {
    errors_.push_back({e.mark.line + 1, e.mark.column + 1, std::string("YAML error: ") + e.msg});
  }
  return std::nullopt;
}

std::optional<ConfigReader::Fields> ConfigReader::fields(
    const YAML::Node& node, std::string_view path,
    std::initializer_list<std::string_view> allowed) {
  Fields out;
  if (node.IsNull()) return out;
  if (!node.IsMap()) {
    error_at(node, path, "expected a mapping of keys, got " + describe(node));
    return std::nullopt;
  }
  note(path, node);
  for (const auto& pair : node) {
    const YAML::Node& key_node = pair.first;
    if (!key_node.IsScalar()) {
      error_at(key_node, path, "keys must be plain names");
      continue;
    }
    const std::string& key = key_node.Scalar();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string message = "unknown key " + quoted(key);
      if (auto suggestion = closest_key(key, allowed); !suggestion.empty()) {
        message += " (did you mean " + quoted(suggestion) + "?)";
      }
      errors_.push_back({key_node.Mark().line + 1, key_node.Mark().column + 1,
                         path.empty() ? message : std::string(path) + ": " + message});
      continue;
    }
    if (out.contains(key)) {
      error_at(key_node, child(path, key), "duplicate key (the first one is used)");
      continue;
    }
    out.emplace(key, pair.second);
    note(child(path, key), pair.second);
  }
  return out;
}

const YAML::Node* ConfigReader::scalar(const Fields& fields, std::string_view key,
                                       std::string_view path, std::string_view expected) {
  auto it = fields.find(key);
  if (it == fields.end()) return nullptr;
  if (!it->second.IsScalar()) {
    error_at(it->second, child(path, key),
             "expected " + std::string(expected) + ", got " + describe(it->second));
    return nullptr;
  }
  return &it->second;
}

bool ConfigReader::read(const Fields& fields, std::string_view key, std::string_view path,
                        std::string& out) {
  auto it = fields.find(key);
  if (it != fields.end() && it->second.IsNull()) {
    out.clear();
    return true;
  }
  const YAML::Node* node = scalar(fields, key, path, "a string");
  if (node == nullptr) return it == fields.end();
  out = node->Scalar();
  return true;
}

bool ConfigReader::read(const Fields& fields, std::string_view key, std::string_view path,
                        bool& out) {
  const YAML::Node* node = scalar(fields, key, path, "true or false");
  if (node == nullptr) return !fields.contains(key);
  const std::string& text = node->Scalar();
  if (text == "true") {
    out = true;
  } else if (text == "false") {
    out = false;
  } else {
    error_at(*node, child(path, key), "expected true or false, got " + quoted(text));
    return false;
  }
  return true;
}

bool ConfigReader::read(const Fields& fields, std::string_view key, std::string_view path,
                        std::uint64_t& out, std::uint64_t max) {
  const YAML::Node* node = scalar(fields, key, path, "a non-negative integer");
  if (node == nullptr) return !fields.contains(key);
  const std::string& text = node->Scalar();
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec == std::errc::invalid_argument || end != text.data() + text.size()) {
    error_at(*node, child(path, key), "expected a non-negative integer, got " + quoted(text));
    return false;
  }
  if (ec == std::errc::result_out_of_range || value > max) {
    error_at(*node, child(path, key),
             "value " + text + " is too large (at most " + std::to_string(max) + ")");
    return false;
  }
  out = value;
  return true;
}

bool ConfigReader::read(const Fields& fields, std::string_view key, std::string_view path,
                        std::uint32_t& out) {
  std::uint64_t value = out;
  if (!read(fields, key, path, value, UINT32_MAX)) return false;
  out = static_cast<std::uint32_t>(value);
  return true;
}

bool ConfigReader::read(const Fields& fields, std::string_view key, std::string_view path,
                        std::chrono::milliseconds& out) {
  const YAML::Node* node = scalar(fields, key, path, "a duration such as \"10s\"");
  if (node == nullptr) return !fields.contains(key);
  auto result = parse_duration(node->Scalar());
  if (!result) {
    error_at(*node, child(path, key), result.error().message);
    return false;
  }
  out = result.value();
  return true;
}

bool ConfigReader::read(const Fields& fields, std::string_view key, std::string_view path,
                        std::vector<std::string>& out) {
  auto it = fields.find(key);
  if (it == fields.end()) return true;
  const std::string key_path = child(path, key);
  if (it->second.IsNull()) {
    out.clear();
    return true;
  }
  if (!it->second.IsSequence()) {
    error_at(it->second, key_path,
             "expected a list of strings such as [\"a\", \"b\"], got " + describe(it->second));
    return false;
  }
  std::vector<std::string> values;
  bool ok = true;
  std::size_t index = 0;
  for (const auto& item : it->second) {
    const std::string item_path = element(key_path, index++);
    note(item_path, item);
    if (!item.IsScalar()) {
      error_at(item, item_path, "expected a string, got " + describe(item));
      ok = false;
      continue;
    }
    values.push_back(item.Scalar());
  }
  if (ok) out = std::move(values);
  return ok;
}

std::vector<YAML::Node> ConfigReader::sequence(const Fields& fields, std::string_view key,
                                               std::string_view path) {
  std::vector<YAML::Node> out;
  auto it = fields.find(key);
  if (it == fields.end() || it->second.IsNull()) return out;
  if (!it->second.IsSequence()) {
    error_at(it->second, child(path, key), "expected a list, got " + describe(it->second));
    return out;
  }
  for (const auto& item : it->second) out.push_back(item);
  return out;
}

void ConfigReader::error_at(const YAML::Node& node, std::string_view path,
                            std::string_view message) {
  const auto mark = node.Mark();
  errors_.push_back(
      {mark.line + 1, mark.column + 1,
       path.empty() ? std::string(message) : std::string(path) + ": " + std::string(message)});
  failed_.emplace(path);
}

void ConfigReader::error(std::string_view path, std::string_view message) {
  if (failed_under(path)) return;
  const auto position = position_of(path);
  errors_.push_back(
      {position.line, position.column,
       path.empty() ? std::string(message) : std::string(path) + ": " + std::string(message)});
}

void ConfigReader::note(std::string_view path, const YAML::Node& node) {
  const auto mark = node.Mark();
  if (mark.line < 0) return;  // yaml-cpp gives null marks to some synthesized nodes
  positions_[std::string(path)] = {mark.line + 1, mark.column + 1};
}

std::vector<ConfigError> ConfigReader::take_errors() {
  std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
    const int line_a = a.line > 0 ? a.line : INT32_MAX;
    const int line_b = b.line > 0 ? b.line : INT32_MAX;
    return line_a != line_b ? line_a < line_b : a.column < b.column;
  });
  return std::move(errors_);
}

ConfigReader::Position ConfigReader::position_of(std::string_view path) const {
  // Walk up "a.b[2].c" -> "a.b[2]" -> "a.b" -> "a" until a recorded position is found.
  while (true) {
    if (auto it = positions_.find(path); it != positions_.end()) return it->second;
    const auto cut = path.find_last_of(".[");
    if (cut == std::string_view::npos) return {};
    path = path.substr(0, cut);
  }
}

bool ConfigReader::failed_under(std::string_view path) const {
  while (true) {
    if (failed_.contains(path)) return true;
    const auto cut = path.find_last_of(".[");
    if (cut == std::string_view::npos) return false;
    path = path.substr(0, cut);
  }
}

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("cannot read \"" + path + "\": " + std::strerror(errno));
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

Result<std::string> read_token_file(const std::string& path) {
  auto text = read_text_file(path);
  if (!text) return text.error();
  const std::string& all = text.value();
  const auto begin = all.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return fail(path + ": no token in the file");
  const auto end = all.find_first_of("\r\n", begin);
  std::string token = all.substr(begin, end - begin);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.pop_back();
  return token;
}

}  // namespace tunnel::common
