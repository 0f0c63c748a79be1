#include "common/config_loader.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <map>

namespace tunnel::common {
namespace {

// A small program's configuration, loaded the way the core and the agent load theirs.
struct Inner {
  std::string addr = "default-addr";
};
struct Toy {
  std::string name = "default-name";
  bool flag = false;
  Inner inner;
};

void read_toy(ConfigReader& r, const YAML::Node& root, Toy& out) {
  auto f = r.fields(root, "", {"name", "flag", "inner"});
  if (!f) return;
  r.read(*f, "name", "", out.name);
  r.read(*f, "flag", "", out.flag);
  auto it = f->find("inner");
  if (it == f->end()) return;
  if (auto inner = r.fields(it->second, "inner", {"addr"})) {
    r.read(*inner, "addr", "inner", out.inner.addr);
  }
}

void check_toy(ConfigReader& r, const Toy& toy) {
  if (toy.name == "bad") r.error("name", "must not be \"bad\"");
}

constexpr std::array<EnvVar<Toy>, 3> kToyEnv{{
    {"TOY_NAME", "name", env_string<Toy, &Toy::name>},
    {"TOY_FLAG", "flag", env_bool<Toy, &Toy::flag>},
    {"TOY_ADDR", "inner.addr", env_string<Toy, &Toy::inner, &Inner::addr>},
}};
const ConfigSchema<Toy> kToy{read_toy, check_toy, kToyEnv};

Getenv env_of(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

class ConfigLoader : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = std::filesystem::temp_directory_path() /
            ("config_loader_test_" + std::to_string(::getpid()) + ".yaml");
  }
  void TearDown() override { std::filesystem::remove(file_); }
  std::string write(const std::string& text) {
    std::ofstream(file_) << text;
    return file_.string();
  }
  std::filesystem::path file_;
};

TEST_F(ConfigLoader, EachLayerOverridesTheOneBefore) {
  const auto file = write("name: from-file\ninner:\n  addr: file-addr\nflag: true\n");
  Layers<Toy> layers;
  layers.getenv = env_of({{"TOY_ADDR", "env-addr"}, {"TOY_NAME", "from-env"}});
  layers.flags = [](Toy& toy) {
    toy.name = "from-flags";
    return std::vector<ConfigError>{};
  };

  auto defaults = load_layered(kToy, Layers<Toy>{});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults.config.name, "default-name");
  EXPECT_EQ(defaults.config.inner.addr, "default-addr");

  layers.file = file;
  auto all = load_layered(kToy, layers);
  ASSERT_TRUE(all.ok()) << format_errors(all.errors, file);
  EXPECT_EQ(all.config.name, "from-flags");      // flags beat env
  EXPECT_EQ(all.config.inner.addr, "env-addr");  // env beats the file
  EXPECT_TRUE(all.config.flag);                  // the file beats the default

  layers.flags = nullptr;
  EXPECT_EQ(load_layered(kToy, layers).config.name, "from-env");
}

TEST_F(ConfigLoader, FileErrorsHaveLineAndColumnAndStopTheLoad) {
  const auto file = write("name: ok\ninner:\n  adr: x\n");
  Layers<Toy> layers;
  layers.file = file;
  bool flags_ran = false;
  layers.flags = [&](Toy&) {
    flags_ran = true;
    return std::vector<ConfigError>{};
  };
  auto result = load_layered(kToy, layers);
  EXPECT_EQ(result.failed, ConfigLayer::kFile);
  EXPECT_FALSE(flags_ran);
  EXPECT_EQ(format_errors(result.errors, file),
            file + ":3:3: inner: unknown key \"adr\" (did you mean \"addr\"?)\n");

  layers.file = file_.string() + ".missing";
  result = load_layered(kToy, layers);
  EXPECT_EQ(result.failed, ConfigLayer::kFile);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].line, 0);
  EXPECT_NE(result.errors[0].message.find(".missing"), std::string::npos);
}

TEST_F(ConfigLoader, EnvironmentErrorsNameTheVariableAndEmptyIsUnset) {
  Toy toy;
  auto errors = apply_env(kToy, toy, env_of({{"TOY_FLAG", "maybe"}, {"TOY_NAME", ""}}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 0);
  EXPECT_EQ(errors[0].message, "TOY_FLAG: expected true, false, 1 or 0, got \"maybe\"");
  EXPECT_EQ(toy.name, "default-name");

  Layers<Toy> layers;
  layers.getenv = env_of({{"TOY_FLAG", "maybe"}});
  EXPECT_EQ(load_layered(kToy, layers).failed, ConfigLayer::kEnvironment);
}

TEST_F(ConfigLoader, ChecksRunAfterEnvOnlyWhenAskedAndAlwaysAtTheEnd) {
  Layers<Toy> layers;
  layers.getenv = env_of({{"TOY_NAME", "bad"}});
  auto late = load_layered(kToy, layers);
  EXPECT_EQ(late.failed, ConfigLayer::kCheck);
  ASSERT_EQ(late.errors.size(), 1u);
  EXPECT_EQ(late.errors[0].message, "name: must not be \"bad\"");

  // A flag can repair a bad environment value unless the environment is checked on its own.
  layers.flags = [](Toy& toy) {
    toy.name = "good";
    return std::vector<ConfigError>{};
  };
  EXPECT_TRUE(load_layered(kToy, layers).ok());
  layers.check_after_env = true;
  EXPECT_EQ(load_layered(kToy, layers).failed, ConfigLayer::kEnvironmentCheck);

  layers.check_after_env = false;
  layers.flags = [](Toy&) { return std::vector<ConfigError>{{0, 0, "--name: nope"}}; };
  auto flags = load_layered(kToy, layers);
  EXPECT_EQ(flags.failed, ConfigLayer::kFlags);
  ASSERT_EQ(flags.errors.size(), 1u);
  EXPECT_EQ(flags.errors[0].message, "--name: nope");
}

TEST(ConfigLoaderEnv, EveryVariableNamesAKeyTheFileAccepts) {
  for (const auto& var : kToyEnv) {
    // "inner.addr" -> "inner: {addr: x}"
    std::string key = var.key;
    std::string yaml;
    if (auto dot = key.find('.'); dot != std::string::npos) {
      yaml = key.substr(0, dot) + ": {" + key.substr(dot + 1) + ": true}\n";
    } else {
      yaml = key + ": true\n";
    }
    auto result = load_config_string(kToy, yaml, "t");
    for (const auto& e : result.errors) {
      EXPECT_EQ(e.message.find("unknown key"), std::string::npos) << var.name << ": " << e.message;
    }
  }
}

}  // namespace
}  // namespace tunnel::common
