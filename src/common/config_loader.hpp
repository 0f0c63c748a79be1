// One way to load a program's configuration: defaults < YAML file < environment < flags.
//
// A program describes its configuration once, as a ConfigSchema: how to read the YAML document
// into its Config (through a ConfigReader, so every error carries line and column), the checks
// that the result must pass, and its table of TUNNEL_* environment variables, each naming the
// config key it sets. The core and the agent both load through it (core/control/config.hpp,
// agent/config.hpp); their command lines add the flags layer and print the errors.
//
// Errors are never thrown: every function returns all of them, each a ConfigError. Errors from
// the file have a line and column; errors from the environment name the variable (line 0);
// errors from checks after env or flags have no line (the value did not come from the file).
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/config_reader.hpp"
#include "common/result.hpp"

namespace tunnel::common {

// getenv, injectable for tests.
using Getenv = std::function<const char*(const char*)>;

// One environment variable of a program.
template <typename Config>
struct EnvVar {
  const char* name;  // "TUNNEL_SERVER"
  const char* key;   // the config key it sets: "server", "listen.agent"
  // Applies a value (never called for unset or empty variables), or says what is wrong with
  // it. The caller prefixes the variable's name.
  Status (*apply)(Config& config, std::string_view value);
};

// Sets `out` when `value` is true, false, 1 or 0; else the error.
Status parse_env_bool(std::string_view value, bool& out);

namespace detail {
template <auto First, auto... Rest, typename T>
auto& member(T& object) {
  if constexpr (sizeof...(Rest) == 0) {
    return object.*First;
  } else {
    return member<Rest...>(object.*First);
  }
}
}  // namespace detail

// EnvVar::apply for a string member reached through `Path` (&Config::listen, &Listen::agent).
template <typename Config, auto... Path>
Status env_string(Config& config, std::string_view value) {
  detail::member<Path...>(config) = std::string(value);
  return success();
}

// EnvVar::apply for a bool member (true, false, 1, 0).
template <typename Config, auto... Path>
Status env_bool(Config& config, std::string_view value) {
  return parse_env_bool(value, detail::member<Path...>(config));
}

template <typename Config>
struct ConfigSchema {
  // Reads the document's root (a mapping, or null for an empty file) into `out`.
  void (*read)(ConfigReader& reader, const YAML::Node& root, Config& out);
  // Records every problem of a complete config with reader.error(key path, message).
  void (*check)(ConfigReader& reader, const Config& config);
  std::span<const EnvVar<Config>> env;
};

template <typename Config>
struct LoadResult {
  Config config;                    // defaults where a value was missing or wrong
  std::vector<ConfigError> errors;  // all of them, ordered by line
  bool ok() const { return errors.empty(); }
};

// Defaults, then the YAML `text`, then the schema's checks. `source_name` is used only in
// messages about the document as a whole.
template <typename Config>
LoadResult<Config> load_config_string(const ConfigSchema<Config>& schema, const std::string& text,
                                      std::string_view source_name) {
  LoadResult<Config> result;
  result.errors = read_yaml_document(text, source_name, [&](ConfigReader& r, const YAML::Node& n) {
    schema.read(r, n, result.config);
    schema.check(r, result.config);
  });
  return result;
}

// As load_config_string, from a file; an unreadable file is one error without a line.
template <typename Config>
LoadResult<Config> load_config_file(const ConfigSchema<Config>& schema, const std::string& path) {
  auto text = read_text_file(path);
  if (!text) {
    LoadResult<Config> result;
    result.errors.push_back({0, 0, text.error().message});
    return result;
  }
  return load_config_string(schema, text.value(), path);
}

// The schema's checks on `config` (errors without a line).
template <typename Config>
std::vector<ConfigError> check_config(const ConfigSchema<Config>& schema, const Config& config) {
  ConfigReader reader;
  schema.check(reader, config);
  return reader.take_errors();
}

// Every variable of the schema's table that is set and not empty, in table order. An error
// reads "NAME: what is wrong"; the variables after it are still applied.
template <typename Config>
std::vector<ConfigError> apply_env(const ConfigSchema<Config>& schema, Config& config,
                                   const Getenv& getenv) {
  std::vector<ConfigError> errors;
  for (const auto& var : schema.env) {
    const char* value = getenv(var.name);
    if (value == nullptr || *value == '\0') continue;
    if (auto applied = var.apply(config, value); !applied) {
      errors.push_back({0, 0, std::string(var.name) + ": " + applied.error().message});
    }
  }
  return errors;
}

// Which step of load_layered failed.
enum class ConfigLayer { kNone, kFile, kEnvironment, kEnvironmentCheck, kFlags, kCheck };

template <typename Config>
struct LayeredResult {
  Config config;
  ConfigLayer failed = ConfigLayer::kNone;  // the first step with errors; later ones did not run
  std::vector<ConfigError> errors;          // that step's errors
  bool ok() const { return failed == ConfigLayer::kNone; }
};

template <typename Config>
struct Layers {
  std::optional<std::string> file;  // nullopt: defaults only
  Getenv getenv;
  // Run the checks after the environment too, before the flags, so that a bad value from the
  // environment is reported as such (the agent does; the core reports it at the end).
  bool check_after_env = false;
  // Applies the command line; returns its errors (e.g. a duration that does not parse).
  std::function<std::vector<ConfigError>(Config&)> flags;
};

// Defaults < file < environment < flags, then the checks. Stops at the first step with errors.
template <typename Config>
LayeredResult<Config> load_layered(const ConfigSchema<Config>& schema,
                                   const Layers<Config>& layers) {
  LayeredResult<Config> result;
  const auto fail = [&](ConfigLayer layer, std::vector<ConfigError> errors) {
    if (errors.empty()) return false;
    result.failed = layer;
    result.errors = std::move(errors);
    return true;
  };
  if (layers.file) {
    auto loaded = load_config_file(schema, *layers.file);
    if (fail(ConfigLayer::kFile, std::move(loaded.errors))) return result;
    result.config = std::move(loaded.config);
  }
  if (layers.getenv &&
      fail(ConfigLayer::kEnvironment, apply_env(schema, result.config, layers.getenv))) {
    return result;
  }
  if (layers.check_after_env &&
      fail(ConfigLayer::kEnvironmentCheck, check_config(schema, result.config))) {
    return result;
  }
  if (layers.flags && fail(ConfigLayer::kFlags, layers.flags(result.config))) return result;
  fail(ConfigLayer::kCheck, check_config(schema, result.config));
  return result;
}

}  // namespace tunnel::common
